"""`sim_robot`: a thin rclpy shell that makes `G1Sim` look like the robot's ros2_control + camera drivers.

Publishes camera/<name>/image_raw (rgb8, sensor-data QoS), joint_states and
task_status; accepts joint_commands (Float64MultiArray, 16 values in JOINT_NAMES
order) and joint_trajectory; service ~/reset (lwd_msgs/StartEpisode) starts a
randomised episode of a task. Publishes ~/scene_state (JSON, privileged) for the
simulated operator. With `publish_clock: true` it owns /clock (simulated time at
`real_time_factor`); otherwise it steps on its node clock (wall time, or /clock
from `lwd_sim.sim_clock` when use_sim_time is true).

    python -m lwd_sim.sim_robot_node --ros-args -r __ns:=/robot0 -p task:=can_to_bin
"""

from __future__ import annotations

import json
import sys
import zlib

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from lwd_description.robot import CAMERA_NAMES, CONTROL_HZ, JOINT_NAMES, NUM_JOINTS
from lwd_msgs.msg import TaskStatus
from lwd_msgs.srv import StartEpisode
from lwd_sim.node_main import run_node
from lwd_sim.sim import G1Sim, SimConfig
from lwd_sim.tasks import TaskInstance, get_task, task_of_instruction
from lwd_sim.trajectory import TrajectoryFollower


def seed_for(seed: int, robot_id: str) -> int:
    """`seed` if >= 0, else one derived from the robot id (robots of a fleet differ, runs repeat)."""
    return seed if seed >= 0 else zlib.crc32(robot_id.encode())


