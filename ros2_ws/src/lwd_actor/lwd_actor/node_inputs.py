"""The actor node's inputs: subscriptions, their QoS, and decoding into the core's input sync.

Cameras (Image, or CompressedImage for `compressed_cameras`) and `joint_states` are subscribed with
sensor-data QoS on the node's sensor group: frames are converted (decoded), resized to the
recording size and put into the `ApproximateSync`; joint states of several sources are merged by
name. The command inputs (pedal, teleop targets, e-stop) are subscribed reliable and best-effort at
once (`subscribe_any_qos`), so a publisher of either QoS is heard; the e-stop on the node's
`safety_group` and also transient-local, so a latched e-stop published before the actor started
arrives. A bad input is dropped and counted (`input_errors`), never raised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Bool

from lwd_actor.core.dedupe import PublisherDedupe
from lwd_actor.core.observation import (
    JOINTS_INPUT,
    InputError,
    JointsIncomplete,
    JointStateMerger,
    all_inputs,
    compressed_image,
    fit_frame,
    ordered_joints,
    rgb_image,
)
from lwd_actor.core.sync import ApproximateSync

if TYPE_CHECKING:
    from lwd_actor.actor_node import ActorNode
    from lwd_actor.node_params import Configuration


def stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class NodeInputs:
    """The node's input subscriptions and what they feed: the sync, the joint merger, the core."""

    def __init__(self, node: ActorNode):
        self._node = node
        self.input_errors = 0
        self.frames_received: dict[str, int] = {}  # frames taken into the sync, per camera
        self.camera_hw: tuple[int, int] | None = None  # camera size as configured
        self.record_hw: tuple[int, int] | None = None  # frames resized to this on receipt
        self.compressed: set[str] = set()  # cameras read as CompressedImage
        self.stale_s = 0.0
        self.sync: ApproximateSync  # set at configure
        self.joints: JointStateMerger

    def configure(self, c: Configuration, sync_slop_s: float, stale_s: float) -> None:
        """A fresh sync and joint merger for the configured robot and sizes."""
        self.camera_hw, self.record_hw, self.compressed = c.camera_hw, c.record_hw, c.compressed
        self.sync = ApproximateSync(sync_slop_s, inputs=all_inputs(c.robot.camera_names))
        self.stale_s = stale_s
        self.joints = JointStateMerger(stale_s, c.robot.joint_names)
        self.frames_received = dict.fromkeys(c.robot.camera_names, 0)

    def explain(self, now: float) -> str:
        """Why no synchronised input set is fresh now (the core's `input_report`)."""
        return self.sync.explain(now, self.stale_s)

    def subscribe(self, sensors, safety, on_estop: Callable[[Bool], None]) -> list:
        """Every input subscription: cameras, joints, pedal, teleop targets (`sensors`), e-stop (`safety`)."""
        node = self._node
        subs = []
        for cam in self.frames_received:  # the robot description's cameras
            if cam in self.compressed:  # image_transport's topic name for the compressed plugin
                subs.append(
                    node.create_subscription(
                        CompressedImage,
                        f"camera/{cam}/image_raw/compressed",
                        lambda msg, cam=cam: self.on_compressed(cam, msg),
                        qos_profile_sensor_data,
                        callback_group=sensors,
                    )
                )
            else:
                subs.append(
                    node.create_subscription(
                        Image,
                        f"camera/{cam}/image_raw",
                        lambda msg, cam=cam: self.on_image(cam, msg),
                        qos_profile_sensor_data,
                        callback_group=sensors,
                    )
                )
        subs.append(
            node.create_subscription(
                JointState, "joint_states", self.on_joints, qos_profile_sensor_data, callback_group=sensors
            )
        )
        subs += self.subscribe_any_qos(Bool, "pedal", self.on_pedal, sensors)
        subs += self.subscribe_any_qos(JointState, "teleop/joint_targets", self.on_teleop, sensors)
        subs += self.subscribe_any_qos(Bool, "estop", on_estop, safety, latched=True)
        return subs

    def subscribe_any_qos(
        self, msg_type, topic: str, callback: Callable, group, latched: bool = False
    ) -> list:
        """Reliable and best-effort subscriptions feeding `callback` once per message: publishers of
        either QoS are heard (a reliable-only subscription ignores best-effort publishers silently).
        `latched` adds a transient-local one, so a latching publisher's last value arrives even when
        it was published before this node (re)started: an e-stop held while the actor restarts."""
        node = self._node
        dedupe = PublisherDedupe()

        def on_message(msg, info) -> None:
            gid = info.get("publisher_gid")
            seq = info.get("publication_sequence_number")
            if seq is None:
                seq = info.get("source_timestamp")
            if dedupe.accept(bytes(gid["data"]) if gid else None, seq):
                callback(msg)

        def best_effort_publisher(info) -> None:  # instead of rclpy's "no messages will be received" warning
            node.get_logger().info(
                f"best-effort publisher on '{topic}': heard on the best-effort subscription"
            )

        reliable, best_effort = (
            QoSProfile(depth=10, reliability=r, durability=QoSDurabilityPolicy.VOLATILE)
            for r in (QoSReliabilityPolicy.RELIABLE, QoSReliabilityPolicy.BEST_EFFORT)
        )
        subs = [
            node.create_subscription(
                msg_type,
                topic,
                on_message,
                reliable,
                callback_group=group,
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=best_effort_publisher),
            ),
            node.create_subscription(msg_type, topic, on_message, best_effort, callback_group=group),
        ]
        if latched:  # volatile publishers do not match it; they are heard on the two above
            history = QoSProfile(
                depth=1,
                reliability=QoSReliabilityPolicy.RELIABLE,
                durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
            )
            subs.append(
                node.create_subscription(
                    msg_type,
                    topic,
                    on_message,
                    history,
                    callback_group=group,
                    event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda info: None),
                )
            )
        return subs

    # --- callbacks -------------------------------------------------------------------
    def bad_input(self, what: str, exc: Exception, input_name: str | None = None) -> None:
        self.input_errors += 1
        if input_name is not None:
            self.sync.reject(input_name, str(exc))
        self._node.get_logger().warning(f"dropping {what}: {exc}", throttle_duration_sec=2.0)

    def on_image(self, cam: str, msg: Image) -> None:
        self.take_frame(
            cam,
            msg,
            lambda: rgb_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, self.camera_hw),
        )

    def on_compressed(self, cam: str, msg: CompressedImage) -> None:
        self.take_frame(cam, msg, lambda: compressed_image(msg.format, msg.data, self.camera_hw))

    def take_frame(self, cam: str, msg, convert: Callable[[], np.ndarray]) -> None:
        """Convert (decode), resize to the recording size, refuse squashing; then into the sync."""
        policy = self._node._policy
        policy_hw = (
            (policy.signature.image_height, policy.signature.image_width) if policy is not None else None
        )
        try:
            img = fit_frame(convert(), self.record_hw, policy_hw)
        except InputError as exc:
            self.bad_input(f"camera/{cam} image", exc, cam)
            return
        self.sync.add(cam, stamp_s(msg.header.stamp), img)
        self.frames_received[cam] += 1

    def on_joints(self, msg: JointState) -> None:
        """One JointState of possibly several sources (arm, gripper controllers): merged by name."""
        try:
            q, stamp = self.joints.add(msg.name, msg.position, stamp_s(msg.header.stamp))
        except JointsIncomplete as exc:  # another source has not published yet: a reason, not an error
            self.sync.reject(JOINTS_INPUT, str(exc))
            self._node.get_logger().info(f"waiting: {exc}", throttle_duration_sec=5.0)
            return
        except InputError as exc:
            self.bad_input("joint_states", exc, JOINTS_INPUT)
            return
        self.sync.add(JOINTS_INPUT, stamp, q)

    def on_pedal(self, msg: Bool) -> None:
        core = self._node._core
        if core is not None and core.pedal != bool(msg.data):
            core.set_pedal(bool(msg.data))

    def on_teleop(self, msg: JointState) -> None:
        try:
            q = ordered_joints(msg.name, msg.position, "teleop/joint_targets", self.joints.names)
        except InputError as exc:
            self.bad_input("teleop target", exc)
            return
        core = self._node._core
        if core is not None:
            core.set_teleop_target(q, self._node.now_s())
