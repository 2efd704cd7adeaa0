"""E-stop reaction time over real DDS, and a camera flood that keeps the actor's input callbacks busy.

Two ROS processes for tests and `benchmarks/estop_reaction.py`:

    python tests/actor/estop_timing.py flood [--cameras head,left_wrist,right_wrist] [--hz 30] \
        --ros-args -r __ns:=/robot0
    python tests/actor/estop_timing.py press [--presses 20] [--out presses.jsonl] --ros-args -r __ns:=/robot0

`flood` publishes, on each camera's `camera/<name>/image_raw/compressed`, the slowest PNG to decode
that the actor still accepts: `MAX_IMAGE_PIXELS` (4096 x 4096), 16-bit RGBA, Adam7-interlaced, flat,
so ~150 KB on the wire and a few hundred ms of decoding (and resizing) on receipt, per frame.

`press` waits until the actor publishes commands, publishes True on `estop` (recording the monotonic
time just before), and watches `joint_commands` and `/diagnostics`: one JSON line per press with
`latched_s` (until the first /diagnostics saying `estop` True: the actor published it from its e-stop
callback), `silenced_s` (until the last command after the press, once none came for `--quiet-s`) and
`commands_after`. Then it publishes False and calls `actor/reset_estop`, and presses again once
commands flow (an actor with `hold_when_idle: true` repeats its last command outside episodes).
Times are `time.monotonic()`, so they compare across processes on one machine.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import threading
import time
import zlib
from collections import deque

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.client import Client
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Bool, Float64MultiArray

from lwd_actor.core.observation import MAX_IMAGE_PIXELS
from lwd_description.robot import CAMERA_NAMES
from lwd_msgs.srv import StopEpisode

# Adam7 passes: (x0, y0, dx, dy)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def slow_png(side: int = int(MAX_IMAGE_PIXELS**0.5)) -> bytes:
    """A side x side PNG, 16-bit RGBA and interlaced (the most decoding work per pixel OpenCV does to
    give 8-bit BGR), flat grey (small on the wire)."""
    img = np.full((side, side, 4), 30000, ">u2")
    raw = bytearray()
    for x0, y0, dx, dy in _ADAM7:
        sub = np.ascontiguousarray(img[y0::dy, x0::dx])
        if sub.size == 0:
            continue
        rows = sub.view(np.uint8).reshape(sub.shape[0], -1)
        filtered = np.zeros((rows.shape[0], rows.shape[1] + 1), np.uint8)  # filter byte 0 (none)
        filtered[:, 1:] = rows
        raw += filtered.tobytes()
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(bytes(raw), 6))
        + _chunk(b"IEND", b"")
    )


class Flood(Node):
    def __init__(self, cameras: list[str], hz: float, side: int):
        super().__init__("camera_flood")
        data = slow_png(side)
        self.msg = CompressedImage(format="bgr8; png compressed bgr8", data=data)
        self.pubs = [
            self.create_publisher(
                CompressedImage, f"camera/{c}/image_raw/compressed", qos_profile_sensor_data
            )
            for c in cameras
        ]
        self.sent = 0
        self.create_timer(1.0 / hz, self.tick)
        self.get_logger().info(f"flooding {cameras} with {side}x{side} PNGs ({len(data)} bytes) at {hz:g} Hz")

    def tick(self) -> None:
        self.msg.header.stamp = self.get_clock().now().to_msg()
        for pub in self.pubs:
            pub.publish(self.msg)
        self.sent += 1


class Presser(Node):
    def __init__(self) -> None:
        super().__init__("estop_presser")
        self.estop = self.create_publisher(
            Bool, "estop", QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
        )
        self.reset: Client = self.create_client(StopEpisode, "actor/reset_estop")
        self.lock = threading.Lock()
        self.commands: deque[float] = deque(maxlen=10_000)  # arrival times
        self.estop_diags: deque[float] = deque(maxlen=1000)  # arrival of /diagnostics with estop True
        self.create_subscription(Float64MultiArray, "joint_commands", self.on_command, 100)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 50)

    def on_command(self, msg: Float64MultiArray) -> None:
        with self.lock:
            self.commands.append(time.monotonic())

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        t = time.monotonic()
        for status in msg.status:
            if status.name.endswith("/actor") and any(
                kv.key == "estop" and kv.value == "True" for kv in status.values
            ):
                with self.lock:
                    self.estop_diags.append(t)

    def commands_since(self, t: float) -> list[float]:
        with self.lock:
            return [c for c in self.commands if c >= t]

    def flowing(self) -> bool:
        now = time.monotonic()
        return len(self.commands_since(now - 0.5)) >= 5 and bool(self.commands_since(now - 0.15))

    def press(self, quiet_s: float, timeout_s: float) -> dict:
        t0 = time.monotonic()
        self.estop.publish(Bool(data=True))
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            after = self.commands_since(t0)
            last = after[-1] if after else t0
            if time.monotonic() - last >= quiet_s:
                break
            time.sleep(0.02)
        after = self.commands_since(t0)
        with self.lock:
            latched = next((t for t in self.estop_diags if t >= t0), None)
        return {
            "t_press": t0,
            "latched_s": None if latched is None else latched - t0,
            "silenced_s": (after[-1] - t0) if after else 0.0,
            "commands_after": len(after),
            "timed_out": time.monotonic() >= deadline,
        }

    def release_and_reset(self, timeout_s: float) -> bool:
        self.estop.publish(Bool(data=False))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.reset.wait_for_service(timeout_sec=1.0):
                continue
            future = self.reset.call_async(StopEpisode.Request(reason="estop_timing"))
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.02)
            res = future.result() if future.done() else None
            if res is not None and res.accepted:
                return True
            self.estop.publish(Bool(data=False))  # refused: the release may not have arrived yet
            time.sleep(0.2)
        return False


def wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def run_presses(node: Presser, a: argparse.Namespace, out) -> int:
    if not wait(lambda: node.estop.get_subscription_count() > 0, a.timeout_s):
        print(json.dumps({"error": "no e-stop subscriber"}), file=out, flush=True)
        return 1
    for i in range(a.presses):
        if not wait(node.flowing, a.timeout_s):
            print(json.dumps({"press": i, "error": "no commands flowing"}), file=out, flush=True)
            return 1
        time.sleep(a.settle_s)
        result = node.press(a.quiet_s, a.timeout_s)
        result["press"] = i
        result["reset"] = node.release_and_reset(a.timeout_s) if i + 1 < a.presses or a.reset_last else None
        print(json.dumps(result), file=out, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = rclpy.utilities.remove_ros_args(sys.argv if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("flood")
    f.add_argument("--cameras", default=",".join(CAMERA_NAMES))
    f.add_argument("--hz", type=float, default=30.0, help="frames per second per camera")
    f.add_argument("--side", type=int, default=int(MAX_IMAGE_PIXELS**0.5))
    r = sub.add_parser("press")
    r.add_argument("--presses", type=int, default=1)
    r.add_argument("--quiet-s", type=float, default=1.5, help="no command this long after a press: silenced")
    r.add_argument("--settle-s", type=float, default=0.5, help="commands flow this long before a press")
    r.add_argument("--timeout-s", type=float, default=60.0)
    r.add_argument("--reset-last", action="store_true", help="also release and reset after the last press")
    r.add_argument("--out", default="", help="JSON lines here (default stdout)")
    a = p.parse_args(args[1:])
    rclpy.init(args=sys.argv if argv is None else argv)
    if a.mode == "flood":
        node: Node = Flood([c for c in a.cameras.split(",") if c], a.hz, a.side)
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        return 0
    presser = Presser()
    executor = SingleThreadedExecutor()
    executor.add_node(presser)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    out = open(a.out, "a", buffering=1) if a.out else sys.stdout  # noqa: SIM115 - closed below
    try:
        return run_presses(presser, a, out)
    except KeyboardInterrupt:
        return 0
    finally:
        if out is not sys.stdout:
            out.close()
        executor.shutdown(timeout_sec=1.0)
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
