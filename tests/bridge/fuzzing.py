"""Bridge fuzzing: seeded hostile frames from several peers while a real robot client streams.

Used by `tests/bridge/test_fuzz.py` (bounded: a few thousand frames) and
`benchmarks/bridge_fuzz.py` (longer). Everything runs on loopback against a real
`python -m lwd_learner_bridge.server` process. Hostile peers say hello under
their own robot ids (evil0, evil1, ...), never as the good robot: with CURVE
they could not, and without CURVE nothing can stop that (docs: threat model).
They do try everything else: random bytes, mutated valid frames, and
structured attacks (huge seqs, nested metas, array bombs, type confusion,
squatting on the good robot's episode ids, forged copies, never-ended
episodes, floods of policy and status requests they never read, multipart
messages, an unterminated raw multipart message, connection churn).

Measured while it runs: a monitor session's `status_query` round trip every
0.2 s (the bridge answers within a bound throughout), the bridge's RSS, its log
size; at the end the store must hold each good episode exactly once and
nothing else.

The hostile frames themselves (class `HostileFrames`) are in `hostile_frames.py`;
this module runs them: the good client, the probes, the peers, the result, the
server process.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bridgeutil import make_meta, make_steps, outcome, proc_memory  # noqa: E402
from hostile_frames import HostileFrames, raw_hello  # noqa: E402

from lwd_common.episode import Episode, content_hash  # noqa: E402
from lwd_common.policy_store import PolicyStore  # noqa: E402
from lwd_common.store import EpisodeStore  # noqa: E402
from lwd_common.transport import protocol  # noqa: E402


def good_client(endpoint: str, robot_id: str, spool_dir: str) -> Any:
    """The project's real robot-side client (the one import to change when the client moves)."""
    from lwd_common.transport import BridgeClient, ClientConfig

    return BridgeClient(
        ClientConfig(
            endpoint=endpoint,
            robot_id=robot_id,
            spool_dir=spool_dir,
            steps_per_chunk=10,
            ack_timeout_s=0.3,
            max_backoff_s=1.0,
            stats_every_s=0.5,
            fsync=False,
        )
    )


# --- hostile frames ---------------------------------------------------------------------------------------
# --- the run ----------------------------------------------------------------------------------------------


@dataclass
class FuzzResult:
    frames: Counter = field(default_factory=Counter)
    probe_latencies: list[float] = field(default_factory=list)
    probe_failures: int = 0
    rss_baseline: int = 0
    rss_peak: int = 0
    log_bytes: int = 0
    log_lines: int = 0
    expected: dict[str, str] = field(default_factory=dict)  # the good episodes: id -> content hash
    stored: dict[str, str] = field(default_factory=dict)  # the store afterwards
    good_idle: bool = False
    status: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.probe_latencies) * 1000
        return {
            "frames": sum(v for k, v in self.frames.items() if k != "zmtp_cuts"),
            "by_kind": dict(self.frames),
            "seconds": round(self.seconds, 1),
            "probe_ms": {
                "n": int(lat.size),
                "p50": float(np.percentile(lat, 50)) if lat.size else None,
                "p99": float(np.percentile(lat, 99)) if lat.size else None,
                "max": float(lat.max()) if lat.size else None,
            },
            "probe_failures": self.probe_failures,
            "rss_mb": {
                "baseline": round(self.rss_baseline / 1e6, 1),
                "peak": round(self.rss_peak / 1e6, 1),
                "growth": round((self.rss_peak - self.rss_baseline) / 1e6, 1),
            },
            "log": {"bytes": self.log_bytes, "lines": self.log_lines},
            "good_episodes": len(self.expected),
            "stored_episodes": len(self.stored),
            "store_exact": self.stored == self.expected,
            "good_idle": self.good_idle,
            "counters": {k: v for k, v in self.status.get("counters", {}).items() if v},
            "health": self.status.get("health", {}).get("level"),
        }


