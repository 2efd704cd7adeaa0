"""Smoke check of the ROS 2 install: lwd_msgs and sensor images across processes.

    python -m lwd_testing.ros_smoke publish                # one process (until Ctrl-C)
    python -m lwd_testing.ros_smoke receive --count 20     # another process
    python -m lwd_testing.ros_smoke label-server           # LabelEpisode service
    python -m lwd_testing.ros_smoke label-client --success # ... and its client
    python -m lwd_testing.ros_smoke demo                   # all of the above, as processes

`receive` and `label-client` print one JSON line with what they got and exit 0
on success, 1 on timeout, so scripts and tests can check the result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from lwd_description.robot import CHUNK_HORIZON, JOINT_NAMES
from lwd_msgs.msg import ActionChunk
from lwd_msgs.srv import LabelEpisode

CHUNK_TOPIC = "smoke/action_chunk"
IMAGE_TOPIC = "smoke/image"
LABEL_SERVICE = "smoke/label_episode"


def make_chunk(node: Node, i: int) -> ActionChunk:
    msg = ActionChunk()
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.policy_version = "smoke-v1"
    msg.chunk_id = i
    msg.start_step = i * CHUNK_HORIZON
    msg.horizon = CHUNK_HORIZON
    msg.joint_names = list(JOINT_NAMES)
    msg.targets = (np.arange(CHUNK_HORIZON * len(JOINT_NAMES)) * 1e-3 + i).tolist()
    return msg


def make_image(node: Node, i: int, size: int = 64) -> Image:
    msg = Image()
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.header.frame_id = "head_camera"
    msg.height = msg.width = size
    msg.encoding = "rgb8"
    msg.step = size * 3
    msg.data = np.full((size, size, 3), i % 256, np.uint8).tobytes()
    return msg


def publish(count: int, rate_hz: float) -> int:
    node = Node("lwd_smoke_publisher")
    chunk_pub = node.create_publisher(ActionChunk, CHUNK_TOPIC, 10)
    image_pub = node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
    sent = 0

    def tick() -> None:
        nonlocal sent
        chunk_pub.publish(make_chunk(node, sent))
        image_pub.publish(make_image(node, sent))
        sent += 1

    node.create_timer(1.0 / rate_hz, tick)
    while rclpy.ok() and (count <= 0 or sent < count):
        rclpy.spin_once(node, timeout_sec=0.1)
    return 0


def receive(count: int, timeout: float) -> int:
    node = Node("lwd_smoke_receiver")
    chunks: list[ActionChunk] = []
    images: list[Image] = []
    node.create_subscription(ActionChunk, CHUNK_TOPIC, chunks.append, 10)
    node.create_subscription(Image, IMAGE_TOPIC, images.append, qos_profile_sensor_data)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (len(chunks) < count or len(images) < count):
        rclpy.spin_once(node, timeout_sec=0.1)
    ok = len(chunks) >= count and len(images) >= count
    first = chunks[0] if chunks else None
    print(
        json.dumps(
            {
                "ok": ok,
                "chunks": len(chunks),
                "images": len(images),
                "chunk_fields_ok": bool(
                    first
                    and first.horizon == CHUNK_HORIZON
                    and list(first.joint_names) == list(JOINT_NAMES)
                    and len(first.targets) == CHUNK_HORIZON * len(JOINT_NAMES)
                    and first.policy_version == "smoke-v1"
                ),
                "image_ok": bool(
                    images
                    and images[0].encoding == "rgb8"
                    and len(images[0].data) == images[0].height * images[0].step
                ),
            }
        ),
        flush=True,
    )
    return 0 if ok else 1


def label_server() -> int:
    node = Node("lwd_smoke_label_server")

    def handle(req: LabelEpisode.Request, resp: LabelEpisode.Response) -> LabelEpisode.Response:
        resp.accepted = True
        resp.episode_id = "smoke-episode"
        resp.message = f"labelled {'success' if req.success else 'failure'}: {req.note}"
        return resp

    node.create_service(LabelEpisode, LABEL_SERVICE, handle)
    rclpy.spin(node)
    return 0


def label_client(success: bool, note: str, timeout: float) -> int:
    node = Node("lwd_smoke_label_client")
    client = node.create_client(LabelEpisode, LABEL_SERVICE)
    if not client.wait_for_service(timeout_sec=timeout):
        print(json.dumps({"ok": False, "error": "service not available"}), flush=True)
        return 1
    req = LabelEpisode.Request(success=success, note=note)
    future = client.call_async(req)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    resp = future.result()
    if resp is None:
        print(json.dumps({"ok": False, "error": "no response"}), flush=True)
        return 1
    print(
        json.dumps(
            {"ok": True, "accepted": resp.accepted, "episode_id": resp.episode_id, "message": resp.message}
        ),
        flush=True,
    )
    return 0


def demo(timeout: float) -> int:
    """Start publisher, receiver, label server and client as separate processes."""
    import subprocess

    me = [sys.executable, "-m", "lwd_testing.ros_smoke"]
    bg = [subprocess.Popen(me + ["publish"]), subprocess.Popen(me + ["label-server"])]
    try:
        rc_recv = subprocess.run(me + ["receive", "--count", "30", "--timeout", str(timeout)]).returncode
        rc_label = subprocess.run(
            me + ["label-client", "--success", "--note", "demo", "--timeout", str(timeout)]
        ).returncode
    finally:
        for p in bg:
            p.terminate()
            p.wait(timeout=10)
    ok = rc_recv == 0 and rc_label == 0
    print("ROS 2 smoke check:", "OK" if ok else "FAILED", flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("role", choices=["publish", "receive", "label-server", "label-client", "demo"])
    parser.add_argument(
        "--count", type=int, default=0, help="messages to receive, or to publish (0: until stopped)"
    )
    parser.add_argument("--rate", type=float, default=30.0, help="publish rate, Hz")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait")
    parser.add_argument("--success", action="store_true", help="label-client: label success")
    parser.add_argument("--note", default="", help="label-client: note")
    args = parser.parse_args(argv)
    if args.role == "demo":
        return demo(args.timeout)
    rclpy.init()
    try:
        if args.role == "publish":
            return publish(args.count, args.rate)
        if args.role == "receive":
            return receive(args.count, args.timeout)
        if args.role == "label-server":
            return label_server()
        return label_client(args.success, args.note, args.timeout)
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
