"""Robot-side bridge client: a streaming EpisodeSink with a disk spool, and the policy fetcher.

`add_step` only appends to a list; a background thread cuts chunks, writes each
frame to the spool (fsync) and then sends it. Every unacknowledged frame is
resent with exponential backoff; an episode leaves the spool only when the
bridge says `committed`. On start the client re-sends whatever an earlier run
left complete in the spool, so a crash between `end()` and the commit loses
nothing. `end()` returns once the end frame is on disk.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
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
from lwd_common.policy_store import PolicyInfo, is_newer
from lwd_common.store import check_episode_id
from lwd_common.transport import protocol
from lwd_common.transport.policy_cache import LocalPolicy, PolicyCache, PolicyHashMismatch
from lwd_common.transport.spool import Spool

log = logging.getLogger("lwd.transport")

FATAL_CODES = frozenset({"schema_version", "config_mismatch", "key_mismatch", "bad_hello"})
REJECT_CODES = frozenset({"bad_chunk", "bad_meta", "hash_mismatch", "episode_too_large", "bad_episode",
                          "not_owner", "malformed", "bad_field", "frame_too_large"})


class BridgeError(RuntimeError):
    """The bridge refused us (version/config/key mismatch, auth failure) or did not answer."""


class _NoSession(BridgeError):
    """The bridge does not know this connection (it restarted)."""


@dataclass(frozen=True)
class ClientConfig:
    endpoint: str  # e.g. "tcp://bridge-host:5555"
    robot_id: str
    spool_dir: str
    policy_dir: str = ""  # default: <spool_dir>/policies
    steps_per_chunk: int = 15  # 0.5 s of steps per ep_chunk frame at 30 Hz
    max_chunk_bytes: int = 4 << 20  # ...or fewer steps when their images reach this (stay under frame limits)
    ack_timeout_s: float = 1.0  # first resend after this long without an ack
    max_backoff_s: float = 8.0
    max_in_flight: int = 64  # unacknowledged frames on the wire at once
    policy_timeout_s: float = 3.0  # per policy request; a boundary never waits longer than a few of these
    policy_chunk_bytes: int = 1 << 20
    stats_every_s: float = 5.0  # how often the client's counters go to the bridge's fleet status
    policy_prefetch_s: float = 0.0  # > 0: poll + download newer policies in the background this often
    curve_secret_key_file: str = ""  # robot's secret cert (from `lwd_learner_bridge.keys`)
    server_public_key_file: str = ""  # bridge's public cert
    config_hash: str = field(default_factory=protocol.config_hash)
    fsync: bool = True
    max_frame_bytes: int = protocol.DEFAULT_MAX_FRAME_BYTES

    @property
    def policy_root(self) -> Path:
        return Path(self.policy_dir) if self.policy_dir else Path(self.spool_dir) / "policies"


def _new_socket(ctx: zmq.Context, config: ClientConfig) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue frames for a peer that is not connected
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    sock.setsockopt(zmq.MAXMSGSIZE, 4 * config.max_frame_bytes)
    if config.curve_secret_key_file:
        public, secret = zmq.auth.load_certificate(config.curve_secret_key_file)
        server_public, _ = zmq.auth.load_certificate(config.server_public_key_file)
        if secret is None:
            raise ValueError(f"{config.curve_secret_key_file} holds no secret key")
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_public
    return sock


class _Done(threading.Event):
    error: BaseException | None = None


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


class BridgeClient:
    """EpisodeSink that streams to the bridge, plus `fetch_policy_if_newer` for episode boundaries."""

    def __init__(self, config: ClientConfig, ctx: zmq.Context | None = None):
        check_episode_id(config.robot_id)
        self.config = config
        self._ctx = ctx or zmq.Context.instance()
        self.spool = Spool(config.spool_dir, fsync=config.fsync)
        self.policies = PolicyCache(config.policy_root)
        self.error: str | None = None  # last refusal from the bridge, for the actor's diagnostics
        self.counters: dict[str, int] = {k: 0 for k in (
            "frames_sent", "retries", "acks", "missing", "committed", "duplicates_acked", "episodes_rejected",
            "errors", "policy_downloads", "policy_rejected", "orphaned", "spool_errors")}
        self.commit_latencies: deque[float] = deque(maxlen=10000)  # end() -> committed, seconds
        self._lock = threading.Lock()
        self._commands: queue.Queue = queue.Queue()
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
        self._req_sock: zmq.Socket | None = None
        self._notices: list[bytes] = []
        self._stats_next = 0.0
        self._broken: set[str] = set()  # episodes with a frame that could not be spooled
        self._recover_spool()
        self._thread = threading.Thread(target=self._run, name=f"bridge-client-{config.robot_id}", daemon=True)
        self._thread.start()
        self._policy_lock = threading.Lock()
        self.policy_ready_at: dict[str, float] = {}  # version -> when it was verified on disk here
        self._prefetch: threading.Thread | None = None
        if config.policy_prefetch_s > 0:
            self._prefetch = threading.Thread(target=self._prefetch_loop, daemon=True,
                                              name=f"policy-prefetch-{config.robot_id}")
            self._prefetch.start()

    # --- EpisodeSink -------------------------------------------------------------------------------------

    def begin(self, meta: EpisodeMeta) -> None:
        if self._meta is not None:
            raise RuntimeError(f"episode {self._meta.episode_id} is still open")
        check_episode_id(meta.episode_id)
        if meta.robot_id != self.config.robot_id:
            raise ValueError(f"episode robot_id {meta.robot_id!r} != client robot_id {self.config.robot_id!r}")
        self._meta, self._steps, self._chunk_start, self._chunk_bytes, self._seq = meta, [], 0, 0, 0
        frame = protocol.encode("ep_begin", episode_id=meta.episode_id, seq=0, meta=meta_to_dict(meta))
        self._put(("frame", meta.episode_id, 0, frame, False))

    def add_step(self, step: StepRecord) -> None:
        if self._meta is None:
            raise RuntimeError("add_step before begin")
        missing = [c for c in self._meta.cameras if c not in step.images]
        if missing:
            raise ValueError(f"step {step.step} lacks camera frames {missing}")
        self._steps.append(step)
        self._chunk_bytes += sum(len(f) for f in step.images.values())
        if (len(self._steps) - self._chunk_start >= self.config.steps_per_chunk
                or self._chunk_bytes >= self.config.max_chunk_bytes):
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
        self._put(("end", meta, steps, outcome, self._seq + 1, done))
        while not done.wait(0.5):
            if not self._thread.is_alive():
                raise BridgeError("bridge client thread died; episode not spooled")
        if done.error is not None:
            raise ValueError(f"episode {meta.episode_id} could not be closed: {done.error}") from done.error

    def _cut_chunk(self) -> None:
        assert self._meta is not None
        steps = self._steps[self._chunk_start:]
        self._chunk_start, self._chunk_bytes = len(self._steps), 0
        self._seq += 1
        self._put(("chunk", self._meta.episode_id, self._seq, steps, tuple(self._meta.cameras)))

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

    def _put(self, cmd: tuple) -> None:
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
            return {**self.counters, "spooled_episodes": len(self._outgoing), "error": self.error}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._prefetch is not None:
            self._prefetch.join(timeout=2 * self.config.policy_timeout_s + 1)
        if self._req_sock is not None:
            self._req_sock.close(0)
            self._req_sock = None

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
                log.error("episode %s has an unreadable end frame (%s); moved to orphaned/", ep.episode_id, exc)
                continue
            out = _Outgoing(end_seq=ep.end_seq, content_hash=end["content_hash"], ended_mono=time.monotonic())
            out.frames = {s: _Frame() for s in ep.seqs}
            self._outgoing[ep.episode_id] = out

    def _run(self) -> None:
        sock = _new_socket(self._ctx, self.config)
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
            log.exception("bridge client thread crashed")
            raise
        finally:
            sock.disable_monitor()
            monitor.close(0)
            sock.close(0)

    def _on_monitor(self, event: dict) -> None:
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self.error = (f"bridge {self.config.endpoint} refused our CURVE key (status {event['value']}): "
                          "is this robot's public key in the bridge allowlist?")
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

    def _do(self, cmd: tuple) -> None:
        """Spool what add_step/end handed over (background thread)."""
        kind = cmd[0]
        if kind == "notice":
            self._notices.append(cmd[1])
            return
        if kind == "end":
            self._close_episode(*cmd[1:])
            return
        _, eid, seq = cmd[:3]
        if eid in self._broken:
            return
        try:
            if kind == "frame":
                self._spool_frame(eid, seq, cmd[3], cmd[4])
            else:
                frame = protocol.encode("ep_chunk", episode_id=eid, seq=seq,
                                        steps=protocol.steps_to_chunk(cmd[3], cmd[4]))
                self._spool_frame(eid, seq, frame, False)
        except OSError as exc:  # disk full, read-only spool: the episode cannot be delivered whole
            self._broken.add(eid)
            self.counters["spool_errors"] += 1
            self.error = f"spool write failed for episode {eid}: {exc}"
            log.error(self.error)

    def _close_episode(self, meta: EpisodeMeta, steps: list[StepRecord], outcome: EpisodeOutcome, seq: int,
                       done: _Done) -> None:
        eid = meta.episode_id
        try:
            if eid in self._broken:
                raise OSError(self.error or "spool write failed")
            digest = content_hash(Episode.from_steps(meta, steps, outcome))
            frame = protocol.encode(
                "ep_end", episode_id=eid, seq=seq, outcome=outcome_to_dict(outcome),
                num_steps=len(steps), content_hash=digest, ended_at=time.time())
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
        self.spool.write(eid, seq, frame, is_end=is_end)
        with self._lock:
            self._outgoing.setdefault(eid, _Outgoing()).frames[seq] = _Frame()

    def _backoff(self, attempts: int) -> float:
        return min(self.config.ack_timeout_s * 2 ** max(0, attempts - 1), self.config.max_backoff_s)

    def _send_due(self, sock: zmq.Socket) -> None:
        now = time.monotonic()
        if not self._welcomed.is_set():
            if now >= self._hello_next:
                hello = protocol.encode(
                    "hello", robot_id=self.config.robot_id, policy_version="", config_hash=self.config.config_hash,
                    role="stream", open_episodes=list(self._outgoing))
                try:
                    sock.send(hello, zmq.NOBLOCK)
                    self._hello_attempts += 1
                    self._hello_next = now + self._backoff(self._hello_attempts)
                except zmq.Again:
                    self._hello_next = now + 0.05
            return
        if now >= self._stats_next:  # robot-side counters (retries...) for the fleet status
            self._stats_next = now + self.config.stats_every_s
            with self._lock:
                counters = {k: int(v) for k, v in self.counters.items()}
                spooled = len(self._outgoing)
            self._notices.append(protocol.encode("robot_stats", counters=counters, spooled_episodes=spooled))
        while self._notices:
            try:
                sock.send(self._notices[0], zmq.NOBLOCK)
            except zmq.Again:
                break
            self._notices.pop(0)
        with self._lock:
            in_flight = sum(1 for o in self._outgoing.values() for f in o.frames.values()
                            if f.attempts and not f.acked)
            due = [(eid, seq, f) for eid, o in self._outgoing.items() for seq, f in sorted(o.frames.items())
                   if not f.acked and f.next_send <= now]
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
            msg = protocol.decode(data, max_bytes=4 * self.config.max_frame_bytes, allowed=protocol.BRIDGE_TYPES)
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
                    log.error("bridge committed %s with hash %s, ours is %s", msg["episode_id"],
                              msg["content_hash"], out.content_hash)
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
        log.error("bridge error %s%s: %s", code, f" on {eid}" if eid else "", text)
        if code == "no_session":
            self._welcomed.clear()
            self._hello_next = 0.0
        elif code in FATAL_CODES or msg["fatal"]:
            self.error = f"bridge refused robot {self.config.robot_id}: {text}"
            self._welcomed.clear()
            self._hello_next = time.monotonic() + self.config.max_backoff_s
        elif code in REJECT_CODES and out is not None and eid:
            self.error = f"bridge rejected episode {eid}: {text}"
            del self._outgoing[eid]
            self.spool.set_aside(eid, "rejected")
            self.counters["episodes_rejected"] += 1
        # anything else (busy, too_many_open): frames stay unacked and are resent with backoff

    # --- policy fetch (caller's thread, its own socket) ----------------------------------------------------

    def _request(self, msg: bytes, timeout: float) -> dict[str, Any]:
        try:
            return self._request_once(msg, timeout)
        except _NoSession:  # the bridge restarted since our hello: say hello again, once
            return self._request_once(msg, timeout)

    def _request_once(self, msg: bytes, timeout: float) -> dict[str, Any]:
        if self._req_sock is None:
            sock = _new_socket(self._ctx, self.config)
            sock.connect(self.config.endpoint)
            self._req_sock = sock
            hello = protocol.encode("hello", robot_id=self.config.robot_id, policy_version="",
                                    config_hash=self.config.config_hash, role="policy", open_episodes=[])
            self._exchange(hello, timeout, expect="welcome")
        return self._exchange(msg, timeout)

    def _exchange(self, msg: bytes, timeout: float, expect: str | None = None) -> dict[str, Any]:
        sock = self._req_sock
        assert sock is not None
        try:
            if not sock.poll(int(timeout * 1000), zmq.POLLOUT):
                raise BridgeError(self.error or f"bridge at {self.config.endpoint} not reachable")
            sock.send(msg, zmq.NOBLOCK)
            if not sock.poll(int(timeout * 1000), zmq.POLLIN):
                raise BridgeError(self.error or f"no answer from bridge in {timeout:.1f} s")
            reply = protocol.decode(sock.recv(), max_bytes=4 * self.config.max_frame_bytes,
                                    allowed=protocol.BRIDGE_TYPES)
        except (BridgeError, zmq.ZMQError, protocol.ProtocolError) as exc:
            self._req_sock = None
            sock.close(0)  # drop any late reply with the socket
            raise exc if isinstance(exc, BridgeError) else BridgeError(f"policy channel: {exc}") from exc
        if reply["t"] == "error":
            self._req_sock = None
            sock.close(0)
            raise (_NoSession if reply["code"] == "no_session" else BridgeError)(f"bridge: {reply['message']}")
        if expect and reply["t"] != expect:
            raise BridgeError(f"expected {expect} from bridge, got {reply['t']}")
        return reply

    def latest_policy_info(self) -> PolicyInfo | None:
        """Ask the bridge which policy is newest (BridgeError if it cannot be reached)."""
        reply = self._request(protocol.encode("policy_query", current_version=""), self.config.policy_timeout_s)
        if reply["t"] != "policy_info":
            raise BridgeError(f"expected policy_info, got {reply['t']}")
        return PolicyInfo.from_dict(reply["info"]) if reply["info"] else None

    def fetch_policy_if_newer(self, current_version: str | None) -> LocalPolicy | None:
        """At an episode boundary: the newest verified policy if it is newer than `current_version`.

        Without prefetch this asks the bridge and downloads (chunked) now; with
        `policy_prefetch_s` > 0 a background thread has already downloaded it and
        this call only looks at the local directory. Returns None if there is
        nothing newer, the bridge is unreachable, or the download failed its
        sha256 check (the previous policy stays in place; see `error`, `counters`).
        """
        with self._policy_lock:
            if self.config.policy_prefetch_s <= 0:
                return self._sync_newest(current_version)
            local = self.policies.local()
            if local and is_newer(local[-1].version, current_version):
                return local[-1]
            return None

    def _prefetch_loop(self) -> None:
        while not self._stop.wait(self.config.policy_prefetch_s):
            try:
                with self._policy_lock:
                    local = self.policies.local()
                    self._sync_newest(local[-1].version if local else None)
            except Exception:  # noqa: BLE001 - keep prefetching; the next round may succeed
                log.exception("policy prefetch failed")

    def _sync_newest(self, current_version: str | None) -> LocalPolicy | None:
        try:
            info = self.latest_policy_info()
        except (BridgeError, ValueError) as exc:
            log.warning("policy query failed: %s", exc)
            return None
        if info is None or not is_newer(info.version, current_version) or info.version in self.policies.bad_versions():
            return None
        have = self.policies.get(info.version)
        if have is not None:
            return have
        try:
            self._download(info)
            local = self.policies.install(info, self.policies.tmp_path)
        except PolicyHashMismatch as exc:
            self.counters["policy_rejected"] += 1
            self.error = str(exc)
            log.error("refusing policy: %s", exc)
            return None
        except (BridgeError, OSError) as exc:
            log.warning("policy download failed: %s", exc)
            self.policies.tmp_path.unlink(missing_ok=True)
            return None
        self.counters["policy_downloads"] += 1
        self.policy_ready_at[local.version] = time.time()
        return local

    def _download(self, info: PolicyInfo) -> None:
        with open(self.policies.tmp_path, "wb") as f:
            offset = 0
            while offset < info.size:
                msg = protocol.encode("policy_fetch", version=info.version, offset=offset,
                                      length=self.config.policy_chunk_bytes)
                reply = self._request(msg, self.config.policy_timeout_s)
                if reply["t"] != "policy_data" or reply["version"] != info.version or reply["offset"] != offset:
                    raise BridgeError(f"unexpected reply to policy_fetch: {reply['t']}")
                if not reply["data"]:
                    raise BridgeError(f"bridge sent no data at offset {offset} of {info.size}")
                f.write(reply["data"])
                offset += len(reply["data"])

    def rollback_policy(self, bad_version: str) -> LocalPolicy | None:
        """The actor could not load `bad_version`: never use it again, return the previous policy."""
        self.report_policy_loaded(bad_version, ok=False, message="load failed; rolled back")
        with self._policy_lock:
            return self.policies.rollback(bad_version)

    def report_policy_loaded(self, version: str, ok: bool = True, message: str = "") -> None:
        """Tell the bridge which policy this robot now runs (fleet status, publish->load latency)."""
        msg = protocol.encode("policy_loaded", version=version, ok=ok, loaded_at=time.time(), message=message)
        self._put(("notice", msg))  # best effort, sent by the stream thread
