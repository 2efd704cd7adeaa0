"""The bridge's logic, free of sockets: frames in, replies out. This module only composes the parts.

One frame, top down (`BridgeCore.handle`):

1. decode and type-check it (`lwd_common.transport.protocol`); count it (`stats`);
2. `hello` -> `admission` (robot id, role, config hash, CURVE key) opens a
   session; a streaming robot's partials it no longer holds are dropped (`assembly`);
3. any other frame needs a session (`admission.session`), else `no_session`;
4. `ep_begin`/`ep_chunk`/`ep_end` -> `assembly` (dedup, limits, gaps); a
   complete episode goes to the `episode_writer`;
5. `policy_query`/`policy_fetch`/`policy_loaded` -> `policy_serving` (newest or pinned);
6. `robot_stats` -> `stats`; `status_query` -> `status()`.

`flush()` commits a store snapshot for every episode written since the last
flush and returns the `committed` replies, so a robot hears "committed" only
once the learner can see the episode. The server calls `handle` for a batch of
frames and then `flush`, all in one thread: there is no worker pool a slow robot
could occupy, and every buffer has a limit. With `background_writes` writer
threads assemble, hash and fsync finished episodes off the frame loop.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from lwd_common.policy_store import PolicyStore
from lwd_common.store import EpisodeStore
from lwd_common.transport import protocol
from lwd_learner_bridge.admission import Admission
from lwd_learner_bridge.assembly import EpisodeAssembly
from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.episode_writer import EpisodeWriter
from lwd_learner_bridge.policy_serving import PolicyServing
from lwd_learner_bridge.stats import FleetStats

log = logging.getLogger("lwd.bridge")

__all__ = ["BridgeConfig", "BridgeCore"]


class BridgeCore:
    def __init__(self, config: BridgeConfig, key_names: dict[str, str] | None = None,
                 background_writes: bool = False):
        self.config = config
        self.root = Path(config.root)
        self.started_at = time.time()
        self.store = EpisodeStore(self.root / "store")
        self.policies = PolicyStore(self.root / "policies")
        self.stats = FleetStats(self.started_at)
        self.admission = Admission(config, self.stats, key_names)
        self.writer = EpisodeWriter(self.store, config.writer_threads if background_writes else 0)
        self.assembly = EpisodeAssembly(config, self.store, self.stats, self.writer)
        self.policy = PolicyServing(config, self.policies, self.stats)

    def handle(self, peer: bytes, data: bytes, user_id: str | None = None) -> list[bytes]:
        """Process one frame from `peer`; return the frames to send back to it."""
        try:
            return self._handle(peer, data, user_id)
        except Exception as exc:  # noqa: BLE001 - a bug or a bad file must not take the bridge down
            log.exception("internal error on a frame from %s", peer.hex())
            return [self.stats.refuse("internal", f"bridge internal error: {type(exc).__name__}: {exc}")]

    def _handle(self, peer: bytes, data: bytes, user_id: str | None) -> list[bytes]:
        now = time.time()
        self.stats.frame_received(len(data))
        try:
            msg = protocol.decode(data, self.config.max_frame_bytes, allowed=protocol.ROBOT_TYPES)
        except protocol.ProtocolError as exc:
            return [self.stats.refuse(exc.code, str(exc), fatal=exc.code == "schema_version", peer=peer)]
        t = msg["t"]
        if t == "hello":
            session, reply = self.admission.hello(peer, msg, user_id, now)
            if session is not None:
                if msg["policy_version"]:
                    self.policy.robot_runs(session.robot_id, msg["policy_version"])
                if session.role == "stream":
                    self.assembly.robot_restarted(session.robot_id, msg["open_episodes"])
            return [reply]
        if t == "status_query":
            return [protocol.encode("status", fleet=self.status())]
        session = self.admission.session(peer, now)
        if session is None:
            return [self.stats.refuse("no_session", f"send hello before {t}", episode_id=msg.get("episode_id"),
                                      peer=peer)]
        if t in protocol.EPISODE_TYPES:
            return self.assembly.frame(peer, session.robot_id, msg, len(data), now)
        if t == "policy_query":
            return [self.policy.query()]
        if t == "policy_fetch":
            return [self.policy.fetch(msg)]
        if t == "policy_loaded":
            self.policy.loaded(session.robot_id, msg)
            return []
        if t == "robot_stats":
            self.stats.robot_reported(session.robot_id, msg)
            return []
        return [self.stats.refuse("unexpected_type", f"{t} not handled")]

    def flush(self) -> list[tuple[bytes, bytes]]:
        """Commit a snapshot holding every episode stored since the last flush; return the replies."""
        return self.assembly.flush()

    def expire(self, now: float | None = None) -> None:
        """Drop partial episodes and sessions that went quiet (a dead robot must not pin memory)."""
        now = time.time() if now is None else now
        self.assembly.expire(now)
        self.admission.expire(now)

    def busy(self) -> bool:
        """True while episodes are being written (the server then polls more often)."""
        return self.assembly.busy()

    def close(self) -> None:
        self.writer.close()

    def status(self) -> dict[str, Any]:
        """The fleet status (`status.json`, `status_query`, `python -m lwd_learner_bridge.status`)."""
        return {
            "time": time.time(),
            "started_at": self.started_at,
            "snapshot_version": self.assembly.snapshot_version,
            "episodes_in_store": len(self.store.ids()),
            **self.policy.status(),
            "buffered_bytes": self.assembly.buffered,
            "sessions": len(self.admission.sessions),
            "counters": dict(self.stats.counters),
            **self.stats.latencies(),
            "robots": self.stats.robots_status(self.assembly.open_episodes()),
        }
