"""Fleet streaming benchmark: N simulated robots -> one bridge on this machine.

    .venv/bin/python benchmarks/fleet_stream.py --robots 1 4 16 --duration 120 --episode-s 10

Each robot is a real `BridgeClient` (spool with fsync, background sender) fed at
30 Hz with three 224x224 JPEG frames + 16 joints per step; the bridge is a real
`python -m lwd_learner_bridge.server` process; a "learner" thread polls the
store's latest snapshot. A publisher puts a new policy (2 MB) into the bridge
every few seconds; robots prefetch it and swap at episode boundaries.
Robots run as threads spread over a few worker processes. Prints, per N:
sustained throughput, episodes lost, episode end -> learner-visible latency,
policy published -> verified on robot ("ready") and -> swapped at the next
episode boundary ("loaded").

Each run also prints where the CPU went (`stream_profile.py`, from /proc): the
robot workers (producers), the bridge and the learner side, per thread group, with
the seconds each spent runnable but waiting for a core, against what the machine's
cores offered; and the episode end -> learner latency cut into its stages.
`--producer-cpus 1 --bridge-cpus 0` keeps the simulated robots off the bridge's
core, to see what the bridge achieves with one core of its own. (`--producer-nice`
does little: with the kernel's autogroup scheduling the bridge, started in a
session of its own, already gets its group's share whatever the workers' nice.)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from lwd_common.episode import ActionSource, EpisodeMeta, EpisodeOutcome, Label, StepRecord
from lwd_common.policy_store import PolicyStore
from lwd_common.preprocessing import encode_jpeg
from lwd_common.store import EpisodeStore
from lwd_common.transport import BridgeClient, ClientConfig
from lwd_description.robot import CAMERA_NAMES, CONTROL_HZ, NUM_JOINTS

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stream_profile  # noqa: E402

POLICY_POLL_S = 0.1  # robots ask the bridge for a newer policy this often (profiled_worker may change it)


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def frame_pool(size: int, count: int, seed: int) -> list[bytes]:
    """Camera-like JPEGs: smooth shading, a few objects, sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    frames = []
    for _ in range(count):
        img = np.stack([120 + 80 * yy, 100 + 60 * xx, 90 + 40 * (xx + yy)], -1)
        for _ in range(4):
            cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.04, 0.15)
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            img[mask] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 7, img.shape)
        frames.append(encode_jpeg(np.clip(img, 0, 255).astype(np.uint8), quality=80))
    return frames


def robot_loop(
    robot_id: str,
    endpoint: str,
    work: Path,
    duration: float,
    episode_s: float,
    frames: list[bytes],
    results: list,
    stop_at: float,
    delay: float,
) -> None:
    time.sleep(delay)  # staggered start: episode ends of different robots do not coincide
    results.append(("started", robot_id, time.time()))
    client = BridgeClient(
        ClientConfig(
            endpoint=endpoint,
            robot_id=robot_id,
            spool_dir=str(work / robot_id),
            policy_prefetch_s=POLICY_POLL_S,
            ack_timeout_s=1.0,
        )
    )
    rng = np.random.default_rng(abs(hash(robot_id)) % 2**32)
    period = 1.0 / CONTROL_HZ
    current = ""
    k = 0
    try:
        while time.time() < stop_at:
            meta = EpisodeMeta(
                episode_id=f"{robot_id}-e{k:04d}", robot_id=robot_id, task="bench", instruction="x"
            )
            client.begin(meta)
            n = int(episode_s * CONTROL_HZ)
            t0 = time.monotonic()
            for i in range(n):
                wait = t0 + i * period - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                client.add_step(
                    StepRecord(
                        step=i,
                        stamp=time.time(),
                        images={c: frames[(i * 3 + j + k) % len(frames)] for j, c in enumerate(CAMERA_NAMES)},
                        joint_pos=rng.standard_normal(NUM_JOINTS),
                        action=rng.standard_normal(NUM_JOINTS),
                        source=ActionSource.POLICY,
                        chunk_id=i // 30,
                        policy_version=current or "none",
                    )
                )
            end_t = time.time()
            client.end(EpisodeOutcome(label=Label.SUCCESS, num_steps=n))
            results.append(("ended", meta.episode_id, end_t, time.time() - end_t))
            new = client.fetch_policy_if_newer(current)  # the episode boundary
            if new is not None:
                current = new.version
                client.report_policy_loaded(current)
                results.append(("loaded", robot_id, current, time.time()))
            k += 1
        client.wait_idle(60)
        for version, t in client.policy_ready_at.items():
            results.append(("ready", robot_id, version, t))
        results.append(("stats", robot_id, client.stats()))
    finally:
        client.close()


