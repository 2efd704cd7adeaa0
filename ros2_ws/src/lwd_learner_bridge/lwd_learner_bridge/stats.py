"""Fleet statistics: counters, what each robot did and said, latency windows.

Every other module reports here instead of keeping its own tallies, so the
status the bridge publishes (`BridgeCore.status`, `<root>/status.json`) is
built from one place. Refusals go through `refuse`, which counts, logs and
builds the `error` frame, so no refused frame goes uncounted.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lwd_common.transport import protocol

log = logging.getLogger("lwd.bridge")

COUNTERS = ("frames", "bytes", "rejected", "duplicates_dropped", "episodes_committed", "episodes_rejected",
            "missing_requests", "partials_expired", "policy_chunks_served", "auth_denied", "replies_dropped",
            "backlog_committed")


@dataclass
class RobotState:
    last_seen: float = 0.0
    episodes_committed: int = 0
    duplicates_dropped: int = 0
    rejected: int = 0
    policy_version: str = ""  # the published version the robot reports loaded
    policy_served_as: str = ""  # ...under the name the bridge served it (differs while pinned back)
    policy_loaded_at: float = 0.0
    policy_ok: bool = True
    last_commit_latency_s: float | None = None
    spooled_episodes: int = 0  # as the robot last reported
    reported: dict[str, int] = field(default_factory=dict)  # the robot's own counters (retries, ...)


def percentile(values: Iterable[float], q: float) -> float | None:
    arr = np.asarray(list(values), np.float64)
    return float(np.percentile(arr, q)) if arr.size else None


class FleetStats:
    def __init__(self, started_at: float):
        self.started_at = started_at
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.robots: dict[str, RobotState] = {}
        self.commit_latencies: deque[float] = deque(maxlen=10000)  # robot end -> committed (wall clock)
        self.policy_latencies: deque[float] = deque(maxlen=10000)  # served -> robot reports loaded

    def robot(self, robot_id: str) -> RobotState:
        return self.robots.setdefault(robot_id, RobotState())

    def frame_received(self, size: int) -> None:
        self.counters["frames"] += 1
        self.counters["bytes"] += size

    def refuse(self, code: str, message: str, episode_id: str | None = None, fatal: bool = False,
               peer: bytes | None = None, robot_id: str | None = None) -> bytes:
        """Count and log a refused frame and return the `error` frame that tells the robot why."""
        self.counters["rejected"] += 1
        if robot_id:
            self.robot(robot_id).rejected += 1
        log.warning("rejected frame from %s: %s: %s", robot_id or (peer.hex() if peer else "?"), code, message)
        return protocol.encode("error", code=code, message=message, episode_id=episode_id, fatal=fatal)

    def duplicate(self, robot_id: str | None) -> None:
        self.counters["duplicates_dropped"] += 1
        if robot_id:
            self.robot(robot_id).duplicates_dropped += 1

    def robot_reported(self, robot_id: str, msg: dict[str, Any]) -> None:
        """A `robot_stats` frame: keep the robot's own counters (bounded) for the fleet status."""
        robot = self.robot(robot_id)
        robot.reported = {k: v for k, v in list(msg["counters"].items())[:50]
                          if isinstance(k, str) and isinstance(v, int)}
        robot.spooled_episodes = msg["spooled_episodes"]

    def episode_committed(self, robot_id: str, ended_at: float, now: float) -> None:
        """Time end -> committed only for episodes that ended while this bridge ran (else it is downtime)."""
        robot = self.robot(robot_id)
        if ended_at >= self.started_at:
            latency = max(0.0, now - ended_at)
            self.commit_latencies.append(latency)
            robot.last_commit_latency_s = latency
        else:  # spooled while this bridge was down: that wait is downtime, not delivery latency
            self.counters["backlog_committed"] += 1
        robot.episodes_committed += 1
        self.counters["episodes_committed"] += 1

    def latencies(self) -> dict[str, dict[str, float | None]]:
        return {"commit_latency_s": {"p50": percentile(self.commit_latencies, 50),
                                     "p99": percentile(self.commit_latencies, 99)},
                "policy_latency_s": {"p50": percentile(self.policy_latencies, 50),
                                     "p99": percentile(self.policy_latencies, 99)}}

    def robots_status(self, open_episodes: dict[str, int]) -> dict[str, Any]:
        return {rid: {
            "last_seen": r.last_seen,
            "episodes_committed": r.episodes_committed,
            "open_episodes": open_episodes.get(rid, 0),
            "duplicates_dropped": r.duplicates_dropped,
            "rejected": r.rejected,
            "policy_version": r.policy_version,
            "policy_served_as": r.policy_served_as,
            "policy_loaded_at": r.policy_loaded_at,
            "policy_ok": r.policy_ok,
            "last_commit_latency_s": r.last_commit_latency_s,
            "retries": r.reported.get("retries", 0),
            "spooled_episodes": r.spooled_episodes,
            "robot_counters": dict(r.reported),
        } for rid, r in sorted(self.robots.items())}
