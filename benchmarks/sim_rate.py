"""How fast one simulated robot runs on this machine: physics, control steps, rendering, ROS-free episodes.

    .venv/bin/python benchmarks/sim_rate.py [--sizes 64 96 128 224] [--seconds 3]

Prints, per robot and single-threaded: control steps/s (10 physics steps each),
rendered frames/s per image size (3 cameras = 3 frames), a control+camera step
rate at 30 Hz cameras, and from it how many robots one core carries in real time.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from lwd_common.preprocessing import encode_jpeg  # noqa: E402
from lwd_sim.expert import DEMO, ScriptedExpert  # noqa: E402
from lwd_sim.sim import SUBSTEPS, G1Sim, SimConfig  # noqa: E402
from lwd_sim.tasks import get_task  # noqa: E402


def timed(fn, seconds: float) -> tuple[float, float]:
    """(calls per wall second, CPU seconds per call summed over all threads) of fn() over about `seconds`."""
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - t0), (time.process_time() - c0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 224])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--ros", action="store_true", help="also measure the sim_robot ROS node's CPU share")
    args = ap.parse_args()
    print(
        f"MUJOCO_GL={os.environ['MUJOCO_GL']}  cpu_count={os.cpu_count()}  "
        f"load average {os.getloadavg()[0]:.1f} (above the core count the node figures undercount: "
        "a starved node ticks less often)"
    )

    sim = G1Sim(SimConfig(64, 64))
    task = get_task("grocery_pick_place")
    rng = np.random.default_rng(0)
    inst = task.sample(rng)
    inst.reset_sim(sim)
    expert = ScriptedExpert(sim, inst, DEMO, rng)

    def control_step() -> None:
        nonlocal expert
        sim.apply(expert.act())
        if inst.evaluate(sim).success or sim.steps > 280:
            inst.reset_sim(sim)
            expert = ScriptedExpert(sim, inst, DEMO, rng)

    ctrl, ctrl_cpu = timed(control_step, args.seconds)
    print(
        f"physics+expert: {ctrl:8.0f} control steps/s = {ctrl * SUBSTEPS:8.0f} physics steps/s "
        f"= {ctrl / 30:6.1f}x real time (no rendering), {1e3 * ctrl_cpu:.3f} ms CPU/step"
    )
    sim.close()

    for size in args.sizes:
        s = G1Sim(SimConfig(size, size))
        inst.reset_sim(s)
        s.render()  # renderer start-up not counted
        sets, set_cpu = timed(s.render, args.seconds)
        img = s.render()
        _, jpeg_cpu = timed(lambda img=img: [encode_jpeg(i, 85) for i in img], 1.0)
        # One robot at 30 Hz control with three cameras at 30 Hz: CPU seconds per simulated second.
        cpu_per_sim_s = 30 * (ctrl_cpu + set_cpu + jpeg_cpu)
        print(
            f"{size:4d}x{size:<4d}: {3 * sets:6.0f} frames/s wall, {1000 * set_cpu / 3:5.2f} ms CPU/frame, "
            f"jpeg {1000 * jpeg_cpu / 3:5.2f} ms/frame; robot with 30 Hz cameras needs "
            f"{cpu_per_sim_s * 100:5.1f}% of a core -> {1 / cpu_per_sim_s:5.1f} robots/core in real time"
        )
        s.close()
    if args.ros:
        for size in args.sizes:
            share = ros_node_cpu(size, max(5.0, args.seconds))
            print(
                f"sim_robot node {size}x{size}, 30 Hz joints + 3 cameras: {share * 100:5.1f}% of a core "
                f"-> {1 / share:4.1f} robots/core"
            )


def ros_node_cpu(size: int, seconds: float) -> float:
    """CPU share of one `sim_robot` process (publishing everything at 30 Hz) over `seconds` of wall time."""
    import subprocess
    import sys

    env = dict(
        os.environ, ROS_DOMAIN_ID=str(150 + os.getpid() % 50), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lwd_sim.sim_robot_node",
            "--ros-args",
            "-p",
            f"image_width:={size}",
            "-p",
            f"image_height:={size}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    try:
        time.sleep(4.0)  # start-up (imports, model compile, DDS discovery) not counted
        c0, t0 = cpu(), time.monotonic()
        time.sleep(seconds)
        return (cpu() - c0) / (time.monotonic() - t0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
