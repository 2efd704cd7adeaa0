"""Admission: who may talk to the bridge, what each role may send, and the session table.

A robot is admitted by its `hello`: a valid robot id and role, the same config
hash as the bridge (joints, cameras, rates, episode schema) and, with CURVE, a
key the allowlist binds to that very robot id (a key from the monitor list may
only open `monitor` sessions under its own name). Any other frame needs a
session (a `hello` on this connection, since this bridge started) whose role
permits it (`PERMITTED`): a `monitor` session only reads the fleet status.

Each session remembers its origin: the CURVE key that opened it, or without
CURVE the peer's IP address, which is all a plain-TCP bridge knows about a
peer. Only a hello from the same origin counts as the same robot restarting
(`EpisodeAssembly.robot_restarted`). Sessions that go quiet expire, and those
of a closed connection are dropped, so dead robots do not pin memory.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from lwd_common.store import check_episode_id
from lwd_common.transport import protocol
from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.replies import Refusal
from lwd_learner_bridge.stats import FleetStats

log = logging.getLogger("lwd.bridge")

# What each role may send after its hello. `policy_loaded` also on `stream`: robots before the
# channel split reported loads on their episode socket. `status_query` needs a session of any role.
PERMITTED: dict[str, frozenset[str]] = {
    "stream": protocol.EPISODE_TYPES | {"robot_stats", "policy_loaded", "status_query"},
    "policy": frozenset({"policy_query", "policy_fetch", "policy_loaded", "robot_stats", "status_query"}),
    "monitor": frozenset({"status_query"}),
}


@dataclass
class Session:
    robot_id: str
    role: str
    last_seen: float
    origin: str | None = None  # CURVE key (z85) or, without CURVE, the peer's IP address


class Admission:
    def __init__(
        self,
        config: BridgeConfig,
        stats: FleetStats,
        key_names: dict[str, str] | None,
        monitor_keys: dict[str, str] | None = None,
    ):
        self.config = config
        self.stats = stats
        self.key_names = key_names  # z85 public key -> robot id; None: no CURVE, no binding
        self.monitor_keys: dict[str, str] = monitor_keys or {}  # z85 public key -> name (monitor role only)
        self.sessions: OrderedDict[bytes, Session] = OrderedDict()
        self._robot_sessions: dict[str, int] = {}  # robot id -> sessions it holds

    def hello(
        self, peer: bytes, msg: dict[str, Any], user_id: str | None, now: float, address: str | None = None
    ) -> Session | Refusal:
        """Open a session for `peer` (then answer `welcome`), or the fatal refusal saying why not."""
        robot_id = msg["robot_id"]
        refusal = self._refusal(msg, user_id)
        if refusal is not None:
            return refusal
        self._remove(peer)
        origin = user_id if self.key_names is not None else address
        session = self.sessions[peer] = Session(robot_id, msg["role"], now, origin)
        self._robot_sessions[robot_id] = self._robot_sessions.get(robot_id, 0) + 1
        while len(self.sessions) > self.config.max_sessions:
            self._remove(next(iter(self.sessions)))
        self.stats.seen(robot_id, now)
        self.stats.note(logging.INFO, "hello", "hello from %s (%s)", robot_id, msg["role"])
        return session

    def welcome(self, now: float) -> bytes:
        """The answer to an accepted `hello`."""
        return protocol.encode("welcome", bridge_time=now, max_frame_bytes=self.config.max_frame_bytes)

    def _refusal(self, msg: dict[str, Any], user_id: str | None) -> Refusal | None:
        """Why this hello is refused (fatal: the robot must fix its id, role, config or key), else None."""
        robot_id = msg["robot_id"]
        try:
            check_episode_id(robot_id)
        except ValueError:
            return Refusal("bad_hello", f"invalid robot id {protocol.clip(repr(robot_id), 80)}", fatal=True)
        role = msg["role"]
        if role not in protocol.ROLES:
            return Refusal("bad_hello", f"unknown role {protocol.clip(repr(role), 40)}", fatal=True)
        if role != "monitor" and not self.config.accepts_config(msg["config_hash"]):  # a monitor only reads
            accepted = ", ".join((self.config.config_hash, *self.config.extra_config_hashes))
            return Refusal(
                "config_mismatch",
                f"robot config hash {msg['config_hash']} != bridge {accepted} "
                "(joint names, cameras, rates or episode schema differ; the bridge accepts the robot "
                "descriptions of its --robot options)",
                fatal=True,
            )
        if self.key_names is not None:
            key = user_id or ""
            if key in self.monitor_keys:
                if role != "monitor" or self.monitor_keys[key] != robot_id:
                    return Refusal(
                        "key_mismatch",
                        f"this CURVE key is the monitor key of {self.monitor_keys[key]!r}: "
                        f"role monitor as {self.monitor_keys[key]!r} only",
                        fatal=True,
                    )
                return None
            owner = self.key_names.get(key)
            if owner != robot_id:
                return Refusal(
                    "key_mismatch",
                    f"this CURVE key belongs to {owner!r}, not {protocol.clip(robot_id, 80)!r}",
                    fatal=True,
                )
        return None

    def session(self, peer: bytes, now: float) -> Session | None:
        """The session of `peer`, marked alive; None if it never said hello (or the bridge restarted)."""
        session = self.sessions.get(peer)
        if session is None:
            return None
        session.last_seen = now
        self.sessions.move_to_end(peer)
        self.stats.seen(session.robot_id, now)
        return session

    @staticmethod
    def permits(session: Session, msg_type: str) -> bool:
        return msg_type in PERMITTED.get(session.role, frozenset())

    def has_session(self, robot_id: str) -> bool:
        return self._robot_sessions.get(robot_id, 0) > 0

    def _remove(self, peer: bytes) -> None:
        s = self.sessions.pop(peer, None)
        if s is not None:
            left = self._robot_sessions.get(s.robot_id, 0) - 1
            if left > 0:
                self._robot_sessions[s.robot_id] = left
            else:
                self._robot_sessions.pop(s.robot_id, None)

    def disconnected(self, peer: bytes) -> None:
        """The connection of `peer` closed: its session is gone (a new connection must say hello)."""
        self._remove(peer)

    def expire(self, now: float) -> None:
        for peer, s in list(self.sessions.items()):
            if now - s.last_seen > self.config.session_timeout_s:
                self._remove(peer)
