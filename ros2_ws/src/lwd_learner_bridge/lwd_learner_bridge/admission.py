"""Admission: who may talk to the bridge, and the session table.

A robot is admitted by its `hello`: a valid robot id and role, the same config
hash as the bridge (joints, cameras, rates, episode schema) and, with CURVE, a
key the allowlist binds to that very robot id. Any other frame needs a session
(a `hello` on this connection, since this bridge started); sessions that go
quiet expire so dead robots do not pin memory.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from lwd_common.store import check_episode_id
from lwd_common.transport import protocol
from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.stats import FleetStats

log = logging.getLogger("lwd.bridge")


@dataclass
class Session:
    robot_id: str
    role: str
    last_seen: float


class Admission:
    def __init__(self, config: BridgeConfig, stats: FleetStats, key_names: dict[str, str] | None):
        self.config = config
        self.stats = stats
        self.key_names = key_names  # z85 public key -> robot id; None: no CURVE, no binding
        self.sessions: OrderedDict[bytes, Session] = OrderedDict()

    def hello(self, peer: bytes, msg: dict[str, Any], user_id: str | None, now: float
              ) -> tuple[Session | None, bytes]:
        """Open a session for `peer`: (session, `welcome`), or (None, a fatal `error` saying why not)."""
        robot_id = msg["robot_id"]
        refusal = self._refusal(msg, user_id)
        if refusal is not None:
            code, message = refusal
            return None, self.stats.refuse(code, message, fatal=True, peer=peer)
        session = self.sessions[peer] = Session(robot_id, msg["role"], now)
        self.sessions.move_to_end(peer)
        while len(self.sessions) > self.config.max_sessions:
            self.sessions.popitem(last=False)
        self.stats.robot(robot_id).last_seen = now
        log.info("hello from %s (%s)", robot_id, msg["role"])
        return session, protocol.encode("welcome", bridge_time=now, max_frame_bytes=self.config.max_frame_bytes)

    def _refusal(self, msg: dict[str, Any], user_id: str | None) -> tuple[str, str] | None:
        robot_id = msg["robot_id"]
        try:
            check_episode_id(robot_id)
        except ValueError:
            return "bad_hello", f"invalid robot id {robot_id!r}"
        if msg["role"] not in protocol.ROLES:
            return "bad_hello", f"unknown role {msg['role']!r}"
        if msg["config_hash"] != self.config.config_hash:
            return "config_mismatch", (f"robot config hash {msg['config_hash']} != bridge {self.config.config_hash} "
                                       "(joint names, cameras, rates or episode schema differ)")
        if self.key_names is not None:
            owner = self.key_names.get(user_id or "")
            if owner != robot_id:
                return "key_mismatch", f"this CURVE key belongs to {owner!r}, not {robot_id!r}"
        return None

    def session(self, peer: bytes, now: float) -> Session | None:
        """The session of `peer`, marked alive; None if it never said hello (or the bridge restarted)."""
        session = self.sessions.get(peer)
        if session is None:
            return None
        session.last_seen = now
        self.sessions.move_to_end(peer)
        self.stats.robot(session.robot_id).last_seen = now
        return session

    def expire(self, now: float) -> None:
        for peer, s in list(self.sessions.items()):
            if now - s.last_seen > self.config.session_timeout_s:
                del self.sessions[peer]
