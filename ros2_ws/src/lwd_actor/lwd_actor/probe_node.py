"""Listens to what an actor publishes and writes one JSON line per message (tests, debugging).

    python -m lwd_actor.probe_node --ros-args -r __ns:=/robot0 -p out:=/tmp/probe.jsonl

Lines: {"topic": ..., "t": <monotonic s>, ...fields}. Commands carry their 16 values.
"""

from __future__ import annotations

import json
import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from lwd_msgs.msg import ActionChunk, EpisodeStatus, InterventionState, PolicyStatus


class Probe(Node):
    def __init__(self) -> None:
        super().__init__("actor_probe")
        out = str(self.declare_parameter("out", "probe.jsonl").value)
        self.f = open(out, "a", buffering=1)  # noqa: SIM115 - closed in close()
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(Float64MultiArray, "joint_commands",
                                 lambda m: self.write("joint_commands", q=list(m.data)), 50)
        self.create_subscription(JointTrajectory, "joint_trajectory",
                                 lambda m: self.write("joint_trajectory", names=list(m.joint_names),
                                                      q=list(m.points[0].positions) if m.points else []), 50)
        self.create_subscription(ActionChunk, "action_chunk",
                                 lambda m: self.write("action_chunk", chunk_id=m.chunk_id, start_step=m.start_step,
                                                      n=len(m.targets), inference_ms=m.inference_ms), 10)
        self.create_subscription(InterventionState, "intervention_state",
                                 lambda m: self.write("intervention_state", engaged=m.engaged), latched)
        self.create_subscription(EpisodeStatus, "episode_status",
                                 lambda m: self.write("episode_status", state=m.state, episode_id=m.episode_id,
                                                      step=m.step, label=m.label,
                                                      interventions=m.interventions), latched)
        self.create_subscription(PolicyStatus, "policy_status",
                                 lambda m: self.write("policy_status", version=m.version,
                                                      provider=m.execution_provider), latched)

    def write(self, topic: str, **fields) -> None:
        self.f.write(json.dumps({"topic": topic, "t": time.monotonic(), **fields}) + "\n")

    def close(self) -> None:
        self.f.close()


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv if argv is not None else sys.argv)
    node = Probe()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
