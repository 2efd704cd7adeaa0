"""Fleet statistics: counters, what each robot did and said, latency windows.

Every other module reports here instead of keeping its own tallies, so the
status the bridge publishes (`BridgeCore.status`, `<root>/status.json`) is
built from one place. Every refusal is counted and logged here (`refused`: rate
limited, peer text clipped, `logs.LogLimiter`); the `error` frame that answers
it is built by `replies.error_frame`, both in `BridgeCore._answer`.

The robot table is bounded: `status.json` is rewritten every second and one
entry per robot id ever seen (ids are free without CURVE) made it 31.7 MB.
Idle robots are forgotten after `robot_forget_s`, and beyond `max_robots` the
least recently seen idle robot goes first.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lwd_common.episode import ActionSource
from lwd_learner_bridge.logs import LogLimiter
from lwd_learner_bridge.replies import Refusal

log = logging.getLogger("lwd.bridge")

COUNTERS = (
    "frames",
    "bytes",
    "rejected",
    "duplicates_dropped",
    "episodes_committed",
    "episodes_rejected",
    "missing_requests",
    "partials_expired",
    "partials_evicted",
    "conflicting_frames",
    "forbidden",
    "policy_chunks_served",
    "auth_denied",
    "replies_dropped",
    "backlog_committed",
    "internal_errors",
    "writer_restarts",
    "connections_cut",
    "connections_refused",
    "robots_forgotten",
    "log_suppressed",
)
MAX_REPORTED = 50  # robot_stats counters kept per robot
ACTING = {ActionSource.POLICY: "policy", ActionSource.TELEOP: "operator", ActionSource.HOLD: "hold"}
MAX_COUNTER_NAME = 64


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
    acting: str = ""  # who drove its newest streamed step: policy, operator or hold (ActionSource)
    acting_at: float = 0.0  # when that chunk arrived


def percentile(values: Iterable[float], q: float) -> float | None:
    arr = np.asarray(list(values), np.float64)
    return float(np.percentile(arr, q)) if arr.size else None


class FleetStats:
    def __init__(self, started_at: float, max_robots: int = 1024, robot_forget_s: float = 7 * 86400.0):
        self.started_at = started_at
        self.max_robots = max_robots
        self.robot_forget_s = robot_forget_s
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.robots: OrderedDict[str, RobotState] = OrderedDict()  # least recently seen first
        self.commit_latencies: deque[float] = deque(maxlen=10000)  # robot end -> committed (wall clock)
        self.policy_latencies: deque[float] = deque(maxlen=10000)  # served -> robot reports loaded
        self.logs = LogLimiter(log)
        self.is_active: Callable[[str], bool] = lambda robot_id: (
            False
        )  # has a session or partials (core sets it)

    def robot(self, robot_id: str) -> RobotState:
        state = self.robots.get(robot_id)
        if state is None:
            state = self.robots[robot_id] = RobotState()
            self._bound()
        return state

    def seen(self, robot_id: str, now: float) -> None:
        """`robot_id` sent something: it moves to the end of the eviction order."""
        self.robot(robot_id).last_seen = now
        self.robots.move_to_end(robot_id)

    def _bound(self) -> None:
        """Keep at most `max_robots`: evict the least recently seen, preferring idle ones (a few tries)."""
        tries = 0
        while len(self.robots) > self.max_robots:
            rid = next(iter(self.robots))
            if self.is_active(rid) and tries < 8:  # active: look at the next oldest first
                tries += 1
                self.robots.move_to_end(rid)
                continue
            del self.robots[rid]  # an active robot comes back with fresh counters on its next frame
            self.counters["robots_forgotten"] += 1

    def prune(self, now: float) -> None:
        """Forget idle robots not seen for `robot_forget_s` (oldest first; stops at the first recent one)."""
        for rid in list(self.robots):
            state = self.robots[rid]
            if now - state.last_seen <= self.robot_forget_s:
                break
            if not self.is_active(rid):
                del self.robots[rid]
                self.counters["robots_forgotten"] += 1
        self._bound()

    def frame_received(self, size: int) -> None:
        self.counters["frames"] += 1
        self.counters["bytes"] += size

    def refused(self, refusal: Refusal, peer: bytes) -> None:
        """Count and log a refused frame (from `peer`, named in the log when no robot id is known)."""
        self.counters["rejected"] += 1
        rid = refusal.robot_id
        if rid and rid in self.robots:
            self.robots[rid].rejected += 1
        who = rid or peer.hex()
        self.note(
            logging.WARNING,
            f"refuse:{refusal.code}",
            "rejected frame from %s: %s: %s",
            who,
            refusal.code,
            refusal.message,
        )

    def note(self, level: int, category: str, fmt: str, *args: object) -> None:
        """A rate-limited log line (args escaped and clipped)."""
        if not self.logs.log(level, category, fmt, *args):
            self.counters["log_suppressed"] += 1

    def duplicate(self, robot_id: str | None) -> None:
        self.counters["duplicates_dropped"] += 1
        if robot_id and robot_id in self.robots:
            self.robots[robot_id].duplicates_dropped += 1

    def robot_reported(self, robot_id: str, msg: dict[str, Any]) -> None:
        """A `robot_stats` frame: keep the robot's own counters (bounded) for the fleet status."""
        robot = self.robot(robot_id)
        robot.reported = {
            k: v
            for k, v in list(msg["counters"].items())[:MAX_REPORTED]
            if isinstance(k, str)
            and len(k) <= MAX_COUNTER_NAME
            and type(v) is int
            and -(1 << 62) < v < (1 << 62)
        }
        robot.spooled_episodes = msg["spooled_episodes"]

    def acting(self, robot_id: str, source: int, now: float) -> None:
        """The newest chunk of a robot's open episode: who drove its last step (for the fleet view)."""
        robot = self.robot(robot_id)
        robot.acting = ACTING.get(source, "")
        robot.acting_at = now

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
        return {
            "commit_latency_s": {
                "p50": percentile(self.commit_latencies, 50),
                "p99": percentile(self.commit_latencies, 99),
            },
            "policy_latency_s": {
                "p50": percentile(self.policy_latencies, 50),
                "p99": percentile(self.policy_latencies, 99),
            },
        }

    def robots_status(self, open_episodes: dict[str, int]) -> dict[str, Any]:
        return {
            rid: {
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
                "acting": r.acting,
                "acting_at": r.acting_at,
                "robot_counters": dict(r.reported),
            }
            for rid, r in sorted(self.robots.items())
        }
