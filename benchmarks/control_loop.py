"""Control-loop benchmark of the onboard actor (ROS-free path, real threads, real ONNX Runtime).

What runs, as in the node: a sensor thread converts three rgb8 camera frames and
a joint state per 1/30 s into the approximate-time synchroniser; the control
thread (`ControlLoop`, 30 Hz absolute deadlines) ticks `ActorCore` on the newest
observation; the default ONNX policy infers asynchronously on the worker thread;
the recorder JPEG-encodes every step on its thread and hands it to the sink: by
default the transport's BridgeClient streaming to a real bridge server process
(the robot's path), or `--sink directory` (a local EpisodeStore, which encodes
the whole episode in one msgpack call at its end).
Episodes of `--episode-s` seconds are started, stopped and labelled back to back.

    .venv/bin/python benchmarks/control_loop.py [--seconds 120] [--realtime-priority 0]
    .venv/bin/python benchmarks/control_loop.py --ros [--seconds 120] [--realtime-priority 10]

`--ros` measures the real node instead: fake robot (three 224x224 cameras + joints),
`lwd_actor.actor_node` and a probe as separate processes over DDS (own ROS domain,
localhost); figures are read from the actor's /diagnostics after one long episode.

Prints: tick period p50, jitter p50/p99/max (|period - 33.33 ms|), missed ticks,
chunk-boundary stalls (timeline ran dry after having had targets), inference
latency p50/p99, recorder drops. Goal: p99 jitter <= 1 ms, 0 stalls, 0 missed ticks.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from lwd_actor.core.actor import ActorConfig, ActorCore
from lwd_actor.core.control_loop import ControlLoop, set_fifo_priority
from lwd_actor.core.inference_worker import InferenceWorker
from lwd_actor.core.observation import JOINTS_INPUT, ordered_joints, rgb_image
from lwd_actor.core.policy_runtime import OnnxPolicy, RuntimeConfig
from lwd_actor.core.recorder import EpisodeRecorder
from lwd_actor.core.sync import ApproximateSync
from lwd_actor.sinks import make_sink
from lwd_common.store import EpisodeStore
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES, JointLimits
from lwd_testing.models import default_policy

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # rosutil: isolated DDS domain, process groups, cleanup
from rosutil import Procs, ros_env  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def camera_like_frame(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth shading plus sensor noise: JPEG sizes like a real camera's, not like white noise."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([120 + 80 * x, 100 + 60 * y, 90 + 50 * (x * y)], axis=-1)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def limits() -> JointLimits:
    n = len(JOINT_NAMES)
    return JointLimits(JOINT_NAMES, np.full(n, -3.0), np.full(n, 3.0), np.full(n, 3.0), np.full(n, 10.0))


def run_ros(a: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="lwd_bench_ros_"))
    policy = a.policy or str(default_policy(tmp / "default.onnx"))
    urdf = tmp / "robot.urdf"
    urdf.write_text(
        "<robot name='bench'><link name='base'/>"
        + "".join(
            f"<joint name='{n}' type='revolute'><parent link='base'/><child link='{n}_l'/>"
            f"<limit lower='-3' upper='3' velocity='3' effort='10'/></joint><link name='{n}_l'/>"
            for n in JOINT_NAMES
        )
        + "</robot>"
    )
    env = ros_env(150 + os.getpid() % 50)
    ns = ["--ros-args", "-r", "__ns:=/robot0"]
    config = REPO / "ros2_ws/src/lwd_actor/config/actor.yaml"
    probe = tmp / "probe.jsonl"
    procs = Procs(env, tmp)  # own process groups, die with this script, stopped below
    procs.python("robot", "-m", "lwd_testing.fake_robot_node", *ns, "-p", f"image_size:={a.image_size}")
    procs.python(
        "actor",
        "-m",
        "lwd_actor.actor_node",
        *ns,
        "--params-file",
        str(config),
        "-p",
        f"policy_path:={policy}",
        "-p",
        f"urdf_path:={urdf}",
        "-p",
        f"store_dir:={tmp / 'store'}",
        "-p",
        f"realtime_priority:={a.realtime_priority}",
        "-p",
        f"process_realtime_priority:={a.process_priority}",
        "-p",
        f"episode_time_limit_s:={a.seconds + 60}",
    )
    procs.python("probe", "-m", "lwd_testing.probe_node", *ns, "-p", f"out:={probe}")
    try:
        cli = [sys.executable, "-m", "lwd_actor.episode_cli", "--ns", "/robot0"]
        r = subprocess.run(
            [*cli, "--retry-s", "60", "start", "--task", "bench"], env=env, capture_output=True, text=True
        )
        if '"accepted": true' not in r.stdout:
            print("could not start an episode:", r.stdout, (tmp / "actor.log").read_text()[-2000:])
            return 1
        time.sleep(a.seconds)
        diags = [json.loads(line) for line in probe.read_text().splitlines() if '"diagnostics"' in line]
        v = diags[-1]["values"]
        subprocess.run([*cli, "stop", "--abort"], env=env, capture_output=True)
    finally:
        procs.stop_all()
    print(
        f"actor node over DDS, {a.seconds:g} s episode, {a.image_size}x{a.image_size} x3 cameras, "
        f"realtime_priority {a.realtime_priority} ({v.get('scheduling', 'SCHED_OTHER')}), "
        f"process_realtime_priority {a.process_priority}"
    )
    print(
        f"  tick period p50 {float(v['period_p50_ms']):.3f} ms; jitter p50 {float(v['jitter_p50_ms']):.3f} / "
        f"p99 {float(v['jitter_p99_ms']):.3f} / max {float(v['jitter_max_ms']):.3f} ms"
    )
    print(
        f"  missed ticks {v['missed_ticks']}; chunk-boundary stalls {v['timeline_dry_events']}; "
        f"inference p50 {float(v['inference_p50_ms']):.2f} / p99 {float(v['inference_p99_ms']):.2f} ms; "
        f"recorder dropped {v['recorder_dropped_steps']}"
    )
    print(json.dumps(v))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ros", action="store_true", help="measure the real actor node over DDS")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--episode-s", type=float, default=30.0)
    ap.add_argument("--image-size", type=int, default=224, help="camera frame size (square)")
    ap.add_argument(
        "--realtime-priority", type=int, default=0, help="SCHED_FIFO priority of the control thread"
    )
    ap.add_argument(
        "--process-priority",
        type=int,
        default=0,
        help="SCHED_FIFO priority of every thread (set before they start, as `chrt -f P` would)",
    )
    ap.add_argument("--inference-threads", type=int, default=1)
    ap.add_argument("--policy", default="", help="ONNX policy (default: lwd_testing.models.default_policy)")
    ap.add_argument(
        "--sink",
        choices=["bridge", "directory"],
        default="bridge",
        help="bridge: stream to a real bridge server process (the robot's path); "
        "directory: local EpisodeStore written at episode end",
    )
    a = ap.parse_args()
    if a.ros:
        return run_ros(a)

    if a.process_priority > 0:  # threads created from here on inherit it
        set_fifo_priority(a.process_priority)
    tmp = Path(tempfile.mkdtemp(prefix="lwd_bench_"))
    policy = OnnxPolicy(
        a.policy or default_policy(tmp / "default.onnx"), RuntimeConfig(intra_op_threads=a.inference_threads)
    )
    worker = InferenceWorker(policy)
    bridge = None
    procs = Procs(dict(os.environ), tmp)
    if a.sink == "bridge":
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        bridge = procs.python(
            "bridge", "-m", "lwd_learner_bridge.server", "--root", str(tmp / "bridge"), "--bind", endpoint
        )
        sinks = make_sink("bridge", "robot0", "", endpoint, str(tmp / "spool"))
    else:
        sinks = make_sink("directory", "robot0", str(tmp / "store"), "", "")
    recorder = EpisodeRecorder(sinks.sink, jpeg_quality=80)
    core = ActorCore(ActorConfig(episode_time_limit_s=10 * a.episode_s), limits(), recorder, policy.version)
    sync = ApproximateSync(slop_s=0.02)
    lock = threading.Lock()
    rng = np.random.default_rng(0)
    s = a.image_size
    frames = [camera_like_frame(rng, s).tobytes() for _ in range(4)]
    stop = threading.Event()
    q = np.zeros(len(JOINT_NAMES))

    def sensors() -> None:  # what the node's subscription callbacks do, at 30 Hz
        k = 0
        next_t = time.monotonic()
        while not stop.is_set():
            t = time.monotonic()
            for cam in CAMERA_NAMES:
                sync.add(cam, t, rgb_image("rgb8", s, s, 3 * s, frames[k % len(frames)]))
            sync.add(JOINTS_INPUT, t, ordered_joints(JOINT_NAMES, q.tolist()))
            k += 1
            next_t += 1 / 30
            stop.wait(max(0.0, next_t - time.monotonic()))

    def tick() -> None:
        nonlocal q
        now = time.monotonic()
        with lock:
            res = core.tick(now, sync.latest(), worker.poll())
        if res.request is not None:
            worker.submit(res.request)
        if res.command is not None:
            q = res.command

    threading.Thread(target=sensors, daemon=True).start()
    time.sleep(0.3)
    loop = ControlLoop(30.0, tick, realtime_priority=a.realtime_priority)
    loop.start()
    t_end = time.monotonic() + a.seconds
    episodes = 0
    while time.monotonic() < t_end:
        with lock:
            core.start_episode(f"robot0-bench-{episodes:04d}", "bench", "pick up the cube", time.monotonic())
        time.sleep(min(a.episode_s, max(0.0, t_end - time.monotonic())))
        with lock:
            core.stop_episode(abort=False)
            core.label_episode(success=True)
        episodes += 1
    loop.stop()
    stop.set()
    recorder.close(60)
    worker.close()
    stored = 0
    if bridge is not None:
        sinks.sink.wait_idle(60)
        sinks.closer()
        procs.stop(bridge, signal.SIGTERM)
        stored = len(EpisodeStore(tmp / "bridge" / "store").ids())
    else:
        stored = len(EpisodeStore(tmp / "store").ids())

    st = loop.stats()
    lat = np.asarray(worker.latencies_ms)
    c = core.counters
    result = {
        "seconds": a.seconds,
        "episodes": episodes,
        "image_size": s,
        "provider": policy.provider,
        "scheduling": (loop.priority_note or "SCHED_OTHER")
        + (f", all threads SCHED_FIFO {a.process_priority}" if a.process_priority > 0 else ""),
        "ticks": int(st["ticks"]),
        "period_p50_ms": st["period_p50_ms"],
        "jitter_p50_ms": st["jitter_p50_ms"],
        "jitter_p99_ms": st["jitter_p99_ms"],
        "jitter_max_ms": st["jitter_max_ms"],
        "tick_compute_p99_ms": st["tick_p99_ms"],
        "missed_ticks": int(st["missed_ticks"]),
        "core_missed_steps": c.missed_ticks,
        "chunk_boundary_stalls": core.scheduler.dry_events,
        "hold_ticks": dict(c.hold_steps),
        "policy_steps": c.policy_steps,
        "inference_p50_ms": float(np.percentile(lat, 50)),
        "inference_p99_ms": float(np.percentile(lat, 99)),
        "inferences": int(len(lat)),
        "recorded_steps": recorder.recorded_steps,
        "recorder_dropped_steps": recorder.dropped_steps,
        "sink": a.sink,
        "episodes_stored": stored,
    }
    print(
        f"control loop, {a.seconds:g} s, {episodes} episodes, {s}x{s} x3 cameras, policy on {policy.provider}, "
        f"control thread {result['scheduling']}"
    )
    print(
        f"  tick period p50 {result['period_p50_ms']:.3f} ms; jitter p50 {result['jitter_p50_ms']:.3f} / "
        f"p99 {result['jitter_p99_ms']:.3f} / max {result['jitter_max_ms']:.3f} ms"
    )
    print(
        f"  missed ticks {result['missed_ticks']}; chunk-boundary stalls {result['chunk_boundary_stalls']}; "
        f"tick compute p99 {result['tick_compute_p99_ms']:.3f} ms"
    )
    print(
        f"  inference p50 {result['inference_p50_ms']:.2f} ms, p99 {result['inference_p99_ms']:.2f} ms "
        f"({result['inferences']} chunks); recorded {result['recorded_steps']} steps, "
        f"dropped {result['recorder_dropped_steps']}; {stored}/{episodes} episodes stored via {a.sink} sink"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