def worker(
    robot_ids: list[tuple[str, float]],
    endpoint: str,
    work: str,
    duration: float,
    episode_s: float,
    queue,
    start_at: float,
    image_size: int,
) -> None:
    frames = frame_pool(image_size, 24, seed=len(robot_ids))
    while time.time() < start_at:
        time.sleep(0.01)
    results: list = []
    threads = [
        threading.Thread(
            target=robot_loop,
            args=(r, endpoint, Path(work), duration, episode_s, frames, results, start_at + duration, delay),
        )
        for r, delay in robot_ids
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(results)


class _ReportingQueue:
    """Hands `worker`'s results on with a ("cpu", pid, usage) record of the worker process added."""

    def __init__(self, queue, sampler: stream_profile.ThreadSampler):
        self.queue, self.sampler = queue, sampler

    def put(self, results: list) -> None:
        self.queue.put([*results, ("cpu", os.getpid(), self.sampler.stop().as_tuple())])


def profiled_worker(nice: int, cpus: list[int] | None, policy_poll_s: float, *args) -> None:
    """`worker(*args)` at `nice`, on `cpus` (every thread it starts inherits both), its robots polling
    for policies every `policy_poll_s`, its CPU sampled per thread group from its `start_at` on
    (`stream_profile.producer_part`)."""
    global POLICY_POLL_S
    POLICY_POLL_S = policy_poll_s
    if cpus:
        os.sched_setaffinity(0, cpus)
    if nice:
        os.nice(nice)
    queue, start_at = args[5], args[6]
    sampler = stream_profile.ThreadSampler(
        os.getpid(), stream_profile.producer_part, start_at, in_process=True
    )
    worker(*args[:5], _ReportingQueue(queue, sampler), *args[6:])


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def start_data_plane(data_plane: str, tmp: Path, servers: ExitStack) -> tuple[str, list[str], dict[str, str]]:
    """The bridge's store location, its extra flags and the environment, for `local` or `s3-queue`
    (S3 on SeaweedFS + NATS JetStream + a coordinator process, stopped when `servers` closes)."""
    root_store, env = str(tmp / "bridge" / "store"), dict(os.environ)
    if data_plane != "s3-queue":
        return root_store, [], env
    from lwd_testing.nats_server import nats_jetstream
    from lwd_testing.s3_server import seaweedfs

    s3 = servers.enter_context(seaweedfs(tmp / "s3"))
    queue = servers.enter_context(nats_jetstream(tmp / "nats"))
    store_location = s3.url("lwd/bench")
    env |= s3.env()
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "lwd_learner_bridge.coordinator", "--store", store_location]
        + ["--queue", queue.url, "--log-level", "WARNING"],
        env=env,
        start_new_session=True,
    )
    servers.callback(lambda: (coordinator.terminate(), coordinator.wait(10)))
    return store_location, ["--store", store_location, "--queue", queue.url], env


