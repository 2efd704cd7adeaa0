"""Keyboard- and joystick-free teleoperator for tests and demos: publishes `pedal` and teleop targets.

On a schedule (seconds after start-up) it presses the pedal for `hold_s`, and
publishes `teleop/joint_targets` (sensor_msgs/JointState, the joints of the robot description
`robot`, default the G1) at `rate_hz`: `target_positions` if given (one per joint: 16 for the G1), else the robot's current
joint positions plus `offset` (a gentle nudge). `cycles` repeats press/release
every `period_s`. `qos: best_effort` publishes pedal and targets best-effort (as
some joystick and pedal drivers do). The schedule's clock starts once a `pedal` subscriber (the actor)
has been discovered and a target exists (joint_states received, unless fixed), so slow DDS discovery cannot swallow a press. The pedal state is published at `rate_hz` too, so a late
subscriber sees it at once.

    python -m lwd_testing.teleop_helper_node --ros-args -r __ns:=/robot0 \
        -p press_after_s:=2.0 -p hold_s:=1.5 -p offset:=0.05
"""

from __future__ import annotations

import sys

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool

from lwd_description.robot import DEFAULT_ROBOT, load_robot
from lwd_sim.node_main import run_node


class TeleopHelper(Node):
    def __init__(self) -> None:
        super().__init__("teleop_helper")
        # the joints of the robot description `robot` (a name or YAML path; default the G1)
        self.joint_names = load_robot(
            str(self.declare_parameter("robot", DEFAULT_ROBOT).value) or None
        ).joint_names
        self.rate = float(self.declare_parameter("rate_hz", 30.0).value)
        self.press_after = float(self.declare_parameter("press_after_s", 1.0).value)
        self.hold = float(self.declare_parameter("hold_s", 1.0).value)
        self.period = float(self.declare_parameter("period_s", 0.0).value)
        self.cycles = int(self.declare_parameter("cycles", 1).value)
        self.offset = float(self.declare_parameter("offset", 0.05).value)
        target = list(self.declare_parameter("target_positions", [0.0]).value)
        if len(target) not in (1, len(self.joint_names)):
            raise SystemExit(f"target_positions needs {len(self.joint_names)} values, got {len(target)}")
        self.fixed = np.asarray(target, np.float64) if len(target) == len(self.joint_names) else None
        self.q: np.ndarray | None = None
        self.known: dict[str, float] = {}
        self.anchor: np.ndarray | None = None
        self.t0 = None
        qos = str(self.declare_parameter("qos", "reliable").value)
        if qos not in ("reliable", "best_effort"):
            raise SystemExit(f"qos must be 'reliable' or 'best_effort', not {qos!r}")
        profile = QoSProfile(
            depth=10,
            reliability=QoSReliabilityPolicy.BEST_EFFORT
            if qos == "best_effort"
            else QoSReliabilityPolicy.RELIABLE,
        )
        self.pedal_pub = self.create_publisher(Bool, "pedal", profile)
        self.target_pub = self.create_publisher(JointState, "teleop/joint_targets", profile)
        self.create_subscription(JointState, "joint_states", self.on_joints, qos_profile_sensor_data)
        self.create_timer(1.0 / self.rate, self.tick)

    def on_joints(self, msg: JointState) -> None:
        """Merged by name: arm and gripper controllers may publish separate messages."""
        self.known.update(zip(msg.name, msg.position, strict=False))
        if all(n in self.known for n in self.joint_names):
            self.q = np.array([self.known[n] for n in self.joint_names])

    def pressed(self, t: float) -> bool:
        for k in range(max(self.cycles, 1)):
            start = self.press_after + k * self.period
            if start <= t < start + self.hold:
                return True
        return False

    def tick(self) -> None:
        if self.t0 is None:
            if self.pedal_pub.get_subscription_count() == 0 or (self.fixed is None and self.q is None):
                return  # no listener yet, or nothing to send: a press now would only make the robot hold
            self.t0 = self.get_clock().now()
            self.get_logger().info("pedal subscriber found: schedule started")
        t = (self.get_clock().now() - self.t0).nanoseconds * 1e-9
        pressed = self.pressed(t)
        if not pressed:
            self.anchor = None
        target = self.fixed
        if target is None and self.q is not None:
            if self.anchor is None:
                self.anchor = self.q + self.offset  # fixed per press, like a held leader arm
            target = self.anchor
        if target is not None:
            msg = JointState(name=list(self.joint_names), position=[float(v) for v in target])
            msg.header.stamp = self.get_clock().now().to_msg()
            self.target_pub.publish(msg)
        self.pedal_pub.publish(Bool(data=pressed))


def main(argv: list[str] | None = None) -> int:
    return run_node("teleop_helper", TeleopHelper, argv)


if __name__ == "__main__":
    sys.exit(main())
