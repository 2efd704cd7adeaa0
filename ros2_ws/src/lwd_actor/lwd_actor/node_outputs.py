"""The actor node's outputs: the command, every stitched chunk, and the latched status topics.

`joint_commands` (Float64MultiArray) or `joint_trajectory` (JointTrajectory, one point) as
`command_interface` says; `action_chunk`; `episode_status` (on change, and forced by the 1 Hz
status), `policy_status` (on load and swap) and `intervention_state` (on pedal change), all three
transient-local. `/diagnostics` is `node_diagnostics`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from builtin_interfaces.msg import Duration
from builtin_interfaces.msg import Time as TimeMsg
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from lwd_actor.core.actor import TickResult
from lwd_actor.core.inference_worker import InferenceResult
from lwd_actor.node_params import COMMAND_ARRAY
from lwd_common.episode import Label
from lwd_msgs.msg import ActionChunk, EpisodeStatus, InterventionState, PolicyStatus

if TYPE_CHECKING:
    from lwd_actor.actor_node import ActorNode


def time_msg(t: float) -> TimeMsg:
    """Seconds as a ROS time, rounded to the nanosecond with the carry (1.9999999996 s is 2.0 s)."""
    sec, nanosec = divmod(int(round(t * 1e9)), 1_000_000_000)
    return TimeMsg(sec=sec, nanosec=nanosec)


class NodeOutputs:
    """The node's publishers (created at configure) and how each message is filled."""

    def __init__(self, node: ActorNode):
        self._node = node
        self._last_status: tuple | None = None
        self._engaged_since = 0.0
        self._hz = 0.0
        self._joint_names: list[str] = []

    def create(self, command_interface: str, hz: float, joint_names: Sequence[str]) -> list:
        """The publishers, for the configured command interface, rate and joints."""
        node = self._node
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self._hz, self._joint_names = hz, list(joint_names)
        self._cmd_array = command_interface == COMMAND_ARRAY
        if self._cmd_array:
            self.command_pub = node.create_publisher(Float64MultiArray, "joint_commands", 10)
        else:
            self.command_pub = node.create_publisher(JointTrajectory, "joint_trajectory", 10)
        self._chunk_pub = node.create_publisher(ActionChunk, "action_chunk", 10)
        self._episode_pub = node.create_publisher(EpisodeStatus, "episode_status", latched)
        self._policy_pub = node.create_publisher(PolicyStatus, "policy_status", latched)
        self._intervention_pub = node.create_publisher(InterventionState, "intervention_state", latched)
        return [
            self.command_pub,
            self._chunk_pub,
            self._episode_pub,
            self._policy_pub,
            self._intervention_pub,
        ]

    def command(self, q: np.ndarray) -> None:
        if self._cmd_array:
            self.command_pub.publish(Float64MultiArray(data=q.tolist()))
            return
        dt = 1.0 / self._hz
        point = JointTrajectoryPoint(
            positions=q.tolist(), time_from_start=Duration(sec=int(dt), nanosec=int((dt % 1) * 1e9))
        )
        self.command_pub.publish(JointTrajectory(joint_names=list(self._joint_names), points=[point]))

    def chunk(self, r: InferenceResult) -> None:
        msg = ActionChunk()
        msg.header.stamp = time_msg(r.request.obs.stamp)
        msg.policy_version = r.policy_version
        msg.chunk_id = r.chunk_id
        msg.start_step = r.request.start_step
        msg.horizon = int(r.actions.shape[0])
        msg.joint_names = list(self._joint_names)
        msg.targets = r.actions.ravel().tolist()
        msg.inference_ms = float(r.latency_ms)
        self._chunk_pub.publish(msg)

    def episode_status(self, res: TickResult | None = None, force: bool = False) -> None:
        core = self._node._core
        if core is None:
            return
        fsm = core.fsm
        label = EpisodeStatus.LABEL_NONE
        if fsm.ending is not None:
            label = (
                EpisodeStatus.LABEL_SUCCESS
                if fsm.ending.label is Label.SUCCESS
                else EpisodeStatus.LABEL_FAILURE
            )
        key = (fsm.state, fsm.episode_id, label, core.counters.interventions)
        if not force and key == self._last_status:
            return
        self._last_status = key
        msg = EpisodeStatus(
            robot_id=core.config.robot_id,
            episode_id=fsm.episode_id,
            state=int(fsm.state),
            task=fsm.task,
            instruction=fsm.instruction,
            step=core.episode_steps,
            label=label,
            interventions=core.counters.interventions,
        )
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._episode_pub.publish(msg)

    def policy_status(self) -> None:
        policy, core = self._node._policy, self._node._core
        if policy is None or core is None:
            return
        msg = PolicyStatus(
            robot_id=core.config.robot_id,
            version=policy.version,
            sha256=policy.sha256,
            loaded_at=time_msg(policy.loaded_at),
            execution_provider=policy.provider,
        )
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._policy_pub.publish(msg)

    def intervention(self, engaged: bool, since: float) -> None:
        """The pedal changed at `since` (node clock): engaged or released."""
        self._engaged_since = since
        self._intervention_pub.publish(
            InterventionState(engaged=engaged, source="pedal", since=time_msg(self._engaged_since))
        )
