"""Soak of the S3 + queue data plane with faults injected on a schedule: is anything lost or duplicated?

    ./lwd py benchmarks/data_plane_soak.py [--robots 16] [--duration 3600] [--fault-every 60]

Starts, on loopback: SeaweedFS (S3), NATS JetStream, the bridge (`--store s3://... --queue ...`), the
coordinator, and a learner-side reader process (`StoreReader`, the learner's own reader, writing
each episode it reads to a file and resuming from its last version after a restart). `--robots`
real `BridgeClient`s (benchmarks/fleet_stream.py's robots: three 224x224 JPEG cameras, 30 Hz,
`--episode-s` episodes, policy prefetch) stream for `--duration` seconds while a publisher plays the
learner: every 7 s it publishes a 2 MB policy into its own policy store and feeds it to the bridge
through S3 and the queue (`lwd_common.policy_feed`, as `lwd_learner.cli online --queue` does). The
first worker's robots reach the bridge through a TCP link the soak can cut. Every `--fault-every`
seconds the next of bridge, coordinator, queue server, S3 server and reader is killed with SIGKILL
and restarted `--down-s` later, or that link is cut for as long (every connection dropped, new ones
refused): a network cut of those robots. Faults stop 60 s before the end. Then the robots drain
their spools and the script waits until the snapshot holds what they produced.

Prints produced (episodes the robots ended), stored (objects in S3), committed (ids in the last
snapshot; duplicates), read (by the reader; duplicates), the faults, and the paper's Table VI
latencies: episode -> learner (robot's episode end -> read by the reader) and model -> actor
(policy published -> loaded by a robot at its episode boundary), P50 / P99.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleet_stream import free_endpoint, pct, worker  # noqa: E402

from lwd_common.policy_feed import PolicyFeed  # noqa: E402
from lwd_common.policy_store import PolicyStore  # noqa: E402
from lwd_common.store import EpisodeStore  # noqa: E402
from lwd_testing.nats_server import NatsJetStream  # noqa: E402
from lwd_testing.s3_server import SeaweedS3  # noqa: E402


def reader_main(store: str, out: str) -> None:
    """The learner's reader in a process of its own: append `id seen_at version` per episode read."""
    from lwd_learner.replay import StoreReader

    path = Path(out)
    reader = StoreReader(store)
    if path.exists():  # resume after a kill, like a learner restarting from its checkpoint
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
        reader.snapshot_version = max((int(parts[2]) for parts in lines if len(parts) == 3), default=0)
    with path.open("a") as f:
        while True:
            try:
                for e in reader.poll():
                    f.write(f"{e.meta.episode_id} {time.time():.6f} {reader.snapshot_version}\n")
                f.flush()
            except Exception as exc:  # noqa: BLE001 - the store is down: try again
                print(f"reader: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                time.sleep(1.0)
            time.sleep(0.05)


class CuttableLink:
    """A TCP forwarder between some robots and the bridge: `kill` drops every connection and refuses
    new ones until `start` (the same interface as a `Service`, so the injector treats it as one)."""

    def __init__(self, target: str):
        host, port = target.removeprefix("tcp://").rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.up = threading.Event()
        self.up.set()
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            robot_side, _ = self.listener.accept()
            if not self.up.is_set():
                robot_side.close()  # the network is cut: nothing gets through
                continue
            try:
                bridge_side = socket.create_connection(self.target, timeout=5)
            except OSError:
                robot_side.close()
                continue
            with self.lock:
                self.open += [robot_side, bridge_side]
            for src, dst in ((robot_side, bridge_side), (bridge_side, robot_side)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        with self.lock:
            if sock in self.open:
                self.open.remove(sock)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.up.clear()
        with self.lock:
            cut = list(self.open)
        for sock in cut:
            self._close(sock)

    def start(self) -> None:
        self.up.set()


class Service:
    """A process the soak can kill -9 and start again with the same command."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.argv, self.env, self.log_dir = name, argv, env, log_dir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--robots", type=int, default=16)
    p.add_argument("--duration", type=float, default=3600.0, help="seconds of streaming")
    p.add_argument("--episode-s", type=float, default=10.0)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--procs", type=int, default=4, help="worker processes hosting the robot threads")
    p.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults (0: none)")
    p.add_argument("--down-s", type=float, default=5.0, help="seconds a killed process stays down")
    p.add_argument("--reader", nargs=2, metavar=("STORE", "OUT"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.reader:
        reader_main(*a.reader)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="lwd-soak-"))
    s3, queue = SeaweedS3(tmp / "s3"), NatsJetStream(tmp / "nats")
    services: dict[str, Service] = {}
    try:
        return soak(a, tmp, s3, queue, services)
    finally:  # whatever happened: nothing left running (a no-op for what the soak already stopped)
        for s in services.values():
            s.kill()
        queue.kill()
        s3.kill()


def soak(
    a: argparse.Namespace, tmp: Path, s3: SeaweedS3, queue: NatsJetStream, services: dict[str, Service]
) -> int:
    s3.start()
    queue.start()
    url = s3.url("lwd/soak")
    env = {**os.environ, **s3.env(), "PYTHONUNBUFFERED": "1"}
    os.environ.update(s3.env())
    endpoint, root, seen_file = free_endpoint(), tmp / "bridge", tmp / "read.txt"
    py = sys.executable
    services |= {
        "bridge": Service(
            "bridge",
            [py, "-m", "lwd_learner_bridge.server", "--root", str(root), "--bind", endpoint]
            + ["--store", url, "--queue", queue.url, "--log-level", "WARNING"],
            env,
            tmp,
        ),
        "coordinator": Service(
            "coordinator",
            [
                py,
                "-m",
                "lwd_learner_bridge.coordinator",
                "--store",
                url,
                "--queue",
                queue.url,
                "--log-level",
                "WARNING",
            ],
            env,
            tmp,
        ),
        "reader": Service("reader", [py, __file__, "--reader", url, str(seen_file)], env, tmp),
    }
    for s in services.values():
        s.start()
    time.sleep(3.0)
    faults: list[tuple[float, str]] = []
    stop = threading.Event()
    published: dict[str, float] = {}
    start_at = time.time() + 5.0

    def publisher() -> None:  # the learner's side of the policy feed
        policies, step = PolicyStore(tmp / "learner_policies"), 0
        feed = PolicyFeed(policies, url, queue.url)
        try:
            while not stop.wait(7.0):
                step += 1000
                info = policies.publish(os.urandom(2 << 20), training_step=step)
                published[info.version] = info.created_at
                feed.offer(info.version)  # a store or queue that is down: pending until the next one
        finally:
            feed.close()

    def injector() -> None:
        rotation = ["bridge", "coordinator", "queue", "s3", "reader", "network"]
        k = 0
        while a.fault_every > 0 and not stop.wait(a.fault_every):
            if time.time() > start_at + a.duration - 60:
                break
            name = rotation[k % len(rotation)]
            k += 1
            faults.append((time.time() - start_at, name))
            what = "cut the first worker's robots off" if name == "network" else "kill -9"
            print(f"[soak] {faults[-1][0]:7.1f} s: {what} {name}", flush=True)
            target = {"queue": queue, "s3": s3, "network": link}.get(name) or services[name]
            target.kill()
            time.sleep(a.down_s)
            target.start()
        # the servers restarted here die with the thread that started them (lwd_common.process): stay
        stop.wait()

    link = CuttableLink(endpoint)
    ctx = mp.get_context("spawn")
    results_q = ctx.Queue()
    ids = [(f"robot{i:02d}", i * 0.05) for i in range(a.robots)]
    groups = [ids[i :: a.procs] for i in range(min(a.procs, a.robots))]
    procs = [
        ctx.Process(
            target=worker,
            args=(
                g,
                link.endpoint if k == 0 else endpoint,
                str(tmp / "robots"),
                a.duration,
                a.episode_s,
                results_q,
                start_at,
                a.image_size,
            ),
        )
        for k, g in enumerate(groups)
    ]
    for pr in procs:
        pr.start()
    threads = [threading.Thread(target=publisher), threading.Thread(target=injector)]
    for t in threads:
        t.start()
    results = [r for _ in procs for r in results_q.get(timeout=a.duration + 900)]
    for pr in procs:
        pr.join()
    ended = {r[1]: r[2] for r in results if r[0] == "ended"}
    store = EpisodeStore(url)
    deadline = time.time() + 180
    while time.time() < deadline:
        snap = store.latest_snapshot()
        if snap and set(ended) <= set(snap.episode_ids) and seen_file.exists():
            read_ids = {ln.split()[0] for ln in seen_file.read_text().splitlines() if ln.strip()}
            if set(ended) <= read_ids:
                break
        time.sleep(1.0)
    snap = store.latest_snapshot()
    committed = list(snap.episode_ids) if snap else []
    lines = [ln.split() for ln in seen_file.read_text().splitlines() if ln.strip()]
    read = Counter(parts[0] for parts in lines)
    first_seen: dict[str, float] = {}
    for parts in lines:
        first_seen.setdefault(parts[0], float(parts[1]))
    latency = [first_seen[e] - t for e, t in ended.items() if e in first_seen]
    loaded = [r[3] - published[r[2]] for r in results if r[0] == "loaded" and r[2] in published]
    stored = store.ids()
    stop.set()  # only now: servers the injector restarted die with its thread
    for t in threads:
        t.join()
    for s in services.values():
        s.kill(signal.SIGTERM)
    queue.kill(signal.SIGTERM)
    s3.kill(signal.SIGTERM)
    report = {
        "robots": a.robots,
        "duration_s": a.duration,
        "produced": len(ended),
        "stored": len(stored),
        "committed": len(set(committed)),
        "committed_duplicates": len(committed) - len(set(committed)),
        "read": len(read),
        "read_duplicates": sum(c - 1 for c in read.values()),
        "lost": len(set(ended) - set(committed)),
        "faults": [f"{t:.0f}s {n}" for t, n in faults],
        "episode_to_learner_p50_s": pct(latency, 50),
        "episode_to_learner_p99_s": pct(latency, 99),
        "model_to_actor_p50_s": pct(loaded, 50),
        "model_to_actor_p99_s": pct(loaded, 99),
        "policies_published": len(published),
    }
    print(
        f"{a.robots} robots, {a.duration:.0f} s, {len(faults)} faults (kill -9 or link cut, {a.down_s:.0f} s down): "
        f"produced {report['produced']} stored {report['stored']} committed {report['committed']} "
        f"(duplicates {report['committed_duplicates']}) read {report['read']} (duplicates "
        f"{report['read_duplicates']}) lost {report['lost']}; episode->learner p50 "
        f"{report['episode_to_learner_p50_s']:.2f} s p99 {report['episode_to_learner_p99_s']:.2f} s; "
        f"model->actor p50 {report['model_to_actor_p50_s']:.1f} s p99 {report['model_to_actor_p99_s']:.1f} s"
    )
    print(json.dumps(report))
    print(f"logs in {tmp}")
    return 0 if report["lost"] == 0 and report["committed_duplicates"] == 0 else 1


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
