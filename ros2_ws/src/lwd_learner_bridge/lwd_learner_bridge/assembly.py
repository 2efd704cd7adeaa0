"""Episode assembly: `ep_begin` / `ep_chunk` / `ep_end` frames -> committed episodes in the store.

Exactly-once in the store: frames are keyed by (episode id, seq) and
duplicates dropped, order does not matter; an episode goes to the writer
(`episode_writer`) only when all seqs 0..end are present; `take_written`
collects what the writers finished, and `commit` commits a store snapshot for
everything written since the last commit before any robot hears `committed`
(committed = visible to the learner). An id already in the store is answered
`committed` again; a refused episode stays refused. Refusals are handed back
as `replies.Refusal` values; the core counts and answers them.

Hostile frames, even from an allowlisted robot, must not stall the loop or
starve other robots:
- every per-frame step is O(1) or bounded (indices per robot, a bounded gap
  scan), never O(partials) or O(seq);
- partial episodes live in memory only, within per-episode, per-robot and
  bridge-wide limits on DECODED bytes (`protocol.chunk_nbytes`); chunks stay in
  column form, so a step costs no Python objects until the writer joins them;
- fairness: when the bridge-wide buffer is full, a robot holding less than its
  fair share (buffer / robots holding partials) evicts the largest partial of
  the robot holding the most; the evicted robot resends it later (`missing`);
- only a NEW frame keeps a partial alive (a replayed duplicate does not);
- a copy of a frame that differs from the first one received under the same
  seq is refused (`conflicting_frame`, counted; the first copy is kept), and an
  episode whose hash then fails is dropped rather than refused for good, so its
  owner resends everything instead of losing it to a forged first copy;
- episode ids must start with "<robot_id>-", so no robot can claim another's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from lwd_common.episode import EpisodeMeta, meta_from_dict, outcome_from_dict
from lwd_common.store import EpisodeStore, check_episode_id
from lwd_common.transport import protocol
from lwd_learner_bridge.announcements import Announcer
from lwd_learner_bridge.committer import Committer, Written
from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.episode_writer import EpisodeWriter
from lwd_learner_bridge.replies import Refusal, Reply
from lwd_learner_bridge.stats import FleetStats

log = logging.getLogger("lwd.bridge")

FRAME_OVERHEAD = 512  # bytes charged per kept frame on top of its contents (dict slots, digest)
MAX_MISSING_REPLY = 1000  # seqs in one `missing` answer
MAX_GAP_SCAN = 20_000  # seqs looked at per `missing` answer (the rest follow in later answers)


@dataclass
class Partial:
    robot_id: str
    origin: str | None  # who opened it (CURVE key or IP address), see admission
    last_update: float  # when its last NEW frame arrived
    meta: EpisodeMeta | None = None
    chunks: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq -> checked columns
    end: dict[str, Any] | None = None
    end_seq: int | None = None
    digests: dict[int, bytes] = field(default_factory=dict)  # seq -> digest of the first copy received
    nbytes: int = 0  # decoded memory held
    conflicts: int = 0  # differing copies refused
    complete_below: int = 0  # every seq below this is present (gap scan starts here)
    max_chunk_seq: int = 0

    def seqs(self) -> set[int]:
        return set(self.digests)

    def complete(self) -> bool:
        return self.end_seq is not None and len(self.digests) == self.end_seq + 1


# A checked new frame, as `_check_frame` hands it to `_keep`:
@dataclass(frozen=True)
class _Begin:
    meta: EpisodeMeta  # ep_begin


@dataclass(frozen=True)
class _Chunk:
    columns: dict[str, Any]  # ep_chunk: its steps in column form (`protocol.check_chunk`)


@dataclass(frozen=True)
class _End:
    end: dict[str, Any]  # ep_end: outcome, num_steps, content_hash, ended_at


_Part: TypeAlias = _Begin | _Chunk | _End


class EpisodeAssembly:
    def __init__(
        self,
        config: BridgeConfig,
        store: EpisodeStore,
        stats: FleetStats,
        writer: EpisodeWriter,
        announcer: Announcer | None = None,
    ):
        self.config = config
        self.store = store
        self.stats = stats
        self.writer = writer
        self.partials: dict[str, Partial] = {}
        self.buffered = 0  # decoded bytes of partial episodes and of those being written
        self._robot_bytes: dict[str, int] = {}  # robot id -> its share of `buffered`
        self._robot_partials: dict[str, set[str]] = {}  # robot id -> ids of its partial episodes
        self._finishing: dict[str, Partial] = {}  # complete, with the writer
        self._to_commit: dict[str, Written] = {}  # written, waiting for the next snapshot
        self._hashes: OrderedDict[str, str] = OrderedDict()  # committed id -> content hash (bounded cache)
        self._rejected: OrderedDict[str, Refusal] = OrderedDict()  # refused id -> how it was refused
        self._rehash_tokens = config.rehash_bytes_per_s
        self._rehash_at = time.monotonic()
        self.committer = Committer(store, announcer)
        self.stored_count = len(store.ids())

    # --- one episode frame -------------------------------------------------------------------------------

    def frame(
        self, peer: bytes, rid: str, msg: dict[str, Any], data: bytes, now: float, origin: str | None = None
    ) -> list[Reply]:
        """Take one episode frame (raw bytes `data`) from robot `rid`; return `ack`/`missing`/`committed`/refusals."""
        eid, seq, t = msg["episode_id"], msg["seq"], msg["t"]
        try:
            check_episode_id(eid)
        except ValueError:
            return [Refusal("bad_field", f"invalid episode id {protocol.clip(repr(eid), 80)}", robot_id=rid)]
        if self.config.require_episode_prefix and not eid.startswith(rid + "-"):
            return [
                Refusal(
                    "not_owner",
                    f"episode ids of robot {rid} start with '{rid}-', not {eid!r}",
                    episode_id=eid,
                    robot_id=rid,
                )
            ]
        if eid in self._finishing or eid in self._to_commit:
            self.stats.duplicate(None)  # being written; `committed` follows from commit()
            return [] if t == "ep_end" else [protocol.encode("ack", episode_id=eid, seq=seq)]
        if eid in self._rejected:  # refused for good: every later frame hears the same
            return [dataclasses.replace(self._rejected[eid], robot_id=rid)]
        p = self.partials.get(eid)
        if p is None:
            digest_or_busy = self._committed_hash(eid)
            if isinstance(digest_or_busy, Refusal):
                return [digest_or_busy]
            if digest_or_busy is not None:
                self.stats.duplicate(rid)
                return [
                    protocol.encode(
                        "committed",
                        episode_id=eid,
                        content_hash=digest_or_busy,
                        snapshot=self.committer.snapshot_version,
                        duplicate=True,
                    )
                ]
        elif p.robot_id != rid:
            return [
                Refusal(
                    "not_owner",
                    f"episode {eid} is being sent by robot {p.robot_id}",
                    episode_id=eid,
                    robot_id=rid,
                )
            ]
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if p is not None and seq in p.digests:
            return self._repeat(peer, eid, p, seq, t, digest)
        try:
            part, cost = _check_frame(t, seq, msg, eid, rid, p)
        except protocol.ProtocolError as exc:  # the robot sets the episode aside too (rejected/)
            return [self._reject(eid, exc.code, str(exc), rid)]
        if p is None:
            refusal = self._cannot_open(eid, rid, cost)
            if refusal is not None:
                return [refusal]
            p = self.partials[eid] = Partial(robot_id=rid, origin=origin, last_update=now)
            self._robot_partials.setdefault(rid, set()).add(eid)
        if p.nbytes + cost > self.config.episode_cap:
            return [
                self._reject(
                    eid,
                    "episode_too_large",
                    f"episode {eid} exceeds {self.config.episode_cap} bytes in memory",
                    rid,
                )
            ]
        refusal = self._make_room(eid, rid, cost)
        if refusal is not None:
            if not p.digests:  # opened for this frame only
                self._drop(eid)
            return [refusal]
        _keep(p, seq, part)
        if isinstance(part, _Chunk) and seq == p.max_chunk_seq and len(part.columns["source"]):
            self.stats.acting(rid, int(part.columns["source"][-1]), now)  # who drives it right now
        p.digests[seq] = digest
        p.last_update = now
        self._charge(p, cost)
        while p.complete_below in p.digests:
            p.complete_below += 1
        if t == "ep_end":
            return self._try_finish(peer, eid, p, answer_missing=True)
        replies: list[Reply] = [protocol.encode("ack", episode_id=eid, seq=seq)]
        if p.complete():
            replies += self._try_finish(peer, eid, p, answer_missing=False)
        return replies

    def _repeat(self, peer: bytes, eid: str, p: Partial, seq: int, t: str, digest: bytes) -> list[Reply]:
        """A frame under a seq we hold: a duplicate (dropped) or a differing copy (refused, first one kept)."""
        if p.digests[seq] != digest:
            p.conflicts += 1
            self.stats.counters["conflicting_frames"] += 1
            return [
                Refusal(
                    "conflicting_frame",
                    f"episode {eid} seq {seq}: a different copy of this frame "
                    "arrived first; keeping that one",
                    episode_id=eid,
                    robot_id=p.robot_id,
                )
            ]
        self.stats.duplicate(p.robot_id)  # no refresh of last_update: replays must not keep a partial alive
        if t == "ep_end":
            return self._try_finish(peer, eid, p, answer_missing=True)
        return [protocol.encode("ack", episode_id=eid, seq=seq)]

    def _cannot_open(self, eid: str, rid: str, cost: int) -> Refusal | None:
        """The refusal for a new episode of `rid` over the open-episode limits, else None."""
        open_here = len(self._robot_partials.get(rid, ()))
        if open_here >= self.config.max_open_episodes_per_robot:
            return Refusal(
                "too_many_open",
                f"robot {rid} already has {open_here} open episodes",
                episode_id=eid,
                robot_id=rid,
            )
        if len(self.partials) >= self.config.max_partials and not self._evict_for(rid, count=True):
            return Refusal(
                "busy", "bridge holds too many partial episodes; retry later", episode_id=eid, robot_id=rid
            )
        return None

    def _make_room(self, eid: str, rid: str, cost: int) -> Refusal | None:
        """Fit `cost` more bytes for `rid` under its own and the bridge-wide budget, evicting a hog if fair."""
        if self._robot_bytes.get(rid, 0) + cost > self.config.robot_cap:
            return Refusal(
                "busy",
                f"robot {rid} holds {self._robot_bytes.get(rid, 0)} bytes of partial episodes; retry later",
                episode_id=eid,
                robot_id=rid,
            )
        while self.buffered + cost > self.config.max_buffered_bytes:
            if not self._evict_for(rid, count=False, cost=cost):
                return Refusal("busy", "bridge buffers are full; retry later", episode_id=eid, robot_id=rid)
        return None

    def _evict_for(self, rid: str, count: bool, cost: int = 0) -> bool:
        """Evict the largest partial of the robot holding most (bytes, or partials if `count`) for `rid`,
        if `rid` stays within its fair share and the other holds more; False if that is not fair."""
        holders = list(self._robot_partials)
        if not holders:
            return False
        n_robots = len(holders) + (rid not in holders)
        if count:
            usage = {r: len(self._robot_partials[r]) for r in holders}
            mine, share = len(self._robot_partials.get(rid, ())) + 1, self.config.max_partials / n_robots
        else:
            usage = {r: self._robot_bytes.get(r, 0) for r in holders}
            mine, share = self._robot_bytes.get(rid, 0) + cost, self.config.max_buffered_bytes / n_robots
        victim = max(usage, key=lambda r: usage[r])
        if victim == rid or mine > share or usage[victim] <= mine:
            return False
        eid = max(self._robot_partials[victim], key=lambda e: self.partials[e].nbytes)
        self.stats.note(
            logging.WARNING,
            "evict",
            "evicting partial episode %s of %s (%s bytes) to make room for %s",
            eid,
            victim,
            self.partials[eid].nbytes,
            rid,
        )
        self._drop(eid)
        self.stats.counters["partials_evicted"] += 1
        return True

    def _try_finish(self, peer: bytes, eid: str, p: Partial, answer_missing: bool) -> list[Reply]:
        assert p.end is not None and p.end_seq is not None
        if not p.complete():
            if not answer_missing:
                return []
            self.stats.counters["missing_requests"] += 1
            return [protocol.encode("missing", episode_id=eid, seqs=_missing(p))]
        del self.partials[eid]  # its bytes stay counted in `buffered` until written
        self._unindex(p.robot_id, eid)
        self._finishing[eid] = p
        self.writer.submit(peer, eid, p)
        return []

    # --- commit ------------------------------------------------------------------------------------------

    def take_written(self) -> list[tuple[bytes, Refusal]]:
        """Take the writers' results: written episodes wait for `commit`; returns the refusals of the rest."""
        out: list[tuple[bytes, Refusal]] = []
        for r in self.writer.finished():
            p = self._finishing.pop(r.episode_id, None)
            if p is None:
                continue
            self._release(p)
            if r.digest is not None:
                assert p.end is not None
                self._remember(r.episode_id, r.digest)
                self._to_commit[r.episode_id] = Written(
                    r.peer, r.episode_id, r.digest, float(p.end["ended_at"]), p.robot_id
                )
            elif r.code in ("store_error", "internal"):  # not the robot's fault: it resends and we try again
                out.append(
                    (r.peer, Refusal(r.code, r.message or "", episode_id=r.episode_id, robot_id=p.robot_id))
                )
            elif r.code == "hash_mismatch" and p.conflicts:
                # a forged first copy may be what broke it: forget it all, the owner resends (`missing`)
                self.stats.note(
                    logging.WARNING,
                    "conflict",
                    "episode %s of %s fails its hash after %s conflicting "
                    "copies; dropped so its owner resends it",
                    r.episode_id,
                    p.robot_id,
                    p.conflicts,
                )
                out.append(
                    (
                        r.peer,
                        Refusal(
                            "conflicting_frame",
                            f"episode {r.episode_id}: frames with "
                            "conflicting copies did not assemble; send them again",
                            episode_id=r.episode_id,
                            robot_id=p.robot_id,
                        ),
                    )
                )
            else:
                out.append(
                    (r.peer, self._reject(r.episode_id, r.code or "bad_episode", r.message or "", p.robot_id))
                )
        return out

    def commit(self) -> list[tuple[bytes, bytes]]:
        """Commit (or, with a queue, announce) every episode written since the last commit; the
        `committed` replies, none while the store or queue is failing (committer.py)."""
        if not self._to_commit or not self.committer.ready():
            return []
        written = list(self._to_commit.values())
        if not self.committer.commit(written):
            return []
        out = []
        now = time.time()
        for w in written:
            self.stored_count += 1
            self.stats.episode_committed(w.robot_id, w.ended_at, now)
            out.append(
                (
                    w.peer,
                    protocol.encode(
                        "committed",
                        episode_id=w.episode_id,
                        content_hash=w.digest,
                        snapshot=self.committer.snapshot_version,
                        duplicate=False,
                    ),
                )
            )
        self._to_commit = {}
        return out

    def _committed_hash(self, eid: str) -> str | Refusal | None:
        """Hash of stored episode `eid` (None: not stored; a `busy` refusal while over the rehash budget, a
        `store_error` one while the store cannot be reached)."""
        if eid in self._hashes:
            return self._hashes[eid]
        try:
            if not self.store.has(eid):
                return None
        except OSError as exc:  # an object store that is down: the robot keeps the episode and retries
            return Refusal(
                "store_error", f"bridge cannot reach its store: {exc}; retry later", episode_id=eid
            )
        now = time.monotonic()
        rate = self.config.rehash_bytes_per_s
        self._rehash_tokens = min(rate, self._rehash_tokens + (now - self._rehash_at) * rate)
        self._rehash_at = now
        if self._rehash_tokens <= 0:  # duplicates of many old episodes: do not let them eat the loop
            return Refusal("busy", "bridge is re-reading stored episodes; retry later", episode_id=eid)
        try:
            data = self.store.read_bytes(eid)
        except OSError as exc:
            return Refusal("store_error", f"bridge cannot read its store: {exc}; retry later", episode_id=eid)
        self._rehash_tokens -= len(data)
        digest = hashlib.sha256(data).hexdigest()
        self._remember(eid, digest)
        return digest

    def _remember(self, eid: str, digest: str) -> None:
        self._hashes[eid] = digest
        while len(self._hashes) > 100_000:
            self._hashes.popitem(last=False)

    # --- refusing and forgetting -------------------------------------------------------------------------

    def _charge(self, p: Partial, cost: int) -> None:
        p.nbytes += cost
        self.buffered += cost
        self._robot_bytes[p.robot_id] = self._robot_bytes.get(p.robot_id, 0) + cost

    def _release(self, p: Partial) -> None:
        self.buffered -= p.nbytes
        left = self._robot_bytes.get(p.robot_id, 0) - p.nbytes
        if left > 0:
            self._robot_bytes[p.robot_id] = left
        else:
            self._robot_bytes.pop(p.robot_id, None)
        p.nbytes = 0

    def _reject(self, eid: str, code: str, message: str, robot_id: str) -> Refusal:
        """Refuse a whole episode: free its frames and answer its later frames the same way."""
        self._drop(eid)
        self.stats.counters["episodes_rejected"] += 1
        self._rejected[eid] = Refusal(code, protocol.clip(message, 300), episode_id=eid)
        while len(self._rejected) > 10_000:
            self._rejected.popitem(last=False)
        return Refusal(code, message, episode_id=eid, robot_id=robot_id)

    def _drop(self, eid: str) -> None:
        p = self.partials.pop(eid, None)
        if p is not None:
            self._release(p)
            self._unindex(p.robot_id, eid)

    def _unindex(self, robot_id: str, eid: str) -> None:
        eids = self._robot_partials.get(robot_id)
        if eids is not None:
            eids.discard(eid)
            if not eids:
                del self._robot_partials[robot_id]

    def robot_restarted(self, robot_id: str, open_episodes: list[Any], origin: str | None = None) -> None:
        """A streaming robot said hello: drop its partials that its spool no longer holds.

        Only partials opened from the same origin (CURVE key, else IP address): a
        second session merely claiming the robot id cannot make us drop them.
        """
        keep = {e for e in open_episodes if isinstance(e, str)}
        for eid in list(self._robot_partials.get(robot_id, ())):
            p = self.partials[eid]
            if eid not in keep and p.origin == origin:
                self.stats.note(
                    logging.INFO,
                    "restart",
                    "robot %s restarted without episode %s; dropping its partial",
                    robot_id,
                    eid,
                )
                self._drop(eid)

    def expire(self, now: float) -> None:
        """Drop partial episodes nobody sent a new frame to for `partial_timeout_s` (dead robots pin no memory)."""
        for eid, p in list(self.partials.items()):
            if now - p.last_update > self.config.partial_timeout_s:
                self.stats.note(
                    logging.WARNING,
                    "expire",
                    "dropping partial episode %s of %s: idle %s s",
                    eid,
                    p.robot_id,
                    round(now - p.last_update),
                )
                self._drop(eid)
                self.stats.counters["partials_expired"] += 1

    def open_episodes(self) -> dict[str, int]:
        """Robot id -> partial episodes it has open."""
        return {rid: len(eids) for rid, eids in self._robot_partials.items()}

    def holds(self, robot_id: str) -> bool:
        """True while `robot_id` has partial episodes or episodes being written."""
        return bool(self._robot_partials.get(robot_id)) or self._robot_bytes.get(robot_id, 0) > 0

    def busy(self) -> bool:
        """True while episodes are being written (the server then polls more often)."""
        return bool(self._finishing)