def run(
    n_robots: int,
    duration: float,
    episode_s: float,
    policy_every: float,
    image_size: int,
    n_procs: int,
    stagger: bool,
    data_plane: str = "local",
    producer_nice: int = 0,
    producer_cpus: list[int] | None = None,
    bridge_cpus: list[int] | None = None,
    policy_poll_s: float = POLICY_POLL_S,
    bridge_cprofile: str = "",
) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="lwd-bench-"))
    root, endpoint = tmp / "bridge", free_endpoint()
    with ExitStack() as servers:
        store_location, plane_args, env = start_data_plane(data_plane, tmp, servers)
        profiler = ["-m", "cProfile", "-o", bridge_cprofile] if bridge_cprofile else []
        server = subprocess.Popen(
            [
                sys.executable,
                *profiler,
                "-m",
                "lwd_learner_bridge.server",
                "--root",
                str(root),
                "--bind",
                endpoint,
                "--log-level",
                "WARNING",
                *plane_args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            preexec_fn=(lambda: os.sched_setaffinity(0, bridge_cpus)) if bridge_cpus else None,
        )
        assert b"listening" in server.stdout.readline()
        bridge_log: list[bytes] = []  # read on, or a bridge that logs a lot would block on a full pipe
        log_reader = threading.Thread(target=lambda: bridge_log.extend(server.stdout), daemon=True)
        log_reader.start()
        store, policies = EpisodeStore(store_location), PolicyStore(root / "policies")
        seen: dict[str, float] = {}
        # snapshot committed -> learner read it (when one read spans several versions: the newest's)
        learner_lag: list[float] = []
        published: dict[str, float] = {}
        stop = threading.Event()

        def learner() -> None:  # what the learner sees: each new snapshot's episodes
            version = 0
            while not stop.is_set():
                new = store.changes_since(version)
                version = new.version
                now = time.time()
                for eid in new.episode_ids:
                    seen.setdefault(eid, now)
                    learner_lag.append(now - new.created_at)
                stop.wait(0.01)

        def publisher() -> None:
            step = 0
            while not stop.wait(policy_every):
                step += 1000
                info = policies.publish(os.urandom(2 << 20), training_step=step)
                published[info.version] = info.created_at

        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        ids = [f"robot{i:02d}" for i in range(n_robots)]
        delays = [(i * episode_s / n_robots if stagger else i * 0.05) for i in range(n_robots)]
        pairs = list(zip(ids, delays, strict=True))
        groups = [pairs[i::n_procs] for i in range(min(n_procs, n_robots))]
        start_at = time.time() + 3.0
        procs = [
            ctx.Process(
                target=profiled_worker,
                args=(
                    producer_nice,
                    producer_cpus,
                    policy_poll_s,
                    g,
                    endpoint,
                    str(tmp / "robots"),
                    duration,
                    episode_s,
                    queue,
                    start_at,
                    image_size,
                ),
            )
            for g in groups
        ]
        for p in procs:
            p.start()
        bridge_cpu = stream_profile.ThreadSampler(
            server.pid, stream_profile.bridge_part(server.pid), start_at
        )
        learner_cpu = stream_profile.ThreadSampler(
            os.getpid(), stream_profile.learner_part, start_at, in_process=True
        )
        machine0, load0 = stream_profile.machine_times(), os.getloadavg()
        threads = [
            threading.Thread(target=learner, name="learner"),
            threading.Thread(target=publisher, name="publisher"),
        ]
        for t in threads:
            t.start()
        results = [r for _ in procs for r in queue.get(timeout=duration + 300)]
        for p in procs:
            p.join()
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        bridge_usage, learner_usage = bridge_cpu.stop(), learner_cpu.stop()
        machine1, load1 = stream_profile.machine_times(), os.getloadavg()
        producer_usage = stream_profile.merge(
            [stream_profile.Usage.from_tuple(r[2]) for r in results if r[0] == "cpu"]
        )
        cpu_table = stream_profile.table(
            [
                (f"producers: {len(procs)} worker processes, {n_robots} robots", producer_usage),
                ("bridge process", bridge_usage),
                ("learner side (benchmark process: learner + publisher threads)", learner_usage),
            ],
            {k: machine1[k] - machine0[k] for k in machine0},
            bridge_usage.wall_s,
            len(os.sched_getaffinity(0)),
            f"load avg (1 min) {load0[0]:.1f} at start, {load1[0]:.1f} at end",
        )
        ended = {r[1]: r[2] for r in results if r[0] == "ended"}
        end_call = [r[3] for r in results if r[0] == "ended"]
        elapsed = max(ended.values()) - start_at if ended else duration
        lost = [e for e in ended if e not in seen]
        visible = [seen[e] - t for e, t in ended.items() if e in seen]
        started = {r[1]: r[2] for r in results if r[0] == "started"}

        def since_published(kind: str) -> list[float]:  # only versions published while that robot was running
            return [
                r[3] - published[r[2]]
                for r in results
                if r[0] == kind and r[2] in published and published[r[2]] >= started[r[1]]
            ]

        ready, loaded = since_published("ready"), since_published("loaded")
        stats = [r[2] for r in results if r[0] == "stats"]
        local = isinstance(store.root, Path)
        total_bytes = sum(os.path.getsize(store.path_of(e)) for e in store.ids()) if local else float("nan")
        status = json.loads((root / "status.json").read_text())
        server.send_signal(signal.SIGTERM)
        server.wait(60 if bridge_cprofile else 10)
        log_reader.join(5)
        shutil.rmtree(tmp, ignore_errors=True)
        return {
            "data_plane": "local" if local else "s3-queue",
            "robots": n_robots,
            "duration_s": duration,
            "episodes_ended": len(ended),
            "episodes_stored": len(seen),
            "episodes_lost": len(lost),
            "MB_per_s": total_bytes / 1e6 / elapsed,
            "steps_per_s": len(ended) * episode_s * CONTROL_HZ / elapsed,
            "visible_p50_s": pct(visible, 50),
            "visible_p99_s": pct(visible, 99),
            "visible_max_s": max(visible or [0]),
            "policies_published": len(published),
            "policy_ready_p50_s": pct(ready, 50),
            "policy_ready_p99_s": pct(ready, 99),
            "policy_loaded_p50_s": pct(loaded, 50),
            "policy_loaded_p99_s": pct(loaded, 99),
            "end_call_p50_s": pct(end_call, 50),
            "end_call_p99_s": pct(end_call, 99),
            "bridge_commit_p50_s": status["commit_latency_s"]["p50"],
            "bridge_commit_p99_s": status["commit_latency_s"]["p99"],
            "retries": sum(s["retries"] for s in stats),
            "bridge_duplicates": status["counters"]["duplicates_dropped"],
            "bridge_rejected": status["counters"]["rejected"],
            "bridge_counters": {
                k: status["counters"][k]
                for k in ("connections_cut", "replies_dropped", "missing_requests", "policy_chunks_served")
            },
            "committed_to_learner_p50_s": pct(learner_lag, 50),
            "committed_to_learner_p99_s": pct(learner_lag, 99),
            "cpu_table": cpu_table,
            "bridge_log": [line.decode(errors="replace").rstrip() for line in bridge_log],
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--robots", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--duration", type=float, default=120.0, help="seconds of streaming per fleet size")
    p.add_argument("--episode-s", type=float, default=10.0)
    p.add_argument("--policy-every", type=float, default=7.0)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--procs", type=int, default=4, help="worker processes hosting the robot threads")
    p.add_argument(
        "--data-plane",
        choices=["local", "s3-queue"],
        default="local",
        help="local: the bridge commits to its directory store; s3-queue: episodes in S3 (SeaweedFS), "
        "announced on NATS JetStream, committed by a coordinator process (docs/data_plane.md)",
    )
    p.add_argument(
        "--stagger",
        action="store_true",
        help="spread robot starts over one episode length (default: all start together, so "
        "episode ends arrive in bursts of N: the worst case)",
    )
    p.add_argument("--producer-nice", type=int, default=0, help="nice value of the robot worker processes")
    p.add_argument(
        "--producer-cpus", type=int, nargs="+", default=None, help="CPUs the robot worker processes may use"
    )
    p.add_argument("--bridge-cpus", type=int, nargs="+", default=None, help="CPUs the bridge process may use")
    p.add_argument(
        "--bridge-cprofile",
        default="",
        help="run the bridge under cProfile (its frame loop thread only) and write the stats here",
    )
    p.add_argument(
        "--policy-poll-s",
        type=float,
        default=POLICY_POLL_S,
        help="each robot asks the bridge for a newer policy this often (a policy_query round trip)",
    )
    args = p.parse_args()
    jpeg = frame_pool(args.image_size, 8, 0)
    placement = (
        f"producers nice {args.producer_nice} on CPUs {args.producer_cpus or 'any'}, "
        f"bridge on CPUs {args.bridge_cpus or 'any'}, robots poll for policies every {args.policy_poll_s:g} s"
    )
    print(
        f"# {os.cpu_count()} CPUs, {placement}, JPEG {args.image_size}x{args.image_size} ~{np.mean([len(f) for f in jpeg]) / 1e3:.1f} kB,"
        f" episodes {args.episode_s:.0f} s at {CONTROL_HZ:.0f} Hz, policy (2 MB) every {args.policy_every:.0f} s,"
        f" {'staggered starts' if args.stagger else 'simultaneous starts (bursts of episode ends)'}"
    )
    for n in args.robots:
        r = run(
            n,
            args.duration,
            args.episode_s,
            args.policy_every,
            args.image_size,
            args.procs,
            args.stagger,
            args.data_plane,
            args.producer_nice,
            args.producer_cpus,
            args.bridge_cpus,
            args.policy_poll_s,
            args.bridge_cprofile,
        )
        print(
            f"{r['data_plane']} N={r['robots']:>2}  {r['MB_per_s']:.2f} MB/s  {r['steps_per_s']:.0f} steps/s  "
            f"episodes ended {r['episodes_ended']} stored {r['episodes_stored']} lost {r['episodes_lost']}  "
            f"end->visible p50 {r['visible_p50_s'] * 1e3:.0f} ms p99 {r['visible_p99_s'] * 1e3:.0f} ms "
            f"(max {r['visible_max_s'] * 1e3:.0f})  policies {r['policies_published']}: published->ready "
            f"p50 {r['policy_ready_p50_s'] * 1e3:.0f} ms p99 {r['policy_ready_p99_s'] * 1e3:.0f} ms, "
            f"->loaded at boundary p50 {r['policy_loaded_p50_s']:.1f} s p99 {r['policy_loaded_p99_s']:.1f} s  "
            f"retries {r['retries']} dups {r['bridge_duplicates']} rejected {r['bridge_rejected']}",
            flush=True,
        )
        print(
            f"      breakdown: end() call (hash + spool end frame) p50 {r['end_call_p50_s'] * 1e3:.0f} ms "
            f"p99 {r['end_call_p99_s'] * 1e3:.0f} ms; bridge end frame -> committed (s3-queue: announced) p50 "
            f"{r['bridge_commit_p50_s'] * 1e3:.0f} ms p99 {r['bridge_commit_p99_s'] * 1e3:.0f} ms; "
            f"snapshot committed -> learner read it p50 {r['committed_to_learner_p50_s'] * 1e3:.0f} ms "
            f"p99 {r['committed_to_learner_p99_s'] * 1e3:.0f} ms",
            flush=True,
        )
        print("      bridge counters: " + " ".join(f"{k} {v}" for k, v in r["bridge_counters"].items()))
        print(r["cpu_table"], flush=True)
        if r["bridge_log"]:
            print(f"# bridge logged {len(r['bridge_log'])} lines, the first few:", flush=True)
            for line in r["bridge_log"][:5]:
                print(f"#   {line[:300]}", flush=True)


if __name__ == "__main__":
    main()
