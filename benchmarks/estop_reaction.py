"""E-stop reaction time of the actor node, with and without a camera flood (issue 28).

For each mode: the fake robot (`lwd_testing.fake_robot_node`, compressed cameras) publishes three
small cameras and joint states at `--robot-hz` (10); the actor node (shipped config, compressed cameras recorded at
64 x 64, `hold_when_idle: true`, a small policy) runs one short episode to have a command, then holds
it; `flood` adds `tests/actor/estop_timing.py flood`: every camera also gets the slowest PNG the actor
still decodes (4096 x 4096, 16-bit RGBA, interlaced; ~0.35 s of decoding each) at `--hz` (30), so
the actor's sensor callbacks never rest and its inputs go stale. `tests/actor/estop_timing.py
press` then presses the e-stop `--presses` times (True on `estop`, then False and `actor/reset_estop`
once the commands stopped). Separate processes over DDS (own ROS domain, localhost), as on a robot.

    .venv/bin/python benchmarks/estop_reaction.py [--presses 20] [--modes idle,flood] [--hz 30]

Prints per mode, over the presses (seconds from the e-stop's publication, `time.monotonic` across
processes): latched (the actor's /diagnostics saying `estop` True, published from its e-stop
callback) and silenced (the last command the actor sent; it repeats its last command for
`estop_hold_s`, 0.5 s, then sends nothing): p50 / p99 / max; the frames per second per camera the
actor took in (its `frames_received_<camera>` counters), and the load average.
The bound (docs/actor.md "Safety behaviour"): silenced <= estop_hold_s + one control tick.
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TIMING = REPO / "tests" / "actor" / "estop_timing.py"
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))  # rosutil: isolated DDS domain, process groups, cleanup

from actor_cameras import diagnostics, write_urdf  # noqa: E402

from lwd_description.robot import CAMERA_NAMES  # noqa: E402
from lwd_testing.models import build_policy  # noqa: E402
from rosutil import Procs, ros_env  # noqa: E402

HOLD_S = 0.5  # estop_hold_s as shipped
TICK_S = 1 / 30


def run_mode(mode: str, a: argparse.Namespace, tmp: Path, policy: Path, urdf: Path, domain: int) -> dict:
    env = ros_env(domain)
    ns = ["--ros-args", "-r", "__ns:=/robot0"]
    probe = tmp / f"probe_{mode}.jsonl"
    presses = tmp / f"presses_{mode}.jsonl"
    procs = Procs(env, tmp)

    def start(name: str, *args: str) -> subprocess.Popen:
        return procs.python(f"{name}_{mode}", *args)  # log: <tmp>/<name>_<mode>.log

    try:
        start(
            "robot",
            "-m",
            "lwd_testing.fake_robot_node",
            *ns,
            "-p",
            "compressed:=true",
            "-p",
            f"rate_hz:={float(a.robot_hz)!r}",
        )
        start(
            "actor",
            "-m",
            "lwd_actor.actor_node",
            *ns,
            "--params-file",
            str(REPO / "ros2_ws/src/lwd_actor/config/actor.yaml"),
            "-p",
            f"policy_path:={policy}",
            "-p",
            f"urdf_path:={urdf}",
            "-p",
            f"store_dir:={tmp / f'store_{mode}'}",
            "-p",
            "compressed_cameras:=all",
            "-p",
            "record_height:=64",
            "-p",
            "record_width:=64",
            "-p",
            "hold_when_idle:=true",
            "-p",
            f"estop_hold_s:={HOLD_S}",
        )
        start("probe", "-m", "lwd_testing.probe_node", *ns, "-p", f"out:={probe}")
        cli = [sys.executable, "-m", "lwd_actor.episode_cli", "--ns", "/robot0"]
        r = subprocess.run(
            [*cli, "--retry-s", "90", "start", "--task", "bench"], env=env, capture_output=True, text=True
        )
        if '"accepted": true' not in r.stdout:
            raise RuntimeError(
                f"could not start an episode: {r.stdout} {(tmp / f'actor_{mode}.log').read_text()[-2000:]}"
            )
        time.sleep(1.0)
        subprocess.run([*cli, "stop", "--abort"], env=env, capture_output=True)  # then it holds (idle)
        if mode == "flood":
            start("flood", str(TIMING), "flood", "--hz", f"{a.hz:g}", *ns)
            time.sleep(5.0)  # the flood's frames fill the actor's subscription queues
        first = diagnostics(probe)[-1]
        presser = start(
            "presser",
            str(TIMING),
            "press",
            "--presses",
            str(a.presses),
            "--out",
            str(presses),
            *ns,
        )
        presser.wait(timeout=60 + 30 * a.presses)
        last = diagnostics(probe)[-1]
    finally:
        procs.stop_all()
    results = [json.loads(line) for line in presses.read_text().splitlines()] if presses.exists() else []
    bad = [r for r in results if "error" in r or r["timed_out"]]
    if bad or len(results) != a.presses:
        raise RuntimeError(f"{mode}: presses failed: {bad or results} (logs in {tmp})")
    dt = last["t"] - first["t"]
    v0, v1 = first["values"], last["values"]
    return {
        "mode": mode,
        "presses": len(results),
        "latched_s": [r["latched_s"] for r in results if r["latched_s"] is not None],
        "silenced_s": [r["silenced_s"] for r in results],
        "rate_hz": {
            cam: (float(v1[f"frames_received_{cam}"]) - float(v0[f"frames_received_{cam}"])) / dt
            for cam in CAMERA_NAMES
        },
        "input_errors": int(v1["input_errors"]),
        "load": os.getloadavg()[0],
    }


def figures(xs: list[float]) -> str:
    if not xs:
        return "none"
    x = np.asarray(xs)
    return f"{np.percentile(x, 50):.3f} / {np.percentile(x, 99):.3f} / {x.max():.3f} s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presses", type=int, default=20, help="e-stop presses per mode")
    p.add_argument("--modes", default="idle,flood")
    p.add_argument("--hz", type=float, default=30.0, help="flood: frames per second per camera")
    p.add_argument(
        "--robot-hz",
        type=float,
        default=10.0,
        help="the fake robot's camera and joint rate (10: nearly every frame the actor takes is a flood frame)",
    )
    p.add_argument("--json", action="store_true", help="also print the figures as JSON lines")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="lwd_bench_estop_"))
    policy = build_policy(tmp / "policy.onnx")
    urdf = write_urdf(tmp / "robot.urdf")
    print(
        f"e-stop reaction: {a.presses} presses per mode, estop_hold_s {HOLD_S:g}, bound "
        f"{HOLD_S + TICK_S:.3f} s (hold + one tick); flood: 4096x4096 16-bit interlaced PNGs at {a.hz:g} Hz "
        "per camera"
    )
    for i, mode in enumerate(a.modes.split(",")):
        r = run_mode(mode, a, tmp, policy, urdf, 150 + (os.getpid() + i) % 50)
        rates = ", ".join(f"{cam} {hz:.1f}" for cam, hz in r["rate_hz"].items())
        over = sum(s > HOLD_S + TICK_S for s in r["silenced_s"])
        print(
            f"{mode:>6}: latched p50/p99/max {figures(r['latched_s'])}; silenced p50/p99/max "
            f"{figures(r['silenced_s'])} ({over} of {r['presses']} over the bound); frames/s into the actor "
            f"{rates}; input errors {r['input_errors']} (load {r['load']:.1f})"
        )
        if a.json:
            print(json.dumps(r))
    print(f"logs in {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
