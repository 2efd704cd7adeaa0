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

import msgpack
import numpy as np
import zmq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bridgeutil import make_meta, make_steps, outcome, proc_memory  # noqa: E402

from lwd_common import codec  # noqa: E402
from lwd_common.episode import Episode, content_hash, meta_to_dict, outcome_to_dict  # noqa: E402
from lwd_common.policy_store import PolicyStore  # noqa: E402
from lwd_common.store import EpisodeStore  # noqa: E402
from lwd_common.transport import protocol  # noqa: E402
from lwd_description.robot import CAMERA_NAMES, NUM_JOINTS  # noqa: E402


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


def _hello(robot_id: str, role: str = "stream", **over: Any) -> bytes:
    fields = {
        "robot_id": robot_id,
        "policy_version": "",
        "config_hash": protocol.config_hash(),
        "role": role,
        "open_episodes": [],
        **over,
    }
    return msgpack.packb({"v": 1, "t": "hello", **fields})


def _nested(depth: int) -> dict:
    d: dict = {}
    for _ in range(depth):
        d = {"x": d}
    return d


class HostileFrames:
    """A seeded stream of hostile messages (lists of parts) for robot ids `evil_ids`."""

    def __init__(self, seed: int, evil_ids: list[str], good_ids: list[str], max_frame: int):
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.evil_ids = evil_ids
        self.good_ids = good_ids  # episode ids the good robot will use: squatting targets
        self.max_frame = max_frame
        self.counter = 0
        self.templates = self._templates()
        empty = msgpack.ExtType(codec.NDARRAY_EXT, msgpack.packb(("<f4", [0])))
        n_bomb = max(1000, min(120_000, max_frame // 12))
        self.bombs = [  # built once: they are big
            msgpack.packb(
                {
                    "v": 1,
                    "t": "ep_chunk",
                    "episode_id": f"{evil_ids[0]}-bomb",
                    "seq": 1,
                    "steps": {"step": [empty] * n_bomb},
                }
            ),
            msgpack.packb(
                {
                    "v": 1,
                    "t": "ep_chunk",
                    "episode_id": f"{evil_ids[0]}-bomb",
                    "seq": 1,
                    "steps": {"step": [[[]] * 50] * (n_bomb // 5)},
                }
            ),
            msgpack.packb(
                {
                    "v": 1,
                    "t": "hello",
                    "robot_id": evil_ids[0],
                    "policy_version": "",
                    "config_hash": protocol.config_hash(),
                    "role": "stream",
                    "open_episodes": [f"{evil_ids[0]}-{i:06d}" for i in range(max_frame // 20)],
                }
            ),
        ]

    def _episode(self, rid: str, index: int, n: int, bad_hash: bool = True) -> list[bytes]:
        meta, steps, out = make_meta(rid, 1000 + index), make_steps(n, seed=index), outcome(n, index)
        meta.episode_id = f"{rid}-x{self.counter:06d}"
        self.counter += 1
        frames = [protocol.encode("ep_begin", episode_id=meta.episode_id, seq=0, meta=meta_to_dict(meta))]
        for i in range(0, n, 10):
            frames.append(
                protocol.encode(
                    "ep_chunk",
                    episode_id=meta.episode_id,
                    seq=len(frames),
                    steps=protocol.steps_to_chunk(steps[i : i + 10], CAMERA_NAMES),
                )
            )
        digest = content_hash(Episode.from_steps(meta, steps, out))
        if bad_hash:  # never a complete valid episode: nothing hostile may end up in the store
            digest = hashlib.sha256(digest.encode()).hexdigest()
        frames.append(
            protocol.encode(
                "ep_end",
                episode_id=meta.episode_id,
                seq=len(frames),
                outcome=outcome_to_dict(out),
                num_steps=n,
                content_hash=digest,
                ended_at=1.0,
            )
        )
        return frames

    def _templates(self) -> list[bytes]:
        rid = self.evil_ids[0]
        return [
            _hello(rid),
            *self._episode(rid, 0, 25),
            protocol.encode("status_query"),
            protocol.encode("policy_query", current_version=""),
            protocol.encode("robot_stats", counters={"retries": 3}, spooled_episodes=1),
            protocol.encode("policy_fetch", version="v000001", offset=0, length=1 << 20),
        ]

    # each returns a list of message parts
    def random_bytes(self) -> list[bytes]:
        return [self.rng.randbytes(self.rng.choice([0, 1, 7, 64, 500, 4000]))]

    def mutated(self) -> list[bytes]:
        data = bytearray(self.rng.choice(self.templates))
        for _ in range(self.rng.randint(1, 6)):
            op, i = self.rng.random(), self.rng.randrange(max(1, len(data)))
            if op < 0.5 and data:
                data[i] = self.rng.randrange(256)
            elif op < 0.7:
                del data[i : i + self.rng.randint(1, 20)]
            elif op < 0.9:
                data[i:i] = self.rng.randbytes(self.rng.randint(1, 20))
            else:
                data = data[: self.rng.randrange(len(data) + 1)]
        return [bytes(data)]

    def structured(self) -> list[list[bytes]]:
        rng, rid = self.rng, self.rng.choice(self.evil_ids)
        eid = f"{rid}-s{self.counter:06d}"
        self.counter += 1
        choice = rng.randrange(22)
        end = {
            "v": 1,
            "t": "ep_end",
            "episode_id": eid,
            "num_steps": 1,
            "content_hash": "0" * 64,
            "ended_at": 1.0,
            "outcome": {"label": "success", "num_steps": 1},
        }
        if choice == 0:
            return [
                [
                    msgpack.packb(
                        {
                            **end,
                            "seq": rng.choice(
                                [2**64 - 1, 2**63, 2**31, protocol.MAX_SEQ, protocol.MAX_SEQ + 1, 2_000_000]
                            ),
                        }
                    )
                ]
            ]
        if choice == 1:
            meta = meta_to_dict(make_meta(rid, 0))
            meta.update(episode_id=eid, extra=_nested(rng.choice([17, 100, 505])))
            return [[msgpack.packb({"v": 1, "t": "ep_begin", "episode_id": eid, "seq": 0, "meta": meta})]]
        if choice == 2:
            return [[rng.choice(self.bombs)]]
        if choice == 3:  # type confusion in t / v
            v, t = rng.choice(
                [
                    (1, [1]),
                    (1, {"a": 1}),
                    (1.0, "status_query"),
                    (True, "hello"),
                    ([1], "hello"),
                    (np.array([1]), "status_query"),
                    (1, None),
                    (None, None),
                    (1, "x" * 5000),
                ]
            )
            return [[codec.packb({"v": v, "t": t})]]
        if choice == 4:  # hellos: long fields, unknown roles, other config, the monitor role
            return [
                [
                    rng.choice(
                        [
                            _hello(rid, policy_version="p" * 200_000),
                            _hello(rid, role="admin"),
                            _hello("x" * 300),
                            _hello(rid, config_hash="0" * 16),
                            _hello(rid, role="monitor"),
                            _hello(rid + "\n"),
                            _hello(rid, open_episodes=[1, None, {"a": 2}]),
                        ]
                    )
                ]
            ]
        if choice == 5:  # squat on the good robot's next episode ids
            meta = make_meta(rid, 0)
            meta.episode_id = rng.choice(self.good_ids)
            return [[protocol.encode("ep_begin", episode_id=meta.episode_id, seq=0, meta=meta_to_dict(meta))]]
        if choice == 6:  # forged copies: the same seq with other content
            frames = self._episode(rid, rng.randrange(100), 20)
            other = self._episode(rid, rng.randrange(100), 20)
            other_chunk = codec.unpackb(other[1])
            other_chunk["episode_id"] = codec.unpackb(frames[1])["episode_id"]
            return [[frames[0]], [frames[1]], [codec.packb(other_chunk)], [frames[2]], [frames[-1]]]
        if choice == 7:  # a complete episode with a wrong hash
            return [[f] for f in self._episode(rid, rng.randrange(100), rng.choice([5, 30]))]
        if choice == 8:  # never ended: buffer pressure
            return [[f] for f in self._episode(rid, rng.randrange(100), rng.choice([40, 80]))[:-1]]
        if choice == 9:
            return [
                [
                    protocol.encode(
                        "robot_stats",
                        counters={f"c{i}" * rng.randint(1, 40): i for i in range(500)},
                        spooled_episodes=2**62,
                    )
                ]
            ]
        if choice == 10:
            return [
                [
                    protocol.encode(
                        "policy_fetch",
                        version=rng.choice(["v000001", "v999999", "../x", ""]),
                        offset=rng.choice([0, -5, 2**40]),
                        length=rng.choice([1 << 22, 0, -1, 1]),
                    )
                ]
            ]
        if choice == 11:
            return [[protocol.encode("status_query")] for _ in range(5)]
        if choice == 12:  # multipart messages
            return [[b"a" * rng.randint(0, 100) for _ in range(rng.randint(2, 5))]]
        if choice == 13:  # many tiny steps in one chunk
            n = rng.choice([1000, 5000])
            chunk = {
                "step": np.arange(n, dtype=np.int64),
                "stamp": np.zeros(n),
                "source": np.zeros(n, np.int8),
                "joint_pos": np.zeros((n, NUM_JOINTS), np.float32),
                "action": np.zeros((n, NUM_JOINTS), np.float32),
                "chunk_id": np.zeros(n, np.int64),
                "policy_version": ["v"] * n,
                "images": {c: [b""] * n for c in CAMERA_NAMES},
            }
            return [[protocol.encode("ep_chunk", episode_id=eid, seq=1, steps=chunk)]]
        if choice == 14:  # bad shapes and dtypes
            chunk = codec.unpackb(self.templates[2])["steps"]
            key = rng.choice(list(chunk))
            chunk[key] = rng.choice(
                [
                    np.zeros((), np.int64),
                    np.zeros((3, 2, 2), ">f4"),
                    np.zeros(3, np.uint64),
                    [1, 2, 3],
                    {"a": b"x"},
                    "x" * 1000,
                    None,
                ]
            )
            return [[protocol.encode("ep_chunk", episode_id=eid, seq=1, steps=chunk)]]
        if choice == 15:  # replays of the same frame
            frames = self._episode(rid, rng.randrange(100), 15)
            return [[frames[rng.randrange(len(frames))]] for _ in range(10)]
        if choice == 16:  # the wrong role for the frame
            return [
                [_hello(rid, role="monitor")],
                [self.templates[1]],
                [_hello(rid, role="policy")],
                [self.templates[2]],
                [_hello(rid)],
            ]
        if choice == 17:  # ids that are no file names
            bad_id = rng.choice(
                ["../../etc/passwd", "a/b", "", ".hidden", rid + "-\n", "x" * 300, rid + "-ok\x00"]
            )
            return [[msgpack.packb({**end, "episode_id": bad_id, "seq": 1})]]
        if choice == 18:  # chunk out of range / end before chunks
            frames = self._episode(rid, rng.randrange(100), 30)
            return [[frames[-1]], [frames[1]], [frames[0]]]
        if choice == 19:  # wrong-typed fields
            return [
                [msgpack.packb({"v": 1, "t": "ep_chunk", "episode_id": eid, "seq": "1", "steps": []})],
                [
                    msgpack.packb(
                        {
                            "v": 1,
                            "t": "policy_loaded",
                            "version": 7,
                            "ok": 1,
                            "loaded_at": "now",
                            "message": b"x",
                        }
                    )
                ],
            ]
        if choice == 20:  # non-finite numbers
            return [
                [msgpack.packb({**end, "seq": 1, "ended_at": float("nan")})],
                [
                    msgpack.packb(
                        {
                            "v": 1,
                            "t": "policy_loaded",
                            "version": "v1",
                            "ok": True,
                            "loaded_at": float("inf"),
                            "message": "m" * 70_000,
                        }
                    )
                ],
            ]
        return [[_hello(rid)]]  # 21: re-hello (drops its own partials)

    def next(self) -> tuple[str, list[list[bytes]]]:
        r = self.rng.random()
        if r < 0.25:
            return "random", [self.random_bytes()]
        if r < 0.55:
            return "mutated", [self.mutated()]
        return "structured", self.structured()


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
        sock.send(_hello("probe", role="monitor"))
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
                    sock.send(_hello("probe", role="monitor"))
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
                    sock.send(_hello(f"evil{index % 4}"), zmq.NOBLOCK)
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
