"""A stand-in robot for actor tests and demos without the simulator: cameras + joint states.

Publishes the cameras and joints of the robot description `robot` (default the G1; a name
from lwd_description's robots/ or a YAML path): `camera/<name>/image_raw` (rgb8, sensor-data
QoS) and `joint_states` at `rate_hz`; joint positions move toward the last `joint_commands` (first order),
so a closed loop with the actor behaves like a real position-controlled arm.
Fault injection for tests: `drop_camera` (never publish that camera),
`bad_encoding` (publish mono8 on the first camera, the G1's head), `shuffle_joints` (reorder joint_states),
`split_joint_states` (arm and gripper controllers: two JointState messages on one
topic, the grippers' at a third of the rate, as real controllers do). With
`compressed` the cameras publish sensor_msgs/CompressedImage (JPEG, as
image_transport's `compressed` plugin) on `camera/<name>/image_raw/compressed`.
Frames are `image_size` square unless `image_height` x `image_width` are set (`image_size` 0: each
camera at its size in the robot description); `pattern`
`flat` (default: one grey level per frame, tiny JPEGs) or `texture` (a smooth gradient with
sensor-like noise, precomputed, so JPEG sizes resemble a real camera's; for benchmarks).
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

from lwd_common.preprocessing import encode_jpeg
from lwd_description.robot import DEFAULT_ROBOT, load_robot
from lwd_sim.node_main import run_node


class FakeRobot(Node):
    def __init__(self) -> None:
        super().__init__("fake_robot")
        self.robot = load_robot(str(self.declare_parameter("robot", DEFAULT_ROBOT).value) or None)
        self.joint_names = self.robot.joint_names
        self.camera_names = self.robot.camera_names
        self.rate = float(self.declare_parameter("rate_hz", 30.0).value)
        self.size = int(self.declare_parameter("image_size", 48).value)
        self.height = int(self.declare_parameter("image_height", 0).value) or self.size
        self.width = int(self.declare_parameter("image_width", 0).value) or self.size
        # camera -> (height, width) of its frames
        self.sizes = {
            c: (self.height, self.width) if self.height and self.width else self.robot.cameras[c]
            for c in self.camera_names
        }
        self.pattern = str(self.declare_parameter("pattern", "flat").value)
        if self.pattern not in ("flat", "texture"):
            raise ValueError(f"pattern must be 'flat' or 'texture', not {self.pattern!r}")
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
        self.textures = self._textures() if self.pattern == "texture" else {}
        self._jpegs: dict[tuple[str, int], bytes] = {}
        self.q = np.zeros(len(self.joint_names))
        self.target = self.q.copy()
        self.k = 0
        if self.compressed:
            self.cams = {
                c: self.create_publisher(
                    CompressedImage, f"camera/{c}/image_raw/compressed", qos_profile_sensor_data
                )
                for c in self.camera_names
            }
        else:
            self.cams = {
                c: self.create_publisher(Image, f"camera/{c}/image_raw", qos_profile_sensor_data)
                for c in self.camera_names
            }
        self.joints = self.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
        self.create_subscription(Float64MultiArray, "joint_commands", self.on_command, 10)
        self.create_timer(1.0 / self.rate, self.tick)

    def _textures(self, n: int = 8) -> dict[str, list[np.ndarray]]:
        """`n` frames per camera: a gradient (its own per camera) plus Gaussian noise (sigma 6)."""
        rng = np.random.default_rng(0)
        out = {}
        for i, cam in enumerate(self.camera_names):
            y, x = np.mgrid[0 : self.sizes[cam][0], 0 : self.sizes[cam][1]].astype(np.float32)
            base = np.stack(
                [
                    128 + 100 * np.sin(x / (37 + 11 * i) + y / 53),
                    128 + 100 * np.cos(y / (29 + 7 * i)),
                    128 + 60 * np.sin((x + y) / 71),
                ],
                axis=-1,
            )
            out[cam] = [
                np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8) for _ in range(n)
            ]
        return out

    def frame(self, i: int, cam: str) -> np.ndarray:
        if self.textures:
            frames = self.textures[cam]
            return frames[self.k % len(frames)]
        return np.full((*self.sizes[cam], 3), (40 * i + self.k) % 256, np.uint8)

    def jpeg(self, i: int, cam: str) -> bytes:
        """The frame JPEG-encoded; textures are encoded once (a 640x480 encode costs ms per frame)."""
        if not self.textures:
            return encode_jpeg(self.frame(i, cam), 90)
        key = (cam, self.k % len(self.textures[cam]))
        if key not in self._jpegs:
            self._jpegs[key] = encode_jpeg(self.frame(i, cam), 90)
        return self._jpegs[key]

    def on_command(self, msg: Float64MultiArray) -> None:
        if len(msg.data) == len(self.joint_names):
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
        for i, cam in enumerate(self.camera_names):
            if cam == self.drop_camera:
                continue
            if self.compressed:
                msg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=self.jpeg(i, cam))
                msg.header.stamp = stamp
                msg.header.frame_id = f"{cam}_camera"
                self.cams[cam].publish(msg)
                continue
            img = Image()
            img.header.stamp = stamp
            img.header.frame_id = f"{cam}_camera"
            img.height, img.width = self.sizes[cam]
            if self.bad_encoding and i == 0:
                img.encoding, img.step = "mono8", img.width
                img.data = bytes(img.height * img.width)
            else:
                img.encoding, img.step = "rgb8", img.width * 3
                img.data = self.frame(i, cam).tobytes()
            self.cams[cam].publish(img)
        order = (
            list(reversed(range(len(self.joint_names))))
            if self.shuffle
            else list(range(len(self.joint_names)))
        )
        if not self.split:
            self.publish_joints(stamp, order)
            return
        grippers = [i for i in order if self.joint_names[i] in self.robot.gripper_joints]
        self.publish_joints(stamp, [i for i in order if i not in grippers])
        if self.k % 3 == 0:
            self.publish_joints(stamp, grippers)

    def publish_joints(self, stamp: TimeMsg, indices: list[int]) -> None:
        js = JointState()
        js.header.stamp = stamp
        js.name = [self.joint_names[i] for i in indices]
        js.position = [float(self.q[i]) for i in indices]
        self.joints.publish(js)


def main(argv: list[str] | None = None) -> int:
    return run_node("fake_robot", FakeRobot, argv)


if __name__ == "__main__":
    sys.exit(main())
