"""The bridge's logic, free of sockets: frames in, replies out. This module only composes the parts.

One frame, top down (`BridgeCore.handle`):

1. decode and type-check it (`lwd_common.transport.protocol`); count it (`stats`);
2. `hello` -> `admission` (robot id, role, config hash, CURVE key) opens a
   session; a streaming robot's partials it no longer holds are dropped (`assembly`)
   if the hello comes from the same origin (CURVE key, else IP address);
3. any other frame needs a session (`admission.session`), else `no_session`, and a
   role that permits it (`admission.PERMITTED`), else `forbidden`;
4. `ep_begin`/`ep_chunk`/`ep_end` -> `assembly` (dedup, limits, gaps); a
   complete episode goes to the `episode_writer`;
5. `policy_query`/`policy_fetch`/`policy_loaded` -> `policy_serving` (newest or pinned);
6. `robot_stats` -> `stats`; `status_query` -> `status()`.

The parts answer with `replies.Reply`: a frame, or a `Refusal` they only describe.
`_answer` is where every refusal is counted and logged (`stats`) and turned into
its `error` frame (`replies.error_frame`), for `handle` and `flush` alike.

`flush()` commits a store snapshot for every episode written since the last
flush and returns the `committed` replies, so a robot hears "committed" only
once the learner can see the episode. The server calls `handle` for a batch of
frames and then `flush`, all in one thread: there is no worker pool a slow robot
could occupy, and every buffer has a limit. With `background_writes` writer
threads assemble, hash and fsync finished episodes off the frame loop;
`supervise` (every second) restarts a writer that died and `health` turns red.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lwd_common.policy_store import PolicyStore
from lwd_common.store import EpisodeStore
from lwd_common.transport import protocol
from lwd_learner_bridge.admission import Admission
from lwd_learner_bridge.announcements import Announcer
from lwd_learner_bridge.assembly import EpisodeAssembly
from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.episode_writer import EpisodeWriter
from lwd_learner_bridge.logs import short_traceback
from lwd_learner_bridge.policy_serving import PolicyServing
from lwd_learner_bridge.replies import Refusal, Reply, error_frame
from lwd_learner_bridge.stats import FleetStats

log = logging.getLogger("lwd.bridge")

__all__ = ["BridgeConfig", "BridgeCore"]


class BridgeCore:
    def __init__(
        self,
        config: BridgeConfig,
        key_names: dict[str, str] | None = None,
        background_writes: bool = False,
        monitor_keys: dict[str, str] | None = None,
    ):
        self.config = config
        self.root = Path(config.root)
        self.started_at = time.time()
        self.store = EpisodeStore(config.store or self.root / "store")
        self.policies = PolicyStore(self.root / "policies")
        self.stats = FleetStats(self.started_at, config.max_robots, config.robot_forget_s)
        self.admission = Admission(config, self.stats, key_names, monitor_keys)
        self.writer = EpisodeWriter(self.store, config.writer_threads if background_writes else 0)
        self.announcer = Announcer(config.queue) if config.queue else None
        self.assembly = EpisodeAssembly(config, self.store, self.stats, self.writer, self.announcer)
        self.policy = PolicyServing(config, self.policies, self.stats)
        self.stats.is_active = lambda rid: self.admission.has_session(rid) or self.assembly.holds(rid)
        # Set by the server: may `peer` be sent a large reply now (is it reading what we send)?
        self.large_reply_ok: Callable[[bytes], bool] = lambda peer: True
        self.connection_status: Callable[[], dict[str, Any]] = dict
        self._status_cache: tuple[float, bytes] | None = None
        self._counted_at = time.time()

    def handle(
        self, peer: bytes, data: bytes, user_id: str | None = None, address: str | None = None
    ) -> list[bytes]:
        """Process one frame from `peer` (CURVE key `user_id`, IP `address`); return the frames to send back."""
        try:
            return [self._answer(peer, reply) for reply in self._handle(peer, data, user_id, address)]
        except Exception as exc:  # noqa: BLE001 - a bug or a bad file must not take the bridge down
            self.stats.counters["internal_errors"] += 1
            if self.stats.logs.allow("traceback") is not None:  # a few full tracebacks, then one-liners
                log.error("internal error on a frame from %s:\n%s", peer.hex()[:32], short_traceback(exc))
            else:
                self.stats.note(
                    logging.ERROR,
                    "internal",
                    "internal error on a frame from %s: %s",
                    peer.hex(),
                    type(exc).__name__,
                )
            return [self._answer(peer, Refusal("internal", f"bridge internal error: {type(exc).__name__}"))]

    def _answer(self, peer: bytes, reply: Reply) -> bytes:
        """The frame to send for `reply`: a refusal is counted and logged, then answered with `error`."""
        if isinstance(reply, Refusal):
            self.stats.refused(reply, peer)
            return error_frame(reply)
        return reply

    def _handle(self, peer: bytes, data: bytes, user_id: str | None, address: str | None) -> list[Reply]:
        now = time.time()
        self.stats.frame_received(len(data))
        try:
            msg = protocol.decode(data, self.config.max_frame_bytes, allowed=protocol.ROBOT_TYPES)
        except protocol.ProtocolError as exc:
            return [Refusal(exc.code, str(exc), fatal=exc.code == "schema_version")]
        t = msg["t"]
        if t == "hello":
            admitted = self.admission.hello(peer, msg, user_id, now, address)
            if isinstance(admitted, Refusal):
                return [admitted]
            if msg["policy_version"]:
                self.policy.robot_runs(admitted.robot_id, msg["policy_version"])
            if admitted.role == "stream":
                self.assembly.robot_restarted(admitted.robot_id, msg["open_episodes"], admitted.origin)
            return [self.admission.welcome(now)]
        session = self.admission.session(peer, now)
        if session is None:
            return [Refusal("no_session", f"send hello before {t}", episode_id=msg.get("episode_id"))]
        if not self.admission.permits(session, t):
            self.stats.counters["forbidden"] += 1
            return [
                Refusal(
                    "forbidden",
                    f"a {session.role} session may not send {t}",
                    episode_id=msg.get("episode_id"),
                    robot_id=session.robot_id,
                )
            ]
        if t in protocol.EPISODE_TYPES:
            return self.assembly.frame(peer, session.robot_id, msg, data, now, session.origin)
        if t == "status_query":
            return [self._status_reply(peer)]
        if t == "policy_query":
            return [self.policy.query()]
        if t == "policy_fetch":
            if not self.large_reply_ok(peer):  # it does not read what we send: do not queue more for it
                self.stats.counters["replies_dropped"] += 1
                return [
                    Refusal(
                        "busy", "earlier replies are still unread; retry later", robot_id=session.robot_id
                    )
                ]
            return [self.policy.fetch(msg)]
        if t == "policy_loaded":
            self.policy.loaded(session.robot_id, msg)
            return []
        if t == "robot_stats":
            self.stats.robot_reported(session.robot_id, msg)
            return []
        return [Refusal("unexpected_type", f"{t} not handled")]

    def _status_reply(self, peer: bytes) -> Reply:
        """The `status` answer, rebuilt at most every `status_cache_s` (building it walks every robot)."""
        if not self.large_reply_ok(peer):
            self.stats.counters["replies_dropped"] += 1
            return Refusal("busy", "earlier replies are still unread; retry later")
        now = time.monotonic()
        if self._status_cache is None or now - self._status_cache[0] > self.config.status_cache_s:
            self._status_cache = (now, protocol.encode("status", fleet=self.status()))
        return self._status_cache[1]

    def flush(self) -> list[tuple[bytes, bytes]]:
        """Commit a snapshot holding every episode stored since the last flush; return the replies.

        Episodes the writers refused are answered first (counted before the commit touches the robot
        table), then every written one is committed and answered `committed`.
        """
        refused = [(peer, self._answer(peer, refusal)) for peer, refusal in self.assembly.take_written()]
        return refused + self.assembly.commit()

    def expire(self, now: float | None = None) -> None:
        """Drop partial episodes, sessions and robots that went quiet (a dead robot must not pin memory)."""
        now = time.time() if now is None else now
        self.assembly.expire(now)
        self.admission.expire(now)
        self.stats.prune(now)
        if now - self._counted_at > 60.0:  # the store may grow by other writers too; a directory walk is slow
            self._counted_at = now
            self.assembly.stored_count = len(self.store.ids())

    def supervise(self) -> None:
        """Restart episode writers that died (the server calls this every second)."""
        self.stats.counters["writer_restarts"] += self.writer.supervise()

    def disconnected(self, peer: bytes) -> None:
        """The connection of `peer` closed (server): forget its session."""
        self.admission.disconnected(peer)

    def busy(self) -> bool:
        """True while episodes are being written (the server then polls more often)."""
        return self.assembly.busy()

    def close(self) -> None:
        self.writer.close()
        if self.announcer is not None:
            self.announcer.close()

    def health(self) -> dict[str, Any]:
        """ "ok", or "error" with the problems: a writer died recently or is not running."""
        writers = self.writer.health()
        problems = [f"episode writer died: {why}" for why in writers["recent_deaths"]]
        if writers["alive"] < writers["writers"]:
            problems.append(f"only {writers['alive']} of {writers['writers']} episode writers running")
        return {"level": "error" if problems else "ok", "problems": problems, "writers": writers}

    def status(self) -> dict[str, Any]:
        """The fleet status (`status.json`, `status_query`, `python -m lwd_learner_bridge.status`)."""
        return {
            "time": time.time(),
            "started_at": self.started_at,
            "health": self.health(),
            "snapshot_version": self.assembly.committer.snapshot_version,
            "episodes_in_store": self.assembly.stored_count,
            **self.policy.status(),
            "buffered_bytes": self.assembly.buffered,
            "partial_episodes": len(self.assembly.partials),
            "sessions": len(self.admission.sessions),
            "connections": self.connection_status(),
            "counters": dict(self.stats.counters),
            **self.stats.latencies(),
            "robots": self.stats.robots_status(self.assembly.open_episodes()),
        }
