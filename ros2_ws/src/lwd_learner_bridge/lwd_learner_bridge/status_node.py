"""ROS shell: publish the bridge's fleet status on /diagnostics (diagnostic_msgs).

    python -m lwd_learner_bridge.status_node --ros-args -p root:=/data/lwd -p period_s:=1.0

Reads `<root>/status.json` (written by the bridge every second) and publishes one
DiagnosticStatus for the bridge and one per robot (WARN when a robot went silent
or failed to load a policy; ERROR when the bridge stopped updating its status).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from lwd_learner_bridge.status import ERROR, fleet_health


class BridgeStatusNode(Node):
    def __init__(self) -> None:
        super().__init__("bridge_status")
        self.root = Path(self.declare_parameter("root", "").value)
        self.stale_s = float(self.declare_parameter("stale_s", 10.0).value)
        if not str(self.root):
            raise SystemExit("parameter 'root' (the bridge root directory) is required")
        self.pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(float(self.declare_parameter("period_s", 1.0).value), self.tick)

    def tick(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        path = self.root / "status.json"
        try:
            entries = fleet_health(json.loads(path.read_text()), self.stale_s, time.time())
        except (OSError, ValueError, KeyError) as exc:
            entries = [(ERROR, "lwd_bridge", f"no readable {path}: {exc}", {})]
        for level, name, text, values in entries:
            msg.status.append(
                DiagnosticStatus(
                    level=bytes([level]),
                    name=name,
                    message=text,
                    hardware_id="lwd_bridge",
                    values=[KeyValue(key=k, value=v) for k, v in values.items()],
                )
            )
        self.pub.publish(msg)


def main() -> None:
    rclpy.init()
    node = BridgeStatusNode()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