def _time_msg(seconds: float) -> Time:
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class SimRobotNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_robot")
        p = self.declare_parameter
        self.robot_id = p("robot_id", "robot0").value
        self.task_name = p("task", "can_to_bin").value
        width = int(p("image_width", 64).value)
        height = int(p("image_height", 64).value)
        camera_rate = float(p("camera_rate_hz", 30.0).value)
        self.publish_clock = bool(p("publish_clock", False).value)
        rtf = float(p("real_time_factor", 1.0).value)
        if camera_rate <= 0 or rtf <= 0:
            raise ValueError(f"camera_rate_hz ({camera_rate}) and real_time_factor ({rtf}) must be > 0")
        self.camera_every = max(1, int(round(CONTROL_HZ / camera_rate)))
        self.rng = np.random.default_rng(seed_for(int(p("seed", -1).value), self.robot_id))
        get_task(self.task_name)  # fail fast on an unknown task
        self.sim = G1Sim(SimConfig(image_height=height, image_width=width))
        self.instance: TaskInstance | None = None
        self.target: np.ndarray | None = None
        self.trajectory = TrajectoryFollower(JOINT_NAMES)
        self.tick = 0
        self.clock_time = 0.0  # monotonic across episode resets (the episode's sim time restarts at 0)
        self._warned: set[str] = set()

        self.image_pubs = {
            c: self.create_publisher(Image, f"camera/{c}/image_raw", qos_profile_sensor_data)
            for c in CAMERA_NAMES
        }
        self.joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self.status_pub = self.create_publisher(TaskStatus, "task_status", 10)
        self.scene_pub = self.create_publisher(String, "~/scene_state", 10)
        self.clock_pub = self.create_publisher(ClockMsg, "/clock", 10) if self.publish_clock else None
        self.create_subscription(Float64MultiArray, "joint_commands", self._on_command, 10)
        self.create_subscription(JointTrajectory, "joint_trajectory", self._on_trajectory, 10)
        self.create_service(StartEpisode, "~/reset", self._on_reset)
        self._reset(self.task_name, "")
        period = 1.0 / (CONTROL_HZ * rtf) if self.publish_clock else 1.0 / CONTROL_HZ
        clock = Clock(clock_type=ClockType.STEADY_TIME) if self.publish_clock else None
        self.timer = self.create_timer(period, self._step, clock=clock)
        self.get_logger().info(
            f"sim_robot {self.robot_id}: task {self.task_name}, {width}x{height} cameras every "
            f"{self.camera_every} step(s), publish_clock={self.publish_clock}"
        )

    # -- inputs ----------------------------------------------------------------
    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    def _on_command(self, msg: Float64MultiArray) -> None:
        values = np.asarray(msg.data, float)
        if values.shape != (NUM_JOINTS,):
            self._warn_once("len", f"joint_commands needs {NUM_JOINTS} values, got {values.size}; ignored")
            return
        if not np.isfinite(values).all():
            self._warn_once("nan", "joint_commands contains NaN/inf; ignored")
            return
        self.trajectory.clear()
        self.target = values

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        try:
            times = [pt.time_from_start.sec + pt.time_from_start.nanosec * 1e-9 for pt in msg.points]
            self.trajectory.set(
                list(msg.joint_names),
                times,
                [list(pt.positions) for pt in msg.points],
                self.sim.time,
                self.sim.command,
            )
        except ValueError as e:
            self._warn_once("traj", f"joint_trajectory refused: {e}")

    def _on_reset(
        self, request: StartEpisode.Request, response: StartEpisode.Response
    ) -> StartEpisode.Response:
        task = request.task or self.task_name
        try:
            if not request.task and request.instruction:
                task = task_of_instruction(request.instruction.strip().lower())
            self._reset(task, request.instruction)
        except ValueError as e:
            response.accepted = False
            response.message = str(e)
            return response
        response.accepted = True
        response.episode_id = ""
        response.message = self.instance.instruction
        return response

    def _reset(self, task: str, instruction: str) -> None:
        inst = get_task(task).sample(self.rng, instruction or None)
        inst.reset_sim(self.sim)
        self.instance = inst
        self.task_name = task
        self.target = None
        self.trajectory.clear()
        self.get_logger().info(f"reset: {task}: {inst.instruction}")

    # -- loop ------------------------------------------------------------------
    def _stamp(self):
        return _time_msg(self.clock_time) if self.publish_clock else self.get_clock().now().to_msg()

    def _step(self) -> None:
        target = self.trajectory.sample(self.sim.time)
        if target is None:
            target = self.target if self.target is not None else self.sim.command
        self.sim.apply(target)
        self.clock_time += 1.0 / CONTROL_HZ
        if self.clock_pub is not None:
            self.clock_pub.publish(ClockMsg(clock=_time_msg(self.clock_time)))
        stamp = self._stamp()
        js = JointState()
        js.header.stamp = stamp
        js.name = list(JOINT_NAMES)
        js.position = self.sim.joint_positions().tolist()
        js.velocity = self.sim.joint_velocities().tolist()
        js.effort = self.sim.joint_efforts().tolist()
        self.joint_pub.publish(js)
        if self.tick % self.camera_every == 0:
            images = self.sim.render()
            for k, cam in enumerate(CAMERA_NAMES):
                img = Image()
                img.header.stamp = stamp
                img.header.frame_id = f"{cam}_camera_link"
                img.height, img.width = images.shape[1], images.shape[2]
                img.encoding = "rgb8"
                img.step = img.width * 3
                img.data = images[k].tobytes()
                self.image_pubs[cam].publish(img)
        st = self.instance.evaluate(self.sim)
        self.status_pub.publish(
            TaskStatus(
                header=js.header,
                robot_id=self.robot_id,
                task=self.task_name,
                instruction=self.instance.instruction,
                success=bool(st.success),
                failed=bool(st.failed),
                subtasks_done=int(st.subtasks_done),
                subtasks_total=int(st.subtasks_total),
                score=float(st.score),
            )
        )
        self.scene_pub.publish(
            String(
                data=json.dumps(
                    {
                        "task": self.task_name,
                        "instruction": self.instance.instruction,
                        "time": self.sim.time,
                        "qpos": self.sim.data.qpos.tolist(),
                        "command": self.sim.command.tolist(),
                        "held": self.sim.held,
                    }
                )
            )
        )
        self.tick += 1

    def destroy_node(self) -> None:
        self.sim.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node("sim_robot", SimRobotNode, args)


if __name__ == "__main__":
    sys.exit(main())
