"""Robot-side episode delivery: a streaming EpisodeSink with a disk spool (its one job).

`add_step` only appends to a list; a background thread cuts chunks, writes each
frame to the spool (fsync) and then sends it. Every unacknowledged frame is
resent with exponential backoff; an episode leaves the spool only when the
bridge says `committed`. On start the stream re-sends whatever an earlier run
left complete in the spool, so a crash between `end()` and the commit loses
nothing. `end()` returns once the end frame is on disk. Policies travel on a
socket of their own (`policy_fetch.py`), so a download never delays a frame.

The spool has byte caps (`ClientConfig.spool_max_bytes`, `rejected_max_bytes`,
`orphaned_max_bytes`; policy in `spool.py`): over its cap the stream drops the oldest
complete unsent episodes, never the one being recorded nor one with frames on the wire
(the bridge would hold its partial until the robot's next hello). Drops happen on the
background thread, are counted (`spool_*` in `stats()` and robot_stats) and logged at
most once a minute; the control path never sees them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from lwd_common.episode import (
    Episode,
    EpisodeMeta,
    EpisodeOutcome,
    StepRecord,
    content_hash,
    meta_to_dict,
    outcome_to_dict,
)
from lwd_common.store import check_episode_id
from lwd_common.transport import protocol
from lwd_common.transport.connection import (
    FATAL_CODES,
    BridgeError,
    ClientConfig,
    auth_failure,
    decode_reply,
    hello,
    new_socket,
)
from lwd_common.transport.spool import Spool

log = logging.getLogger("lwd.transport")

# Episode-level refusals: resending cannot help, the episode is set aside in rejected/.
REJECT_CODES = frozenset(
    {
        "bad_chunk",
        "bad_meta",
        "hash_mismatch",
        "episode_too_large",
        "bad_episode",
        "not_owner",
        "malformed",
        "bad_field",
        "frame_too_large",
    }
)


class _Done(threading.Event):
    error: BaseException | None = None


# What the caller's thread hands the stream thread: a frame to spool as is (ep_begin), steps to
# encode and spool as one ep_chunk, or the end of an episode (its ep_end, then `done` is set).
@dataclass(frozen=True)
class _SpoolFrame:
    episode_id: str
    seq: int
    frame: bytes


@dataclass(frozen=True)
class _SpoolChunk:
    episode_id: str
    seq: int
    steps: list[StepRecord]
    cameras: tuple[str, ...]
    num_joints: int


@dataclass(frozen=True)
class _CloseEpisode:
    meta: EpisodeMeta
    steps: list[StepRecord]
    outcome: EpisodeOutcome
    seq: int
    done: _Done


_Command = _SpoolFrame | _SpoolChunk | _CloseEpisode


@dataclass
class _Frame:
    next_send: float = 0.0
    attempts: int = 0
    acked: bool = False


@dataclass
class _Outgoing:
    frames: dict[int, _Frame] = field(default_factory=dict)
    end_seq: int | None = None
    content_hash: str = ""
    ended_mono: float = 0.0


class EpisodeStream:
    """EpisodeSink that streams each episode to the bridge while it is recorded, spooled until committed."""

    def __init__(
        self,
        config: ClientConfig,
        ctx: zmq.Context | None = None,
        extra_counters: Callable[[], dict[str, int]] | None = None,
    ):
        """`extra_counters`: more robot counters (the policy fetcher's) to report in `robot_stats`."""
        check_episode_id(config.robot_id)
        self.config = config
        self._ctx = ctx or zmq.Context.instance()
        self.spool = Spool(
            config.spool_dir,
            fsync=config.fsync,
            max_bytes=config.spool_max_bytes,
            max_rejected_bytes=config.rejected_max_bytes,
            max_orphaned_bytes=config.orphaned_max_bytes,
        )
        self.error: str | None = None  # last refusal from the bridge, for the actor's diagnostics
        self.counters: dict[str, int] = {
            k: 0
            for k in (
                "frames_sent",
                "retries",
                "acks",
                "missing",
                "committed",
                "duplicates_acked",
                "episodes_rejected",
                "errors",
                "orphaned",
                "spool_errors",
            )
        }
        self.commit_latencies: deque[float] = deque(maxlen=10000)  # end() -> committed, seconds
        self._lock = threading.Lock()
        self._commands: queue.Queue[_Command] = queue.Queue()
        self._outgoing: dict[str, _Outgoing] = {}
        self._welcomed = threading.Event()
        self._queued = self._processed = 0  # commands handed to / finished by the background thread
        self._stop = threading.Event()
        self._hello_next = 0.0
        self._hello_attempts = 0
        self._meta: EpisodeMeta | None = None
        self._steps: list[StepRecord] = []
        self._chunk_start = self._chunk_bytes = 0
        self._seq = 0
        self._notices: list[bytes] = []
        self._stats_next = 0.0
        self._extra_counters = extra_counters
        self._broken: set[str] = set()  # episodes with a frame that could not be spooled
        self._recover_spool()
        self._make_room(0, "")  # a spool left over the cap (or a cap lowered) is trimmed at start
        self._thread = threading.Thread(
            target=self._run, name=f"episode-stream-{config.robot_id}", daemon=True
        )
        self._thread.start()

    # --- EpisodeSink -------------------------------------------------------------------------------------

    def begin(self, meta: EpisodeMeta) -> None:
        if self._meta is not None:
            raise RuntimeError(f"episode {self._meta.episode_id} is still open")
        check_episode_id(meta.episode_id)
        if meta.robot_id != self.config.robot_id:
            raise ValueError(
                f"episode robot_id {meta.robot_id!r} != client robot_id {self.config.robot_id!r}"
            )
        self._meta, self._steps, self._chunk_start, self._chunk_bytes, self._seq = meta, [], 0, 0, 0
        frame = protocol.encode("ep_begin", episode_id=meta.episode_id, seq=0, meta=meta_to_dict(meta))
        self._put(_SpoolFrame(meta.episode_id, 0, frame))

    def add_step(self, step: StepRecord) -> None:
        if self._meta is None:
            raise RuntimeError("add_step before begin")
        missing = [c for c in self._meta.cameras if c not in step.images]
        if missing:
            raise ValueError(f"step {step.step} lacks camera frames {missing}")
        joints = len(self._meta.joint_names)
        if np.shape(step.joint_pos) != (joints,) or np.shape(step.action) != (joints,):
            raise ValueError(
                f"step {step.step} has joint_pos {np.shape(step.joint_pos)} and action "
                f"{np.shape(step.action)}; the episode's joint_names name {joints} joints"
            )
        self._steps.append(step)
        self._chunk_bytes += sum(len(f) for f in step.images.values())
        if (
            len(self._steps) - self._chunk_start >= self.config.steps_per_chunk
            or self._chunk_bytes >= self.config.max_chunk_bytes
        ):
            self._cut_chunk()

    def end(self, outcome: EpisodeOutcome) -> None:
        """Close the episode; returns when its end frame is spooled (the episode is then safe)."""
        if self._meta is None:
            raise RuntimeError("end before begin")
        if outcome.num_steps != len(self._steps):
            raise ValueError(f"outcome says {outcome.num_steps} steps, {len(self._steps)} were added")
        if len(self._steps) > self._chunk_start:
            self._cut_chunk()
        meta, steps = self._meta, self._steps
        self._meta, self._steps = None, []
        done = _Done()
        self._put(_CloseEpisode(meta, steps, outcome, self._seq + 1, done))
        while not done.wait(0.5):
            if not self._thread.is_alive():
                raise BridgeError("episode stream thread died; episode not spooled")
        if done.error is not None:
            raise ValueError(f"episode {meta.episode_id} could not be closed: {done.error}") from done.error

    def _cut_chunk(self) -> None:
        assert self._meta is not None
        steps = self._steps[self._chunk_start :]
        self._chunk_start, self._chunk_bytes = len(self._steps), 0
        self._seq += 1
        meta = self._meta
        self._put(_SpoolChunk(meta.episode_id, self._seq, steps, tuple(meta.cameras), len(meta.joint_names)))

    # --- status ------------------------------------------------------------------------------------------

    def pending_episodes(self) -> list[str]:
        with self._lock:
            return list(self._outgoing)

    def wait_idle(self, timeout: float) -> bool:
        """True once every ended episode is committed by the bridge (and no commands are queued)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._processed == self._queued and not self._outgoing:
                    return True
            time.sleep(0.02)
        return False

    def _put(self, cmd: _Command) -> None:
        with self._lock:
            self._queued += 1
        self._commands.put(cmd)

    def wait_connected(self, timeout: float) -> None:
        """Block until the bridge welcomed us; BridgeError with the bridge's reason otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._welcomed.is_set():
                return
            if self.error:
                raise BridgeError(self.error)
            time.sleep(0.02)
        raise BridgeError(self.error or f"no answer from bridge at {self.config.endpoint} in {timeout:.1f} s")

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self.counters,
                **self.spool.stats(),
                "spooled_episodes": len(self._outgoing),
                "error": self.error,
            }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # --- background thread: spool + send + receive -------------------------------------------------------

    def _recover_spool(self) -> None:
        for ep in self.spool.scan():
            if ep.end_seq is None:
                self.spool.set_aside(ep.episode_id, "orphaned")
                self.counters["orphaned"] += 1
                log.warning("episode %s was interrupted before its end; moved to orphaned/", ep.episode_id)
                continue
            if set(ep.seqs) != set(range(ep.end_seq + 1)):
                self.spool.set_aside(ep.episode_id, "orphaned")
                self.counters["orphaned"] += 1
                log.error("episode %s has gaps in the spool; moved to orphaned/", ep.episode_id)
                continue
            try:
                end = protocol.decode(self.spool.read(ep.episode_id, ep.end_seq), max_bytes=1 << 62)
            except protocol.ProtocolError as exc:
                self.spool.set_aside(ep.episode_id, "orphaned")
                self.counters["orphaned"] += 1
                log.error(
                    "episode %s has an unreadable end frame (%s); moved to orphaned/", ep.episode_id, exc
                )
                continue
            out = _Outgoing(end_seq=ep.end_seq, content_hash=end["content_hash"], ended_mono=time.monotonic())
            out.frames = {s: _Frame() for s in ep.seqs}
            self._outgoing[ep.episode_id] = out

    def _run(self) -> None:
        sock = new_socket(self._ctx, self.config)
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        sock.connect(self.config.endpoint)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                self._drain_commands()
                for s, _ in poller.poll(timeout=20):
                    if s is monitor:
                        self._on_monitor(recv_monitor_message(monitor))
                    else:
                        while sock.poll(0):
                            self._on_reply(sock.recv())
                self._send_due(sock)
        except Exception:  # noqa: BLE001 - log and keep the process alive; end() reports the dead thread
            log.exception("episode stream thread crashed")
            raise
        finally:
            sock.disable_monitor()
            monitor.close(0)
            sock.close(0)

    def _on_monitor(self, event: dict) -> None:
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self.error = auth_failure(self.config, event["value"])
            log.error(self.error)

    def _drain_commands(self) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                self._do(cmd)
            finally:
                with self._lock:
                    self._processed += 1

    def _do(self, cmd: _Command) -> None:
        """Spool what add_step/end handed over (background thread)."""
        if isinstance(cmd, _CloseEpisode):
            self._close_episode(cmd.meta, cmd.steps, cmd.outcome, cmd.seq, cmd.done)
            return
        eid, seq = cmd.episode_id, cmd.seq
        if eid in self._broken:
            return
        try:
            if isinstance(cmd, _SpoolFrame):
                self._spool_frame(eid, seq, cmd.frame, False)
            else:
                steps = protocol.steps_to_chunk(cmd.steps, cmd.cameras, cmd.num_joints)
                self._spool_frame(
                    eid, seq, protocol.encode("ep_chunk", episode_id=eid, seq=seq, steps=steps), False
                )
        except OSError as exc:  # disk full, read-only spool: the episode cannot be delivered whole
            self._broken.add(eid)
            self.counters["spool_errors"] += 1
            self.error = f"spool write failed for episode {eid}: {exc}"
            log.error(self.error)

    def _close_episode(
        self, meta: EpisodeMeta, steps: list[StepRecord], outcome: EpisodeOutcome, seq: int, done: _Done
    ) -> None:
        eid = meta.episode_id
        try:
            if eid in self._broken:
                raise OSError(self.error or "spool write failed")
            digest = content_hash(Episode.from_steps(meta, steps, outcome))
            frame = protocol.encode(
                "ep_end",
                episode_id=eid,
                seq=seq,
                outcome=outcome_to_dict(outcome),
                num_steps=len(steps),
                content_hash=digest,
                ended_at=time.time(),
            )
            self._spool_frame(eid, seq, frame, True)
            with self._lock:
                out = self._outgoing[eid]
                out.end_seq, out.content_hash, out.ended_mono = seq, digest, time.monotonic()
        except Exception as exc:  # noqa: BLE001 - a bad episode must not kill the sender
            log.error("cannot close episode %s: %s", eid, exc)
            done.error = exc
            self._broken.discard(eid)
            with self._lock:
                self._outgoing.pop(eid, None)
            try:
                if (self.spool.episodes_dir / eid).exists():
                    self.spool.set_aside(eid, "rejected")
            except OSError:
                log.exception("cannot move episode %s aside", eid)
        finally:
            done.set()

    def _spool_frame(self, eid: str, seq: int, frame: bytes, is_end: bool) -> None:
        if self.spool.needs_room(len(frame)):
            self._make_room(len(frame), eid)
        self.spool.write(eid, seq, frame, is_end=is_end)
        with self._lock:
            self._outgoing.setdefault(eid, _Outgoing()).frames[seq] = _Frame()

    def _make_room(self, nbytes: int, current: str) -> None:
        """Drop the oldest unsent episodes so `nbytes` fit under the spool cap (background thread).

        Kept: `current` (being written), every episode without its end (being recorded) and
        every episode with a frame sent since the last welcome: the bridge may hold part of it,
        and dropping it would leave that partial open on the bridge until our next hello."""
        with self._lock:
            keep = {current} | {
                eid
                for eid, o in self._outgoing.items()
                if o.end_seq is None or any(f.attempts or f.acked for f in o.frames.values())
            }
        dropped = self.spool.make_room(nbytes, keep)
        if dropped:
            with self._lock:
                for eid in dropped:
                    self._outgoing.pop(eid, None)

    def _backoff(self, attempts: int) -> float:
        return min(self.config.ack_timeout_s * 2 ** max(0, attempts - 1), self.config.max_backoff_s)

    def _send_due(self, sock: zmq.Socket) -> None:
        now = time.monotonic()
        if not self._welcomed.is_set():
            if now >= self._hello_next:
                try:
                    sock.send(hello(self.config, "stream", self._outgoing), zmq.NOBLOCK)
                    self._hello_attempts += 1
                    self._hello_next = now + self._backoff(self._hello_attempts)
                except zmq.Again:
                    self._hello_next = now + 0.05
            return
        if now >= self._stats_next:  # robot-side counters (retries...) for the fleet status
            self._stats_next = now + self.config.stats_every_s
            with self._lock:
                counters = {k: int(v) for k, v in {**self.counters, **self.spool.stats()}.items()}
                spooled = len(self._outgoing)
            if self._extra_counters is not None:
                counters.update({k: int(v) for k, v in self._extra_counters().items()})
            self._notices.append(protocol.encode("robot_stats", counters=counters, spooled_episodes=spooled))
        while self._notices:
            try:
                sock.send(self._notices[0], zmq.NOBLOCK)
            except zmq.Again:
                break
            self._notices.pop(0)
        with self._lock:
            in_flight = sum(
                1 for o in self._outgoing.values() for f in o.frames.values() if f.attempts and not f.acked
            )
            due = [
                (eid, seq, f)
                for eid, o in self._outgoing.items()
                for seq, f in sorted(o.frames.items())
                if not f.acked and f.next_send <= now
            ]
        for eid, seq, f in due:
            if f.attempts == 0 and in_flight >= self.config.max_in_flight:
                break
            try:
                data = self.spool.read(eid, seq)
            except FileNotFoundError:
                continue  # committed and deleted meanwhile
            try:
                sock.send(data, zmq.NOBLOCK)
            except zmq.Again:
                return  # not connected right now; try again next round
            if f.attempts:
                self.counters["retries"] += 1
            else:
                in_flight += 1
            f.attempts += 1
            f.next_send = now + self._backoff(f.attempts)
            self.counters["frames_sent"] += 1

    def _on_reply(self, data: bytes) -> None:
        try:
            msg = decode_reply(self.config, data)
        except protocol.ProtocolError as exc:
            log.error("bad frame from bridge: %s", exc)
            return
        t = msg["t"]
        now = time.monotonic()
        with self._lock:
            out = self._outgoing.get(msg.get("episode_id") or "")
            if t == "welcome":
                if not self._welcomed.is_set():
                    # A (re)welcome means the bridge may have lost what it held: resend everything.
                    for o in self._outgoing.values():
                        for f in o.frames.values():
                            f.acked, f.next_send, f.attempts = False, 0.0, 0
                self._welcomed.set()
                self._hello_attempts = 0
                self.error = None
            elif t == "ack" and out and msg["seq"] in out.frames:
                out.frames[msg["seq"]].acked = True
                self.counters["acks"] += 1
            elif t == "missing" and out:
                self.counters["missing"] += 1
                for seq in msg["seqs"]:
                    if isinstance(seq, int) and seq in out.frames:
                        f = out.frames[seq]
                        f.acked, f.next_send = False, now
            elif t == "committed":
                if out is None:
                    self.counters["duplicates_acked"] += 1
                    return
                if out.content_hash and msg["content_hash"] != out.content_hash:
                    log.error(
                        "bridge committed %s with hash %s, ours is %s",
                        msg["episode_id"],
                        msg["content_hash"],
                        out.content_hash,
                    )
                    self.error = f"bridge stored a different episode under id {msg['episode_id']}"
                    self.counters["errors"] += 1
                del self._outgoing[msg["episode_id"]]
                self.spool.delete(msg["episode_id"])
                self.counters["committed"] += 1
                if out.ended_mono:
                    self.commit_latencies.append(now - out.ended_mono)
            elif t == "error":
                self._on_error(msg, out)

    def _on_error(self, msg: dict, out: _Outgoing | None) -> None:
        code, text, eid = msg["code"], msg["message"], msg["episode_id"]
        self.counters["errors"] += 1
        if code == "no_session":  # the bridge restarted: every frame in flight says so; one line is enough
            if self._welcomed.is_set():
                log.warning("bridge lost this robot's session (restarted?); saying hello again")
            self._welcomed.clear()
            self._hello_next = 0.0
            return
        log.error("bridge error %s%s: %s", code, f" on {eid}" if eid else "", text)
        if code in FATAL_CODES or msg["fatal"]:
            self.error = f"bridge refused robot {self.config.robot_id}: {text}"
            self._welcomed.clear()
            self._hello_next = time.monotonic() + self.config.max_backoff_s
        elif code in REJECT_CODES and out is not None and eid:
            self.error = f"bridge rejected episode {eid}: {text}"
            del self._outgoing[eid]
            self.spool.set_aside(eid, "rejected")
            self.counters["episodes_rejected"] += 1
        # anything else (busy, too_many_open): frames stay unacked and are resent with backoff
