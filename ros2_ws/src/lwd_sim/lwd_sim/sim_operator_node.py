"""`sim_operator`: the simulated teleoperator of one robot (thin rclpy shell over `operator_core`).

Per episode: sim_robot/reset -> actor/start_episode; then watches task_status and
joint_states, presses `pedal` and drives `teleop/joint_targets` with the scripted
expert (planning on a mirror of sim_robot's ~/scene_state) when a rule fires,
releases after progress, and finally actor/stop_episode + actor/label_episode
from the simulator's success signal. Also labels episodes the actor ended itself.

    python -m lwd_sim.sim_operator_node --ros-args -r __ns:=/robot0 -p task:=can_to_bin -p episodes:=10
"""

from __future__ import annotations

import json
import sys
import time
from enum import Enum

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String

from lwd_description.robot import CONTROL_HZ, JOINT_NAMES
from lwd_msgs.msg import EpisodeStatus, TaskStatus
from lwd_msgs.srv import LabelEpisode, StartEpisode, StopEpisode
from lwd_sim.expert import DEMO, ScriptedExpert
from lwd_sim.node_main import run_node
from lwd_sim.operator_core import Decision, OperatorBrain, Progress, default_parameters, rules_from_parameters
from lwd_sim.sim import G1Sim, SimConfig
from lwd_sim.sim_robot_node import seed_for
from lwd_sim.tasks import get_task


class Phase(Enum):
    RESETTING = "resetting"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    LABELLING = "labelling"
    FINISHED = "finished"


class SimOperatorNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_operator")
        p = self.declare_parameter
        self.robot_id = p("robot_id", "robot0").value
        self.task = p("task", "can_to_bin").value
        self.instruction = p("instruction", "").value
        self.episodes = int(p("episodes", 0).value)  # 0: forever
        self.start_delay_s = float(p("start_delay_s", 1.0).value)
        task = get_task(self.task)
        values = {name: p(name, default).value for name, default in default_parameters().items()}
        # 0: the task's own time limit (8-10 s for the short tasks, minutes for the long one).
        limit = float(p("time_limit_s", 0.0).value)
        self.rules = rules_from_parameters(values, limit if limit > 0 else task.time_limit_s)
        seed = seed_for(int(p("seed", -1).value), self.robot_id)
        # The brain's draws (rescue_probability) have their own stream: the instructions and the
        # expert's draws stay those of the same seed whatever the operator rescues.
        self.brain = OperatorBrain(self.rules, np.random.default_rng([seed, 1]))
        self.mirror = G1Sim(SimConfig(image_height=16, image_width=16))
        self.expert: ScriptedExpert | None = None
        self.rng = np.random.default_rng(seed)
        self.status: TaskStatus | None = None
        self.joints: np.ndarray | None = None
        self.scene: dict | None = None
        self.episode_state: EpisodeStatus | None = None
        self.phase = Phase.RESETTING
        self.pending = None
        self.done_episodes = 0
        self.label_success = False
        self.phase_since = time.monotonic()
        self.results: list[dict] = []
        self.episode_id = ""
        self.current_instruction = ""
        self.retry_at = 0.0

        self.pedal_pub = self.create_publisher(Bool, "pedal", 10)
        self.teleop_pub = self.create_publisher(JointState, "teleop/joint_targets", 10)
        self.create_subscription(TaskStatus, "task_status", self._on_status, 10)
        self.create_subscription(JointState, "joint_states", self._on_joints, qos_profile_sensor_data)
        self.create_subscription(String, "sim_robot/scene_state", self._on_scene, 10)
        self.create_subscription(EpisodeStatus, "episode_status", self._on_episode, 10)
        self.reset_cli = self.create_client(StartEpisode, "sim_robot/reset")
        self.start_cli = self.create_client(StartEpisode, "actor/start_episode")
        self.stop_cli = self.create_client(StopEpisode, "actor/stop_episode")
        self.label_cli = self.create_client(LabelEpisode, "actor/label_episode")
        self.create_timer(1.0 / CONTROL_HZ, self._tick)

    # -- inputs ------------------------------------------------------------------
    def _on_status(self, msg: TaskStatus) -> None:
        self.status = msg

    def _on_joints(self, msg: JointState) -> None:
        if list(msg.name) == list(JOINT_NAMES):
            self.joints = np.asarray(msg.position, float)

    def _on_scene(self, msg: String) -> None:
        self.scene = json.loads(msg.data)

    def _on_episode(self, msg: EpisodeStatus) -> None:
        self.episode_state = msg

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- the loop ------------------------------------------------------------------
    def _enter(self, phase: Phase) -> None:
        self.phase = phase
        self.phase_since = time.monotonic()
        self.pending = None

    def _call(self, client, request):
        if not client.service_is_ready():
            return None
        return client.call_async(request)

    def _tick(self) -> None:
        if self.phase == Phase.FINISHED:
            return
        if self.phase == Phase.RESETTING:
            if time.monotonic() - self.phase_since < self.start_delay_s and self.done_episodes == 0:
                return
            self._step_service(
                self.reset_cli,
                StartEpisode.Request(task=self.task, instruction=self.instruction),
                self._after_reset,
            )
        elif self.phase == Phase.STARTING:
            if time.monotonic() < self.retry_at:
                return
            self._step_service(
                self.start_cli,
                StartEpisode.Request(task=self.task, instruction=self.current_instruction),
                self._after_start,
            )
        elif self.phase == Phase.RUNNING:
            self._run()
        elif self.phase == Phase.STOPPING:
            self._step_service(
                self.stop_cli,
                StopEpisode.Request(abort=False, reason=self.brain.reason),
                lambda r: self._enter(Phase.LABELLING),
            )
        elif self.phase == Phase.LABELLING:
            note = f"sim_operator: {self.brain.reason}; interventions {self.brain.interventions}"
            if self.brain.let_go:  # troubles not rescued (rescue_probability < 1)
                note += f"; let go {self.brain.let_go}"
            self._step_service(
                self.label_cli, LabelEpisode.Request(success=self.label_success, note=note), self._after_label
            )

    def _step_service(self, client, request, on_done) -> None:
        if self.pending is None:
            self.pending = self._call(client, request)
            return
        if not self.pending.done():
            if time.monotonic() - self.phase_since > 20.0:
                self.get_logger().warning(f"{self.phase.value}: service call timed out; retrying")
                self._enter(self.phase)
            return
        response = self.pending.result()
        self.pending = None
        on_done(response)

    def _after_reset(self, response) -> None:
        if not response.accepted:
            self.get_logger().error(f"sim_robot refused reset: {response.message}")
            self._enter(Phase.FINISHED)
            return
        self.status = None
        self.current_instruction = response.message
        self._enter(Phase.STARTING)

    def _after_start(self, response) -> None:
        if not response.accepted:
            self.get_logger().warning(f"actor refused start: {response.message}; retrying in 1 s")
            self._enter(Phase.STARTING)
            self.retry_at = time.monotonic() + 1.0
            return
        self.episode_id = response.episode_id
        self.brain.start_episode(self.now())
        self.expert = None
        self.get_logger().info(f"episode {response.episode_id} running")
        self._enter(Phase.RUNNING)

    def _after_label(self, response) -> None:
        self.results.append(
            {
                "episode_id": self.episode_id,
                "success": self.label_success,
                "interventions": self.brain.interventions,
                "accepted": bool(response.accepted),
            }
        )
        self.get_logger().info(
            f"labelled {self.episode_id}: success={self.label_success} ({response.message})"
        )
        self.done_episodes += 1
        self._enter(
            Phase.FINISHED if self.episodes and self.done_episodes >= self.episodes else Phase.RESETTING
        )

    def _set_pedal(self, engaged: bool) -> None:
        self.pedal_pub.publish(Bool(data=engaged))

    def _run(self) -> None:
        if self.status is None or self.joints is None:
            return
        es = self.episode_state
        if es is not None and es.episode_id == self.episode_id and es.state == EpisodeStatus.AWAITING_LABEL:
            # The actor ended the episode itself (its time limit or a safety stop).
            self.brain.reason = "actor_ended"
            self.label_success = bool(self.status.success)
            self._set_pedal(False)
            self._enter(Phase.LABELLING)
            return
        tcp = None
        if self.scene is not None:
            self.mirror.mirror(self.scene["qpos"], self.scene["command"], self.scene["held"])
            tcp = np.stack([self.mirror.tcp_pose(s)[0] for s in ("left", "right")])
        decision = self.brain.observe(
            self.now(),
            self.joints,
            Progress(self.status.success, self.status.failed, int(self.status.subtasks_done)),
            tcp,
        )
        if decision in (Decision.STOP_SUCCESS, Decision.STOP_FAILURE):
            self.label_success = decision == Decision.STOP_SUCCESS
            self._set_pedal(False)
            self._enter(Phase.STOPPING)
            return
        if decision == Decision.ENGAGE:
            self.get_logger().info(f"engaging ({self.brain.reason})")
        if decision == Decision.RELEASE:
            self.get_logger().info(f"releasing ({self.brain.reason})")
            self.expert = None
        self._set_pedal(self.brain.engaged)
        if self.brain.engaged:
            self._drive()

    def _drive(self) -> None:
        if self.scene is None:
            return
        if self.expert is None:
            inst = get_task(self.scene["task"]).sample(self.rng, self.scene["instruction"])
            self.expert = ScriptedExpert(self.mirror, inst, DEMO, self.rng)
        target = self.expert.act()
        msg = JointState(name=list(JOINT_NAMES), position=target.tolist())
        msg.header.stamp = self.get_clock().now().to_msg()
        self.teleop_pub.publish(msg)

    def destroy_node(self) -> None:
        self.mirror.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    def spin(node: SimOperatorNode) -> None:
        while rclpy.ok() and node.phase != Phase.FINISHED:
            rclpy.spin_once(node, timeout_sec=0.1)
        if node.phase == Phase.FINISHED:
            print(json.dumps({"episodes": node.results}), flush=True)

    return run_node("sim_operator", SimOperatorNode, args, spin)


if __name__ == "__main__":
    sys.exit(main())