def _missing(p: Partial) -> list[int]:
    """Up to MAX_MISSING_REPLY absent seqs, looking at no more than MAX_GAP_SCAN seqs (from the first gap)."""
    assert p.end_seq is not None
    out: list[int] = []
    stop = min(p.end_seq + 1, p.complete_below + MAX_GAP_SCAN)
    for s in range(p.complete_below, stop):
        if s not in p.digests:
            out.append(s)
            if len(out) >= MAX_MISSING_REPLY:
                break
    return out


def _check_frame(
    t: str, seq: int, msg: dict[str, Any], eid: str, rid: str, p: Partial | None
) -> tuple[_Part, int]:
    """Check one new frame against the episode so far: (what to keep, its decoded bytes); ProtocolError if bad."""
    if t == "ep_begin":
        if seq != 0:
            raise protocol.ProtocolError("bad_field", "ep_begin must have seq 0")
        try:
            meta = meta_from_dict(msg["meta"])
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise protocol.ProtocolError("bad_meta", f"bad episode meta: {protocol.clip(str(exc))}") from exc
        if meta.episode_id != eid or meta.robot_id != rid:
            raise protocol.ProtocolError(
                "bad_meta",
                f"meta names episode {protocol.clip(meta.episode_id, 80)!r} of "
                f"robot {protocol.clip(meta.robot_id, 80)!r}, frame says {eid!r} from {rid!r}",
            )
        return _Begin(meta), FRAME_OVERHEAD + _size_of_meta(msg["meta"])
    if t == "ep_chunk":
        if seq < 1 or (p is not None and p.end_seq is not None and seq >= p.end_seq):
            raise protocol.ProtocolError("bad_field", f"ep_chunk seq {seq} out of range")
        columns = protocol.check_chunk(
            msg["steps"], len(p.meta.joint_names) if p is not None and p.meta is not None else None
        )
        return _Chunk(columns), FRAME_OVERHEAD + protocol.chunk_nbytes(columns)
    # ep_end
    if seq < 1 or (p is not None and p.max_chunk_seq >= seq):
        raise protocol.ProtocolError("bad_field", f"ep_end seq {seq} does not follow the chunks")
    try:
        outcome_from_dict(msg["outcome"])
    except (ValueError, TypeError, KeyError) as exc:
        raise protocol.ProtocolError("bad_meta", f"bad episode outcome: {protocol.clip(str(exc))}") from exc
    end = {k: msg[k] for k in ("outcome", "num_steps", "content_hash", "ended_at")}
    return _End(end), FRAME_OVERHEAD + _size_of_meta(msg["outcome"])


def _keep(p: Partial, seq: int, part: _Part) -> None:
    if isinstance(part, _Begin):
        p.meta = part.meta
    elif isinstance(part, _Chunk):
        p.chunks[seq] = part.columns
        p.max_chunk_seq = max(p.max_chunk_seq, seq)
    else:
        p.end, p.end_seq = part.end, seq


def _size_of_meta(value: Any) -> int:
    """Approximate memory of a small checked structure (meta / outcome: plain data, bounded by meta_from_dict)."""
    total, stack = 0, [value]
    while stack:
        v = stack.pop()
        total += sys.getsizeof(v)
        if isinstance(v, dict):
            for k, x in v.items():
                total += sys.getsizeof(k)
                stack.append(x)
        elif isinstance(v, list | tuple):
            stack.extend(v)
    return total
