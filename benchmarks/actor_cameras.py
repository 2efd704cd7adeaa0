"""Camera load on the actor node: three 640x480 cameras at 30 Hz, raw rgb8 vs JPEG (compressed).

For each transport: the fake robot (`lwd_testing.fake_robot_node`, `pattern: texture`, so JPEG
sizes resemble a real camera's: a smooth image with sensor noise) publishes three cameras and
joint states at 30 Hz; the actor node (shipped config, directory sink, a small policy with the
cameras' 3:4 input) runs one episode of `--seconds`, a probe records its /diagnostics. Separate
processes over DDS (own ROS domain, localhost), as on a robot.

    .venv/bin/python benchmarks/actor_cameras.py [--seconds 20] [--modes raw,compressed]

Prints per transport: frames the actor took per camera per second (over the episode, from its
`frames_received_<camera>` counters), held ticks (% of the episode's control steps that held the
last command, and for what: mostly stale inputs when frames arrive late), and the recorded bytes
per step (the stored episode file / steps; JPEG frames at `jpeg_quality` 80 are nearly all of it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "actor"))  # camera_policy: a policy with a 3:4 input
sys.path.insert(0, str(REPO / "tests"))  # rosutil: isolated DDS domain, process groups, cleanup

from camera_policy import camera_policy, policy_hw  # noqa: E402

from lwd_common.store import EpisodeStore  # noqa: E402
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES  # noqa: E402
from rosutil import Procs, ros_env  # noqa: E402

HEIGHT, WIDTH = 480, 640


def write_urdf(path: Path) -> Path:
    path.write_text(
        "<robot name='bench'><link name='base'/>"
        + "".join(
            f"<joint name='{n}' type='revolute'><parent link='base'/><child link='{n}_l'/>"
            f"<limit lower='-3' upper='3' velocity='3' effort='10'/></joint><link name='{n}_l'/>"
            for n in JOINT_NAMES
        )
        + "</robot>"
    )
    return path


def diagnostics(probe: Path) -> list[dict]:
    if not probe.exists():
        return []
    lines = [json.loads(line) for line in probe.read_text().splitlines() if '"diagnostics"' in line]
    return [d for d in lines if d["name"].endswith("/actor")]


def run_mode(mode: str, seconds: float, tmp: Path, policy: Path, urdf: Path, domain: int) -> dict:
    env = ros_env(domain)
    ns = ["--ros-args", "-r", "__ns:=/robot0"]
    probe = tmp / f"probe_{mode}.jsonl"
    store_dir = tmp / f"store_{mode}"
    compressed = mode == "compressed"

    procs = Procs(env, tmp)

    def start(name: str, *args: str) -> subprocess.Popen:
        return procs.python(f"{name}_{mode}", "-m", *args)  # log: <tmp>/<name>_<mode>.log

    robot = ["-p", f"image_height:={HEIGHT}", "-p", f"image_width:={WIDTH}", "-p", "pattern:=texture"]
    try:
        start(
            "robot",
            "lwd_testing.fake_robot_node",
            *ns,
            *robot,
            "-p",
            f"compressed:={str(compressed).lower()}",
        )
        start(
            "actor",
            "lwd_actor.actor_node",
            *ns,
            "--params-file",
            str(REPO / "ros2_ws/src/lwd_actor/config/actor.yaml"),
            "-p",
            f"policy_path:={policy}",
            "-p",
            f"urdf_path:={urdf}",
            "-p",
            f"store_dir:={store_dir}",
            "-p",
            f"episode_time_limit_s:={seconds + 60}",
            "-p",
            f"image_height:={HEIGHT}",
            "-p",
            f"image_width:={WIDTH}",
            *(["-p", "compressed_cameras:=all"] if compressed else []),
        )
        start("probe", "lwd_testing.probe_node", *ns, "-p", f"out:={probe}")
        cli = [sys.executable, "-m", "lwd_actor.episode_cli", "--ns", "/robot0"]
        r = subprocess.run(
            [*cli, "--retry-s", "90", "start", "--task", "bench"], env=env, capture_output=True, text=True
        )
        if '"accepted": true' not in r.stdout:
            raise RuntimeError(
                f"could not start an episode: {r.stdout} {(tmp / f'actor_{mode}.log').read_text()[-2000:]}"
            )
        episode_id = json.loads(r.stdout.strip().splitlines()[-1])["episode_id"]
        n0 = len(diagnostics(probe))
        deadline = time.monotonic() + 10
        while len(diagnostics(probe)) <= n0 and time.monotonic() < deadline:  # first status in the episode
            time.sleep(0.1)
        first = diagnostics(probe)[-1]
        time.sleep(seconds)
        last = diagnostics(probe)[-1]
        subprocess.run([*cli, "stop", "--abort"], env=env, capture_output=True)
        store = EpisodeStore(store_dir)
        deadline = time.monotonic() + 60
        while episode_id not in store.ids() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        procs.stop_all()
    v0, v1 = first["values"], last["values"]
    dt = last["t"] - first["t"]

    def delta(key: str) -> float:
        return float(v1[key]) - float(v0[key])

    steps = delta("policy_steps") + delta("teleop_steps") + delta("hold_steps")
    holds = {}
    for key in v1:
        if key.startswith("hold_") and key != "hold_steps":
            n = int(float(v1[key]) - float(v0.get(key, 0)))
            if n:
                holds[key[len("hold_") :]] = n
    ep = store.get(episode_id)
    jpeg = sum(len(f) for cam in ep.meta.cameras for f in ep.images[cam])
    return {
        "mode": mode,
        "window_s": dt,
        "rate_hz": {cam: delta(f"frames_received_{cam}") / dt for cam in CAMERA_NAMES},
        "held_pct": 100.0 * delta("hold_steps") / steps if steps else float("nan"),
        "holds": holds,
        "steps": ep.num_steps,
        "bytes_per_step": store.path_of(episode_id).stat().st_size / max(ep.num_steps, 1),
        "jpeg_bytes_per_step": jpeg / max(ep.num_steps, 1),
        "recorder_dropped": int(v1["recorder_dropped_steps"]),
        "input_errors": int(v1["input_errors"]),
        "missed_ticks": int(delta("missed_ticks")),
        "load": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="episode length per transport")
    p.add_argument("--modes", default="raw,compressed")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON lines")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="lwd_bench_cameras_"))
    policy = camera_policy(tmp / "policy.onnx", *policy_hw(HEIGHT, WIDTH))
    urdf = write_urdf(tmp / "robot.urdf")
    print(f"three {WIDTH}x{HEIGHT} cameras at 30 Hz into the actor, {a.seconds:g} s episode per transport")
    for i, mode in enumerate(a.modes.split(",")):
        r = run_mode(mode, a.seconds, tmp, policy, urdf, 150 + (os.getpid() + i) % 50)
        rates = ", ".join(f"{cam} {hz:.1f}" for cam, hz in r["rate_hz"].items())
        holds = ", ".join(f"{k} {n}" for k, n in r["holds"].items()) or "none"
        print(
            f"{mode:>10}: frames/s {rates}; held ticks {r['held_pct']:.1f} % ({holds}); "
            f"recorded {r['bytes_per_step'] / 1024:.0f} KiB/step ({r['jpeg_bytes_per_step'] / 1024:.0f} KiB JPEG, "
            f"{r['steps']} steps); recorder drops {r['recorder_dropped']}, input errors {r['input_errors']}, "
            f"missed ticks {r['missed_ticks']} (load {r['load']:.1f})"
        )
        if a.json:
            print(json.dumps(r))
    print(f"logs in {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
