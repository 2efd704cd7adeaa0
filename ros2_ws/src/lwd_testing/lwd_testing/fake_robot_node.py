"""A stand-in robot for actor tests and demos without the simulator: cameras + joint states.

Publishes `camera/<name>/image_raw` (rgb8, sensor-data QoS) and `joint_states` at
`rate_hz`; joint positions move toward the last `joint_commands` (first order),
so a closed loop with the actor behaves like a real position-controlled arm.
Fault injection for tests: `drop_camera` (never publish that camera),
`bad_encoding` (publish mono8 on head), `shuffle_joints` (reorder joint_states),
`split_joint_states` (arm and gripper controllers: two JointState messages on one
topic, the grippers' at a third of the rate, as real controllers do). With
`compressed` the cameras publish sensor_msgs/CompressedImage (JPEG, as
image_transport's `compressed` plugin) on `camera/<name>/image_raw/compressed`.
With `publish_clock` it also publishes `/clock` advancing `sim_speed` x real time and
stamps everything with that simulated time (for actors running with `use_sim_time`).

    python -m lwd_testing.fake_robot_node --ros-args -r __ns:=/robot0 -p image_size:=64
"""

from __future__ import annotations

import sys

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray

from lwd_common.node_main import run_node
from lwd_common.preprocessing import encode_jpeg
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES


class FakeRobot(Node):
    def __init__(self) -> None:
        super().__init__("fake_robot")
        self.rate = float(self.declare_parameter("rate_hz", 30.0).value)
        self.size = int(self.declare_parameter("image_size", 48).value)
        self.gain = float(self.declare_parameter("tracking_gain", 0.5).value)
        self.drop_camera = str(self.declare_parameter("drop_camera", "").value)
        self.bad_encoding = bool(self.declare_parameter("bad_encoding", False).value)
        self.shuffle = bool(self.declare_parameter("shuffle_joints", False).value)
        self.split = bool(self.declare_parameter("split_joint_states", False).value)
        self.compressed = bool(self.declare_parameter("compressed", False).value)
        self.publish_clock = bool(self.declare_parameter("publish_clock", False).value)
        self.sim_speed = float(self.declare_parameter("sim_speed", 1.0).value)
        self.sim_t = 1.0
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if self.publish_clock else None
        self.q = np.zeros(len(JOINT_NAMES))
        self.target = self.q.copy()
        self.k = 0
        if self.compressed:
            self.cams = {
                c: self.create_publisher(
                    CompressedImage, f"camera/{c}/image_raw/compressed", qos_profile_sensor_data
                )
                for c in CAMERA_NAMES
            }
        else:
            self.cams = {
                c: self.create_publisher(Image, f"camera/{c}/image_raw", qos_profile_sensor_data)
                for c in CAMERA_NAMES
            }
        self.joints = self.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
        self.create_subscription(Float64MultiArray, "joint_commands", self.on_command, 10)
        self.create_timer(1.0 / self.rate, self.tick)

    def on_command(self, msg: Float64MultiArray) -> None:
        if len(msg.data) == len(JOINT_NAMES):
            self.target = np.asarray(msg.data, np.float64)

    def tick(self) -> None:
        self.k += 1
        self.q += self.gain * (self.target - self.q)
        if self.clock_pub is not None:
            self.sim_t += self.sim_speed / self.rate
            sec = int(self.sim_t)
            stamp = TimeMsg(sec=sec, nanosec=int((self.sim_t - sec) * 1e9))
            self.clock_pub.publish(Clock(clock=stamp))
        else:
            stamp = self.get_clock().now().to_msg()
        for i, cam in enumerate(CAMERA_NAMES):
            if cam == self.drop_camera:
                continue
            if self.compressed:
                frame = np.full((self.size, self.size, 3), (40 * i + self.k) % 256, np.uint8)
                msg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=encode_jpeg(frame, 90))
                msg.header.stamp = stamp
                msg.header.frame_id = f"{cam}_camera"
                self.cams[cam].publish(msg)
                continue
            img = Image()
            img.header.stamp = stamp
            img.header.frame_id = f"{cam}_camera"
            img.height = img.width = self.size
            if self.bad_encoding and cam == "head":
                img.encoding, img.step = "mono8", self.size
                img.data = bytes(self.size * self.size)
            else:
                img.encoding, img.step = "rgb8", self.size * 3
                frame = np.full((self.size, self.size, 3), (40 * i + self.k) % 256, np.uint8)
                img.data = frame.tobytes()
            self.cams[cam].publish(img)
        order = list(reversed(range(len(JOINT_NAMES)))) if self.shuffle else list(range(len(JOINT_NAMES)))
        if not self.split:
            self.publish_joints(stamp, order)
            return
        grippers = [i for i in order if "gripper" in JOINT_NAMES[i]]
        self.publish_joints(stamp, [i for i in order if i not in grippers])
        if self.k % 3 == 0:
            self.publish_joints(stamp, grippers)

    def publish_joints(self, stamp: TimeMsg, indices: list[int]) -> None:
        js = JointState()
        js.header.stamp = stamp
        js.name = [JOINT_NAMES[i] for i in indices]
        js.position = [float(self.q[i]) for i in indices]
        self.joints.publish(js)


def main(argv: list[str] | None = None) -> int:
    return run_node("fake_robot", FakeRobot, argv)


if __name__ == "__main__":
    sys.exit(main())
