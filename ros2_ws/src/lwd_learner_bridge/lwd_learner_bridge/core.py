"""The bridge's logic, free of sockets: frames in, replies out.

`BridgeCore.handle(peer, data)` validates one frame and returns the replies for
that peer; `flush()` commits a store snapshot for every episode finished since
the last flush and returns the `committed` replies, so a robot hears
"committed" only once the learner can see the episode. The server calls
`handle` for a batch of frames and then `flush`, all in one thread: there is no
worker pool a slow robot could occupy, and every buffer has a limit. With
`background_writes` one writer thread assembles, hashes and fsyncs finished
episodes, so a long episode's write never stalls the frame loop.

Exactly-once in the store: frames are keyed by (episode id, seq) and duplicates
dropped; an episode is assembled only when all seqs 0..end are present, its
sha256 must equal the robot's `content_hash`, and the store write is atomic and
idempotent. An id already in the store is answered `committed` again.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lwd_common.episode import (
    Episode,
    EpisodeMeta,
    StepRecord,
    encode_episode,
    meta_from_dict,
    outcome_from_dict,
)
from lwd_common.policy_store import PolicyStore
from lwd_common.store import EpisodeStore, check_episode_id
from lwd_common.transport import protocol

log = logging.getLogger("lwd.bridge")


@dataclass(frozen=True)
class BridgeConfig:
    root: str
    max_frame_bytes: int = protocol.DEFAULT_MAX_FRAME_BYTES
    max_episode_bytes: int = 1 << 30
    max_open_episodes_per_robot: int = 4
    max_buffered_bytes: int = 4 << 30  # all partial episodes together
    partial_timeout_s: float = 900.0  # drop a partial episode nobody sent to for this long
    session_timeout_s: float = 3600.0
    max_sessions: int = 4096
    policy_chunk_max: int = 4 << 20
    writer_threads: int = 2  # with background_writes (the server)
    config_hash: str = field(default_factory=protocol.config_hash)


@dataclass
class _Session:
    robot_id: str
    role: str
    last_seen: float


@dataclass
class _Partial:
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


@dataclass
class _RobotState:
    last_seen: float = 0.0
    episodes_committed: int = 0
    duplicates_dropped: int = 0
    rejected: int = 0
    policy_version: str = ""
    policy_loaded_at: float = 0.0
    policy_ok: bool = True
    last_commit_latency_s: float | None = None
    spooled_episodes: int = 0  # as the robot last reported
    reported: dict[str, int] = field(default_factory=dict)  # the robot's own counters (retries, ...)


def _percentile(values, q: float) -> float | None:
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else None


class BridgeCore:
    def __init__(self, config: BridgeConfig, key_names: dict[str, str] | None = None,
                 background_writes: bool = False):
        self.config = config
        self.root = Path(config.root)
        self.store = EpisodeStore(self.root / "store")
        self.policies = PolicyStore(self.root / "policies")
        self.key_names = key_names  # z85 public key -> robot id; None: no CURVE, no binding
        self.started_at = time.time()
        self.sessions: OrderedDict[bytes, _Session] = OrderedDict()
        self.partials: dict[str, _Partial] = {}
        self.robots: dict[str, _RobotState] = {}
        self.counters: dict[str, int] = {k: 0 for k in (
            "frames", "bytes", "rejected", "duplicates_dropped", "episodes_committed", "episodes_rejected",
            "missing_requests", "partials_expired", "policy_chunks_served", "auth_denied", "replies_dropped",
            "backlog_committed")}
        self.commit_latencies: deque[float] = deque(maxlen=10000)  # robot end -> committed (wall clock)
        self.policy_latencies: deque[float] = deque(maxlen=10000)  # published -> robot reports loaded
        self._hashes: OrderedDict[str, str] = OrderedDict()  # committed id -> content hash (bounded cache)
        self._to_commit: list[tuple[bytes, str, str, float, str]] = []
        self._buffered = 0
        self._finishing: dict[str, _Partial] = {}  # complete, being assembled and written
        self._jobs: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        # Writer threads: a big episode's encode + fsync never stalls the frame loop, and a burst of
        # episode ends is written in parallel (fsync releases the GIL).
        self._writers = [threading.Thread(target=self._writer_loop, name=f"episode-writer-{i}", daemon=True)
                         for i in range(config.writer_threads if background_writes else 0)]
        for w in self._writers:
            w.start()
        self._rejected: OrderedDict[str, tuple[str, str]] = OrderedDict()  # refused episode id -> (code, why)
        self.snapshot_version = (self.store.latest_snapshot().version if self.store.latest_snapshot() else 0)

    # --- entry points --------------------------------------------------------------------------------------

    def handle(self, peer: bytes, data: bytes, user_id: str | None = None) -> list[bytes]:
        """Process one frame from `peer`; return the frames to send back to it."""
        try:
            return self._handle(peer, data, user_id)
        except Exception as exc:  # noqa: BLE001 - a bug or a bad file must not take the bridge down
            log.exception("internal error on a frame from %s", peer.hex())
            return [self._error("internal", f"bridge internal error: {type(exc).__name__}: {exc}")]

    def _handle(self, peer: bytes, data: bytes, user_id: str | None) -> list[bytes]:
        now = time.time()
        self.counters["frames"] += 1
        self.counters["bytes"] += len(data)
        try:
            msg = protocol.decode(data, self.config.max_frame_bytes, allowed=protocol.ROBOT_TYPES)
        except protocol.ProtocolError as exc:
            return [self._error(exc.code, str(exc), fatal=exc.code == "schema_version", peer=peer)]
        t = msg["t"]
        if t == "hello":
            return self._hello(peer, msg, user_id, now)
        if t == "status_query":
            return [protocol.encode("status", fleet=self.status())]
        session = self.sessions.get(peer)
        if session is None:
            return [self._error("no_session", f"send hello before {t}", episode_id=msg.get("episode_id"), peer=peer)]
        session.last_seen = now
        self.sessions.move_to_end(peer)
        self.robots.setdefault(session.robot_id, _RobotState()).last_seen = now
        if t in protocol.EPISODE_TYPES:
            return self._episode_frame(peer, session, msg, len(data), now)
        if t == "policy_query":
            latest = self.policies.latest()
            return [protocol.encode("policy_info", info=latest.to_dict() if latest else None)]
        if t == "policy_fetch":
            return [self._policy_chunk(msg)]
        if t == "robot_stats":
            robot = self.robots[session.robot_id]
            robot.reported = {k: v for k, v in list(msg["counters"].items())[:50]
                              if isinstance(k, str) and isinstance(v, int)}
            robot.spooled_episodes = msg["spooled_episodes"]
            return []
        if t == "policy_loaded":
            self._policy_loaded(session.robot_id, msg)
            return []
        return [self._error("unexpected_type", f"{t} not handled")]

    def flush(self) -> list[tuple[bytes, bytes]]:
        """Commit a snapshot holding every episode stored since the last flush; return the replies."""
        out = []
        while True:
            try:
                peer, eid, p, digest, code, message = self._done.get_nowait()
            except queue.Empty:
                break
            del self._finishing[eid]
            self._buffered -= p.nbytes
            if digest is not None:
                self._remember(eid, digest)
                self._to_commit.append((peer, eid, digest, float(p.end["ended_at"]), p.robot_id))
            elif code == "store_error":  # not the robot's fault: it resends and we try again
                out.append((peer, self._error(code, message, episode_id=eid, robot_id=p.robot_id)))
            else:
                out.append((peer, self._reject(eid, code, message, p.robot_id)))
        if not self._to_commit:
            return out
        snap = self.store.commit_snapshot()
        self.snapshot_version = snap.version
        now = time.time()
        for peer, eid, digest, ended_at, robot_id in self._to_commit:
            latency = max(0.0, now - ended_at)
            robot = self.robots.setdefault(robot_id, _RobotState())
            if ended_at >= self.started_at:
                self.commit_latencies.append(latency)
                robot.last_commit_latency_s = latency
            else:  # spooled while this bridge was down: that wait is downtime, not delivery latency
                self.counters["backlog_committed"] += 1
            robot.episodes_committed += 1
            out.append((peer, protocol.encode("committed", episode_id=eid, content_hash=digest,
                                              snapshot=snap.version, duplicate=False)))
        self.counters["episodes_committed"] += len(self._to_commit)
        self._to_commit = []
        return out

    def expire(self, now: float | None = None) -> None:
        """Drop partial episodes and sessions that went quiet (a dead robot must not pin memory)."""
        now = time.time() if now is None else now
        for eid, p in list(self.partials.items()):
            if now - p.last_update > self.config.partial_timeout_s:
                log.warning("dropping partial episode %s of %s: idle %.0f s", eid, p.robot_id, now - p.last_update)
                self._drop_partial(eid)
                self.counters["partials_expired"] += 1
        for peer, s in list(self.sessions.items()):
            if now - s.last_seen > self.config.session_timeout_s:
                del self.sessions[peer]

    # --- handlers --------------------------------------------------------------------------------------------

    def _error(self, code: str, message: str, episode_id: str | None = None, fatal: bool = False,
               peer: bytes | None = None, robot_id: str | None = None) -> bytes:
        self.counters["rejected"] += 1
        if robot_id:
            self.robots.setdefault(robot_id, _RobotState()).rejected += 1
        log.warning("rejected frame from %s: %s: %s", robot_id or (peer.hex() if peer else "?"), code, message)
        return protocol.encode("error", code=code, message=message, episode_id=episode_id, fatal=fatal)

    def _hello(self, peer: bytes, msg: dict, user_id: str | None, now: float) -> list[bytes]:
        robot_id = msg["robot_id"]
        try:
            check_episode_id(robot_id)
        except ValueError:
            return [self._error("bad_hello", f"invalid robot id {robot_id!r}", fatal=True, peer=peer)]
        if msg["role"] not in protocol.ROLES:
            return [self._error("bad_hello", f"unknown role {msg['role']!r}", fatal=True, peer=peer)]
        if msg["config_hash"] != self.config.config_hash:
            return [self._error(
                "config_mismatch",
                f"robot config hash {msg['config_hash']} != bridge {self.config.config_hash} "
                "(joint names, cameras, rates or episode schema differ)", fatal=True, peer=peer)]
        if self.key_names is not None:
            owner = self.key_names.get(user_id or "")
            if owner != robot_id:
                return [self._error("key_mismatch", f"this CURVE key belongs to {owner!r}, not {robot_id!r}",
                                    fatal=True, peer=peer)]
        self.sessions[peer] = _Session(robot_id, msg["role"], now)
        self.sessions.move_to_end(peer)
        while len(self.sessions) > self.config.max_sessions:
            self.sessions.popitem(last=False)
        robot = self.robots.setdefault(robot_id, _RobotState())
        robot.last_seen = now
        if msg["policy_version"]:
            robot.policy_version = msg["policy_version"]
        if msg["role"] == "stream":
            keep = {e for e in msg["open_episodes"] if isinstance(e, str)}
            for eid, p in list(self.partials.items()):
                if p.robot_id == robot_id and eid not in keep:
                    log.info("robot %s restarted without episode %s; dropping its partial", robot_id, eid)
                    self._drop_partial(eid)
        log.info("hello from %s (%s)", robot_id, msg["role"])
        return [protocol.encode("welcome", bridge_time=now, max_frame_bytes=self.config.max_frame_bytes)]

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

    def _reject(self, eid: str, code: str, message: str, robot_id: str) -> bytes:
        """Refuse a whole episode: free its frames and answer its later frames the same way."""
        self._drop_partial(eid)
        self.counters["episodes_rejected"] += 1
        self._rejected[eid] = (code, message)
        while len(self._rejected) > 10_000:
            self._rejected.popitem(last=False)
        return self._error(code, message, episode_id=eid, robot_id=robot_id)

    def _drop_partial(self, eid: str) -> None:
        p = self.partials.pop(eid, None)
        if p is not None:
            self._buffered -= p.nbytes

    def _episode_frame(self, peer: bytes, session: _Session, msg: dict, size: int, now: float) -> list[bytes]:
        eid, seq, t, rid = msg["episode_id"], msg["seq"], msg["t"], session.robot_id
        try:
            check_episode_id(eid)
        except ValueError as exc:
            return [self._error("bad_field", str(exc), robot_id=rid)]
        if eid in self._finishing or any(e == eid for _, e, *_ in self._to_commit):
            self.counters["duplicates_dropped"] += 1  # being written; `committed` follows from flush()
            return [] if t == "ep_end" else [protocol.encode("ack", episode_id=eid, seq=seq)]
        digest = self._committed_hash(eid)
        if digest is not None:
            self.counters["duplicates_dropped"] += 1
            self.robots[rid].duplicates_dropped += 1
            return [protocol.encode("committed", episode_id=eid, content_hash=digest,
                                    snapshot=self.snapshot_version, duplicate=True)]
        if eid in self._rejected:
            code, why = self._rejected[eid]
            return [self._error(code, why, episode_id=eid, robot_id=rid)]
        p = self.partials.get(eid)
        if p is None:
            open_here = sum(1 for q in self.partials.values() if q.robot_id == rid)
            if open_here >= self.config.max_open_episodes_per_robot:
                return [self._error("too_many_open", f"robot {rid} already has {open_here} open episodes",
                                    episode_id=eid, robot_id=rid)]
            if self._buffered + size > self.config.max_buffered_bytes:
                return [self._error("busy", "bridge buffers are full; retry later", episode_id=eid, robot_id=rid)]
            p = self.partials[eid] = _Partial(robot_id=rid, last_update=now)
        if p.robot_id != rid:
            return [self._error("not_owner", f"episode {eid} is being sent by robot {p.robot_id}",
                                episode_id=eid, robot_id=rid)]
        p.last_update = now
        if seq in p.seqs():
            self.counters["duplicates_dropped"] += 1
            self.robots[rid].duplicates_dropped += 1
            return self._try_finish(peer, eid, p) if t == "ep_end" else [protocol.encode("ack", episode_id=eid, seq=seq)]
        if p.nbytes + size > self.config.max_episode_bytes:
            return [self._reject(eid, "episode_too_large",
                                 f"episode {eid} exceeds {self.config.max_episode_bytes} bytes", rid)]
        if self._buffered + size > self.config.max_buffered_bytes:
            return [self._error("busy", "bridge buffers are full; retry later", episode_id=eid, robot_id=rid)]
        try:
            self._add_frame(p, t, seq, msg, eid, rid)
        except protocol.ProtocolError as exc:  # the robot sets the episode aside too (rejected/)
            return [self._reject(eid, exc.code, str(exc), rid)]
        p.nbytes += size
        self._buffered += size
        if t == "ep_end":
            return self._try_finish(peer, eid, p)
        replies = [protocol.encode("ack", episode_id=eid, seq=seq)]
        if p.end is not None:
            replies += self._try_finish(peer, eid, p)
        return replies

    def _add_frame(self, p: _Partial, t: str, seq: int, msg: dict, eid: str, rid: str) -> None:
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

    def _try_finish(self, peer: bytes, eid: str, p: _Partial) -> list[bytes]:
        assert p.end is not None and p.end_seq is not None
        missing = sorted(set(range(p.end_seq + 1)) - p.seqs())
        if missing:
            self.counters["missing_requests"] += 1
            return [protocol.encode("missing", episode_id=eid, seqs=missing[:1000])]
        del self.partials[eid]  # its bytes stay counted in _buffered until written
        self._finishing[eid] = p
        if self._writers:
            self._jobs.put((peer, eid, p))
        else:
            self._done.put(self._write(peer, eid, p))
        return []

    def _write(self, peer: bytes, eid: str, p: _Partial) -> tuple:
        """Assemble, verify and store one episode (writer thread: touches only the store and `p`)."""
        end = p.end
        assert end is not None and p.meta is not None
        try:
            steps = [s for seq in sorted(p.chunks) for s in p.chunks[seq]]
            episode = Episode.from_steps(p.meta, steps, outcome_from_dict(end["outcome"]))
            data = encode_episode(episode)
        except (ValueError, TypeError, KeyError) as exc:
            return peer, eid, p, None, "bad_episode", f"episode {eid} does not assemble: {exc}"
        digest = hashlib.sha256(data).hexdigest()
        if digest != end["content_hash"] or episode.num_steps != end["num_steps"]:
            return peer, eid, p, None, "hash_mismatch", (
                f"episode {eid}: assembled {episode.num_steps} steps with hash {digest[:12]}.., robot sent "
                f"{end['num_steps']} steps {end['content_hash'][:12]}..")
        try:
            self.store.put_encoded(eid, data)
        except OSError as exc:
            return peer, eid, p, None, "store_error", f"bridge could not store {eid}: {exc}; retry later"
        return peer, eid, p, digest, None, None

    def _writer_loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._done.put(self._write(*job))

    def busy(self) -> bool:
        """True while episodes are being written (the server then polls more often)."""
        return bool(self._finishing)

    def close(self) -> None:
        for _ in self._writers:
            self._jobs.put(None)
        for w in self._writers:
            w.join(timeout=60)

    def _policy_chunk(self, msg: dict) -> bytes:
        version, offset = msg["version"], msg["offset"]
        try:
            info = self.policies.get(version)
        except (KeyError, ValueError) as exc:
            return self._error("unknown_policy", str(exc))
        if offset < 0 or offset > info.size or msg["length"] <= 0:
            return self._error("bad_field", f"offset {offset} / length {msg['length']} outside policy {version}")
        length = min(msg["length"], self.config.policy_chunk_max)
        try:
            with open(self.policies.path_of(version), "rb") as f:
                f.seek(offset)
                data = f.read(length)
        except OSError as exc:
            return self._error("unknown_policy", f"policy {version} unreadable: {exc}")
        self.counters["policy_chunks_served"] += 1
        return protocol.encode("policy_data", version=version, offset=offset, total=info.size, data=data)

    def _policy_loaded(self, robot_id: str, msg: dict) -> None:
        robot = self.robots.setdefault(robot_id, _RobotState())
        robot.policy_ok = msg["ok"]
        if not msg["ok"]:
            log.warning("robot %s failed to load policy %s: %s", robot_id, msg["version"], msg["message"])
            return
        robot.policy_version, robot.policy_loaded_at = msg["version"], float(msg["loaded_at"])
        try:
            info = self.policies.get(msg["version"])
        except (KeyError, ValueError):
            return
        if info.created_at >= self.started_at:  # published before this bridge started: downtime, not latency
            self.policy_latencies.append(max(0.0, robot.policy_loaded_at - info.created_at))

    # --- observability ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        latest = self.policies.latest()
        robots: dict[str, Any] = {}
        for rid, r in sorted(self.robots.items()):
            robots[rid] = {
                "last_seen": r.last_seen,
                "episodes_committed": r.episodes_committed,
                "open_episodes": sum(1 for p in self.partials.values() if p.robot_id == rid),
                "duplicates_dropped": r.duplicates_dropped,
                "rejected": r.rejected,
                "policy_version": r.policy_version,
                "policy_loaded_at": r.policy_loaded_at,
                "policy_ok": r.policy_ok,
                "last_commit_latency_s": r.last_commit_latency_s,
                "retries": r.reported.get("retries", 0),
                "spooled_episodes": r.spooled_episodes,
                "robot_counters": dict(r.reported),
            }
        return {
            "time": time.time(),
            "started_at": self.started_at,
            "snapshot_version": self.snapshot_version,
            "episodes_in_store": len(self.store.ids()),
            "latest_policy": latest.version if latest else None,
            "buffered_bytes": self._buffered,
            "sessions": len(self.sessions),
            "counters": dict(self.counters),
            "commit_latency_s": {"p50": _percentile(self.commit_latencies, 50),
                                 "p99": _percentile(self.commit_latencies, 99)},
            "policy_latency_s": {"p50": _percentile(self.policy_latencies, 50),
                                 "p99": _percentile(self.policy_latencies, 99)},
            "robots": robots,
        }
