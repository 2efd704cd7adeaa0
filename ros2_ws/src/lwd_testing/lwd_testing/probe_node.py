"""Listens to what an actor publishes and writes one JSON line per message (tests, debugging).

    python -m lwd_testing.probe_node --ros-args -r __ns:=/robot0 -p out:=/tmp/probe.jsonl

Lines: {"topic": ..., "t": <monotonic s>, "sim_t": <newest /clock or null>, ...fields}. Commands carry their 16 values.
"""

from __future__ import annotations

import json
import sys
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from lwd_msgs.msg import ActionChunk, EpisodeStatus, InterventionState, PolicyStatus
from lwd_sim.node_main import run_node


class Probe(Node):
    def __init__(self) -> None:
        super().__init__("actor_probe")
        out = str(self.declare_parameter("out", "probe.jsonl").value)
        self.f = open(out, "a", buffering=1)  # noqa: SIM115 - closed in close()
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(
            Float64MultiArray, "joint_commands", lambda m: self.write("joint_commands", q=list(m.data)), 50
        )
        self.create_subscription(
            JointTrajectory,
            "joint_trajectory",
            lambda m: self.write(
                "joint_trajectory",
                names=list(m.joint_names),
                q=list(m.points[0].positions) if m.points else [],
            ),
            50,
        )
        self.create_subscription(
            ActionChunk,
            "action_chunk",
            lambda m: self.write(
                "action_chunk",
                chunk_id=m.chunk_id,
                start_step=m.start_step,
                n=len(m.targets),
                inference_ms=m.inference_ms,
            ),
            10,
        )
        self.create_subscription(
            InterventionState,
            "intervention_state",
            lambda m: self.write("intervention_state", engaged=m.engaged),
            latched,
        )
        self.create_subscription(
            EpisodeStatus,
            "episode_status",
            lambda m: self.write(
                "episode_status",
                state=m.state,
                episode_id=m.episode_id,
                robot_id=m.robot_id,
                step=m.step,
                label=m.label,
                interventions=m.interventions,
            ),
            latched,
        )
        self.create_subscription(
            PolicyStatus,
            "policy_status",
            lambda m: self.write("policy_status", version=m.version, provider=m.execution_provider),
            latched,
        )

        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)
        self.sim_t: float | None = None  # newest /clock, if a simulator publishes one
        self.create_subscription(Clock, "/clock", self.on_clock, 10)

    def on_clock(self, msg: Clock) -> None:
        self.sim_t = msg.clock.sec + msg.clock.nanosec * 1e-9

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            self.write(
                "diagnostics",
                name=st.name,
                level=int.from_bytes(st.level, "little") if isinstance(st.level, bytes) else int(st.level),
                message=st.message,
                values={kv.key: kv.value for kv in st.values},
            )

    def write(self, topic: str, **fields) -> None:
        self.f.write(
            json.dumps({"topic": topic, "t": time.monotonic(), "sim_t": self.sim_t, **fields}) + "\n"
        )

    def close(self) -> None:
        self.f.close()


def main(argv: list[str] | None = None) -> int:
    return run_node("probe", Probe, argv, spin=_spin_then_close)


def _spin_then_close(node: Probe) -> None:
    try:
        rclpy.spin(node)
    finally:
        node.close()


if __name__ == "__main__":
    sys.exit(main())