def _zmtp_unterminated(endpoint: str, stop: threading.Event, max_bytes: int) -> int:
    """Raw ZMTP peer sending 64 KiB parts with MORE forever (reconnecting when cut); returns how often cut."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    cuts, sent = 0, 0
    part = b"\x03" + struct.pack(">Q", 64 << 10) + b"z" * (64 << 10)
    while not stop.is_set() and sent < max_bytes:
        try:
            s = socket.create_connection((host, int(port)), timeout=2)
            s.sendall(b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32)
            s.recv(64)
            body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
            s.sendall(b"\x04" + bytes([len(body)]) + body)
            while not stop.is_set() and sent < max_bytes:
                s.sendall(part)
                sent += len(part)
                time.sleep(0.001)
        except OSError:
            cuts += 1
            time.sleep(0.05)
        finally:
            try:
                s.close()
            except (OSError, UnboundLocalError):
                pass
    return cuts


def run_fuzz(
    root: Path,
    endpoint: str,
    bridge_pid: int,
    log_path: Path,
    frames: int,
    seed: int,
    episodes: int,
    steps: int,
    duration_s: float,
    hostile_peers: int = 5,
    max_frame: int = 1 << 20,
    zmtp_bytes: int = 256 << 20,
    probe_every_s: float = 0.2,
    time_limit_s: float = 120.0,
) -> FuzzResult:
    """Send `frames` hostile messages from `hostile_peers` sockets, spread over about `duration_s`, while the
    good robot streams `episodes` of `steps` steps at a pace that spans the same time."""
    result = FuzzResult()
    time.sleep(0.5)
    result.rss_baseline = proc_memory(bridge_pid)["VmRSS"]
    PolicyStore(root / "policies").publish(np.random.default_rng(seed).bytes(3 << 20), training_step=1)
    gen = HostileFrames(
        seed,
        [f"evil{i}" for i in range(4)],
        [make_meta("robot0", k).episode_id for k in range(episodes)],
        max_frame,
    )
    stop = threading.Event()
    ctx = zmq.Context()

    def probe() -> None:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        sock.send(raw_hello("probe", role="monitor"))
        sock.poll(5000) and sock.recv()
        while not stop.is_set():
            t0 = time.monotonic()
            sock.send(protocol.encode("status_query"))
            if sock.poll(10_000):
                msg = protocol.decode(sock.recv(), max_bytes=1 << 26, limits=None)
                if msg["t"] == "status":
                    result.probe_latencies.append(time.monotonic() - t0)
                    result.status = msg["fleet"]
                elif msg["t"] == "error" and msg["code"] == "no_session":
                    sock.send(raw_hello("probe", role="monitor"))
                    sock.poll(5000) and sock.recv()
                else:
                    result.probe_failures += 1
            else:
                result.probe_failures += 1
            stop.wait(probe_every_s)
        sock.close(0)

    def memory() -> None:
        while not stop.is_set():
            result.rss_peak = max(result.rss_peak, proc_memory(bridge_pid)["VmRSS"])
            stop.wait(0.1)

    def good() -> None:
        client = good_client(endpoint, "robot0", str(root.parent / "good-spool"))
        try:
            for k in range(episodes):
                meta, st = make_meta("robot0", k), make_steps(steps, seed=k)
                client.begin(meta)
                for s in st:
                    client.add_step(s)
                    time.sleep(step_delay)
                client.end(outcome(steps, k))
                result.expected[meta.episode_id] = content_hash(
                    Episode.from_steps(meta, st, outcome(steps, k))
                )
            result.good_idle = client.wait_idle(60)
        finally:
            client.close()

    def hostile(index: int, count: int) -> None:
        rng = random.Random(seed * 1000 + index)
        sock = None
        reads = rng.random() < 0.5
        for i in range(count):
            if stop.is_set():
                break
            if sock is None or rng.random() < 0.01:  # connection churn
                if sock is not None:
                    sock.close(0)
                sock = ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.SNDHWM, 100)
                sock.setsockopt(zmq.RCVHWM, 2)
                sock.connect(endpoint)
                try:
                    sock.send(raw_hello(f"evil{index % 4}"), zmq.NOBLOCK)
                except zmq.Again:
                    pass
            with lock:
                kind, messages = gen.next()
            for parts in messages:
                try:
                    sock.send_multipart(parts, zmq.NOBLOCK)
                except zmq.Again:
                    continue  # our own queue is full (the bridge reads slowly): not sent, not counted
                with lock:
                    result.frames[kind] += 1
            if reads:
                while sock.poll(0):
                    sock.recv()
            time.sleep(max(0.0, t0 + (i + 1) * pace - time.monotonic()))
        if sock is not None:
            sock.close(0)

    lock = threading.Lock()
    step_delay = duration_s / max(1, episodes * steps)
    pace = duration_s / max(1, -(-frames // hostile_peers))  # seconds per message of one hostile peer
    t0 = time.monotonic()
    helpers = [threading.Thread(target=f, daemon=True) for f in (probe, memory)]
    zmtp_cuts: list[int] = []
    zmtp = threading.Thread(
        target=lambda: zmtp_cuts.append(_zmtp_unterminated(endpoint, stop, zmtp_bytes)), daemon=True
    )
    good_thread = threading.Thread(target=good, daemon=True)
    per_peer = -(-frames // hostile_peers)
    hostiles = [
        threading.Thread(target=hostile, args=(i, per_peer), daemon=True) for i in range(hostile_peers)
    ]
    for t in [*helpers, zmtp, good_thread, *hostiles]:
        t.start()
    deadline = t0 + time_limit_s
    for t in hostiles:
        t.join(max(0.0, deadline - time.monotonic()))
    good_thread.join(max(1.0, deadline + 60 - time.monotonic()))
    time.sleep(1.5)  # let the last status and robot stats land
    stop.set()
    for t in [*helpers, zmtp]:
        t.join(10)
    ctx.destroy(0)
    result.rss_peak = max(result.rss_peak, proc_memory(bridge_pid)["VmHWM"])
    result.seconds = time.monotonic() - t0
    result.frames["zmtp_cuts"] = zmtp_cuts[0] if zmtp_cuts else 0
    store = EpisodeStore(root / "store")
    result.stored = {e: hashlib.sha256(store.read_bytes(e)).hexdigest() for e in store.ids()}
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    result.log_bytes, result.log_lines = len(text.encode()), text.count("\n")
    status_path = root / "status.json"
    if status_path.exists():
        result.status = json.loads(status_path.read_text())
    return result


def start_server(
    root: Path, endpoint: str, log_path: Path, mem_limit_mb: int, *extra: str
) -> subprocess.Popen:
    """The bridge process with its address space capped; waits until it listens."""
    code = (
        "import resource, runpy, sys; limit = int(sys.argv.pop(1)); "
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit)); sys.argv[0] = 'lwd_learner_bridge.server'; "
        "runpy.run_module('lwd_learner_bridge.server', run_name='__main__')"
    )
    log = open(log_path, "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            str(mem_limit_mb << 20),
            "--root",
            str(root),
            "--bind",
            endpoint,
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "listening on" in log_path.read_text(errors="replace"):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"bridge did not start: {log_path.read_text(errors='replace')[-2000:]}")


FUZZ_LIMITS = (
    "--max-frame-bytes",
    str(1 << 20),
    "--max-episode-bytes",
    str(8 << 20),
    "--max-robot-buffered-bytes",
    str(8 << 20),
    "--max-buffered-bytes",
    str(32 << 20),
    "--max-pending-bytes",
    str(32 << 20),
)
