"""Episode assembly: `ep_begin` / `ep_chunk` / `ep_end` frames -> committed episodes in the store.

Exactly-once in the store: frames are keyed by (episode id, seq) and
duplicates dropped, order does not matter; an episode goes to the writer
(`episode_writer`) only when all seqs 0..end are present, and `flush` commits a
store snapshot for everything written since the last flush before any robot
hears `committed` (committed = visible to the learner). An id already in the
store is answered `committed` again; a refused episode stays refused.
Partial episodes live in memory only, within per-robot, per-episode and
bridge-wide byte limits; robots resend from their spools if the bridge dies.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from lwd_common.episode import EpisodeMeta, StepRecord, meta_from_dict, outcome_from_dict
from lwd_common.store import EpisodeStore, check_episode_id
from lwd_common.transport import protocol
from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.episode_writer import EpisodeWriter
from lwd_learner_bridge.stats import FleetStats

log = logging.getLogger("lwd.bridge")


@dataclass
class Partial:
    robot_id: str
    last_update: float
    meta: EpisodeMeta | None = None
    chunks: dict[int, list[StepRecord]] = field(default_factory=dict)
    end: dict[str, Any] | None = None
    end_seq: int | None = None
    nbytes: int = 0

    def seqs(self) -> set[int]:
        out = set(self.chunks)
        if self.meta is not None:
            out.add(0)
        if self.end_seq is not None:
            out.add(self.end_seq)
        return out


@dataclass(frozen=True)
class _Written:
    peer: bytes
    episode_id: str
    digest: str
    ended_at: float
    robot_id: str


class EpisodeAssembly:
    def __init__(self, config: BridgeConfig, store: EpisodeStore, stats: FleetStats, writer: EpisodeWriter):
        self.config = config
        self.store = store
        self.stats = stats
        self.writer = writer
        self.partials: dict[str, Partial] = {}
        self.buffered = 0  # bytes of partial episodes and of those being written
        self._finishing: dict[str, Partial] = {}  # complete, with the writer
        self._to_commit: list[_Written] = []  # written, waiting for the next snapshot
        self._hashes: OrderedDict[str, str] = OrderedDict()  # committed id -> content hash (bounded cache)
        self._rejected: OrderedDict[str, tuple[str, str]] = OrderedDict()  # refused id -> (code, why)
        latest = store.latest_snapshot()
        self.snapshot_version = latest.version if latest else 0

    # --- one episode frame -------------------------------------------------------------------------------

    def frame(self, peer: bytes, rid: str, msg: dict[str, Any], size: int, now: float) -> list[bytes]:
        """Take one episode frame from robot `rid`; return `ack` / `missing` / `committed` / `error`."""
        eid, seq, t = msg["episode_id"], msg["seq"], msg["t"]
        try:
            check_episode_id(eid)
        except ValueError as exc:
            return [self.stats.refuse("bad_field", str(exc), robot_id=rid)]
        if eid in self._finishing or any(w.episode_id == eid for w in self._to_commit):
            self.stats.duplicate(None)  # being written; `committed` follows from flush()
            return [] if t == "ep_end" else [protocol.encode("ack", episode_id=eid, seq=seq)]
        digest = self._committed_hash(eid)
        if digest is not None:
            self.stats.duplicate(rid)
            return [protocol.encode("committed", episode_id=eid, content_hash=digest,
                                    snapshot=self.snapshot_version, duplicate=True)]
        if eid in self._rejected:
            code, why = self._rejected[eid]
            return [self.stats.refuse(code, why, episode_id=eid, robot_id=rid)]
        p = self.partials.get(eid)
        if p is None:
            refusal = self._cannot_open(eid, rid, size)
            if refusal is not None:
                return [refusal]
            p = self.partials[eid] = Partial(robot_id=rid, last_update=now)
        if p.robot_id != rid:
            return [self.stats.refuse("not_owner", f"episode {eid} is being sent by robot {p.robot_id}",
                                      episode_id=eid, robot_id=rid)]
        p.last_update = now
        if seq in p.seqs():
            self.stats.duplicate(rid)
            return self._try_finish(peer, eid, p) if t == "ep_end" else [protocol.encode("ack", episode_id=eid, seq=seq)]
        if p.nbytes + size > self.config.max_episode_bytes:
            return [self._reject(eid, "episode_too_large",
                                 f"episode {eid} exceeds {self.config.max_episode_bytes} bytes", rid)]
        if self.buffered + size > self.config.max_buffered_bytes:
            return [self.stats.refuse("busy", "bridge buffers are full; retry later", episode_id=eid, robot_id=rid)]
        try:
            _add_frame(p, t, seq, msg, eid, rid)
        except protocol.ProtocolError as exc:  # the robot sets the episode aside too (rejected/)
            return [self._reject(eid, exc.code, str(exc), rid)]
        p.nbytes += size
        self.buffered += size
        if t == "ep_end":
            return self._try_finish(peer, eid, p)
        replies = [protocol.encode("ack", episode_id=eid, seq=seq)]
        if p.end is not None:
            replies += self._try_finish(peer, eid, p)
        return replies

    def _cannot_open(self, eid: str, rid: str, size: int) -> bytes | None:
        """The refusal for a new episode of `rid` over the open-episode or buffer limits, else None."""
        open_here = sum(1 for q in self.partials.values() if q.robot_id == rid)
        if open_here >= self.config.max_open_episodes_per_robot:
            return self.stats.refuse("too_many_open", f"robot {rid} already has {open_here} open episodes",
                                     episode_id=eid, robot_id=rid)
        if self.buffered + size > self.config.max_buffered_bytes:
            return self.stats.refuse("busy", "bridge buffers are full; retry later", episode_id=eid, robot_id=rid)
        return None

    def _try_finish(self, peer: bytes, eid: str, p: Partial) -> list[bytes]:
        assert p.end is not None and p.end_seq is not None
        missing = sorted(set(range(p.end_seq + 1)) - p.seqs())
        if missing:
            self.stats.counters["missing_requests"] += 1
            return [protocol.encode("missing", episode_id=eid, seqs=missing[:1000])]
        del self.partials[eid]  # its bytes stay counted in `buffered` until written
        self._finishing[eid] = p
        self.writer.submit(peer, eid, p)
        return []

    # --- commit ------------------------------------------------------------------------------------------

    def flush(self) -> list[tuple[bytes, bytes]]:
        """Commit a snapshot holding every episode written since the last flush; return the replies."""
        out = []
        for r in self.writer.finished():
            p = self._finishing.pop(r.episode_id)
            self.buffered -= p.nbytes
            if r.digest is not None:
                assert p.end is not None
                self._remember(r.episode_id, r.digest)
                self._to_commit.append(_Written(r.peer, r.episode_id, r.digest, float(p.end["ended_at"]), p.robot_id))
            elif r.code == "store_error":  # not the robot's fault: it resends and we try again
                out.append((r.peer, self.stats.refuse(r.code, r.message or "", episode_id=r.episode_id,
                                                      robot_id=p.robot_id)))
            else:
                out.append((r.peer, self._reject(r.episode_id, r.code or "bad_episode", r.message or "", p.robot_id)))
        if not self._to_commit:
            return out
        snap = self.store.commit_snapshot()
        self.snapshot_version = snap.version
        now = time.time()
        for w in self._to_commit:
            self.stats.episode_committed(w.robot_id, w.ended_at, now)
            out.append((w.peer, protocol.encode("committed", episode_id=w.episode_id, content_hash=w.digest,
                                                snapshot=snap.version, duplicate=False)))
        self._to_commit = []
        return out

    def _committed_hash(self, eid: str) -> str | None:
        if eid in self._hashes:
            return self._hashes[eid]
        if not self.store.has(eid):
            return None
        digest = hashlib.sha256(self.store.read_bytes(eid)).hexdigest()
        self._remember(eid, digest)
        return digest

    def _remember(self, eid: str, digest: str) -> None:
        self._hashes[eid] = digest
        while len(self._hashes) > 100_000:
            self._hashes.popitem(last=False)

    # --- refusing and forgetting -------------------------------------------------------------------------

    def _reject(self, eid: str, code: str, message: str, robot_id: str) -> bytes:
        """Refuse a whole episode: free its frames and answer its later frames the same way."""
        self._drop(eid)
        self.stats.counters["episodes_rejected"] += 1
        self._rejected[eid] = (code, message)
        while len(self._rejected) > 10_000:
            self._rejected.popitem(last=False)
        return self.stats.refuse(code, message, episode_id=eid, robot_id=robot_id)

    def _drop(self, eid: str) -> None:
        p = self.partials.pop(eid, None)
        if p is not None:
            self.buffered -= p.nbytes

    def robot_restarted(self, robot_id: str, open_episodes: list[Any]) -> None:
        """A streaming robot said hello: drop its partials that its spool no longer holds."""
        keep = {e for e in open_episodes if isinstance(e, str)}
        for eid, p in list(self.partials.items()):
            if p.robot_id == robot_id and eid not in keep:
                log.info("robot %s restarted without episode %s; dropping its partial", robot_id, eid)
                self._drop(eid)

    def expire(self, now: float) -> None:
        """Drop partial episodes nobody sent to for `partial_timeout_s` (a dead robot must not pin memory)."""
        for eid, p in list(self.partials.items()):
            if now - p.last_update > self.config.partial_timeout_s:
                log.warning("dropping partial episode %s of %s: idle %.0f s", eid, p.robot_id, now - p.last_update)
                self._drop(eid)
                self.stats.counters["partials_expired"] += 1

    def open_episodes(self) -> dict[str, int]:
        """Robot id -> partial episodes it has open."""
        return dict(Counter(p.robot_id for p in self.partials.values()))

    def busy(self) -> bool:
        """True while episodes are being written (the server then polls more often)."""
        return bool(self._finishing)


def _add_frame(p: Partial, t: str, seq: int, msg: dict[str, Any], eid: str, rid: str) -> None:
    """Check one new frame against the episode so far and keep it; ProtocolError if it does not fit."""
    if t == "ep_begin":
        if seq != 0:
            raise protocol.ProtocolError("bad_field", "ep_begin must have seq 0")
        try:
            meta = meta_from_dict(msg["meta"])
        except (ValueError, TypeError, KeyError) as exc:
            raise protocol.ProtocolError("bad_meta", f"bad episode meta: {exc}") from exc
        if meta.episode_id != eid or meta.robot_id != rid:
            raise protocol.ProtocolError("bad_meta", f"meta names episode {meta.episode_id!r} of robot "
                                         f"{meta.robot_id!r}, frame says {eid!r} from {rid!r}")
        p.meta = meta
    elif t == "ep_chunk":
        if seq < 1 or (p.end_seq is not None and seq >= p.end_seq):
            raise protocol.ProtocolError("bad_field", f"ep_chunk seq {seq} out of range")
        images = msg["steps"].get("images")
        cameras = tuple(images) if isinstance(images, dict) else ()
        p.chunks[seq] = protocol.chunk_to_steps(msg["steps"], cameras)
    else:  # ep_end
        if seq < 1 or any(s >= seq for s in p.chunks):
            raise protocol.ProtocolError("bad_field", f"ep_end seq {seq} does not follow the chunks")
        try:
            outcome_from_dict(msg["outcome"])
        except (ValueError, TypeError, KeyError) as exc:
            raise protocol.ProtocolError("bad_meta", f"bad episode outcome: {exc}") from exc
        p.end, p.end_seq = msg, seq
