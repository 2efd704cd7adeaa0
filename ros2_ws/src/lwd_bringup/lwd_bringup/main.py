"""The main job: a simulated fleet learning online, on one machine (`./lwd fleet`).

1. Bootstrap (only what is missing under --run-dir): generate an offline buffer
   with the simulator's scripted expert, pretrain the learner on it offline
   (BC, then DIVL + QAM), and publish that policy as the fleet's first version.
2. Start the fleet from the shared description: bridge, online learner, and per
   robot a simulator, the actor and a simulated operator who intervenes and labels.
3. Show live progress: episodes, success rate per task, interventions, policy
   version per robot, bridge latencies, learner step.
4. On exit (Ctrl-C or --duration), write plots to <run-dir>/plots.

Runs are resumable: a second `./lwd fleet` reuses the buffer, the offline
checkpoint and the online learner's checkpoints in the same run directory.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from lwd_bringup.description import FleetConfigError, expand_fleet, load_fleet_yaml
from lwd_bringup.monitor import FleetMonitor
from lwd_bringup.supervisor import Supervisor
from lwd_bringup.venv_launch import default_fleet_file, parse_set
from lwd_common.policy_store import PolicyStore
from lwd_common.store import EpisodeStore


def log(msg: str) -> None:
    print(f"[lwd] {msg}", flush=True)


def run_step(title: str, argv: list[str]) -> None:
    """Run one bootstrap step in the foreground (it draws its own progress bar)."""
    log(f"{title}: {' '.join(argv[2:])}")
    start = time.monotonic()
    rc = subprocess.call(argv)
    if rc != 0:
        raise SystemExit(f"[lwd] {title} failed (exit {rc}); fix the error above and run again")
    log(f"{title}: done in {time.monotonic() - start:.0f} s")


def bootstrap(args: argparse.Namespace, run_dir: Path, bridge_root: Path) -> tuple[Path, Path]:
    """Make sure an offline buffer, an offline checkpoint and a published policy exist."""
    py = sys.executable
    offline_store = run_dir / "offline_store"
    offline_run = run_dir / "offline_learner"
    if EpisodeStore(offline_store).latest_snapshot() is None:
        run_step("generating offline data", [
            py, "-m", "lwd_sim.generate_offline", "--out", str(offline_store),
            "--episodes", str(args.offline_episodes), "--image-size", str(args.image_size),
            "--seed", str(args.seed), "--tasks", *args.tasks])
    if not (offline_run / "policy.onnx").exists():
        run_step("offline pretraining (BC, then DIVL + QAM)", [
            py, "-m", "lwd_learner.cli", "offline", "--store", str(offline_store), "--out", str(offline_run),
            "--bc-steps", str(args.bc_steps), "--rl-steps", str(args.offline_rl_steps),
            "--set", f"train.encoder_steps={args.encoder_steps}",
            "--image-size", str(args.image_size), str(args.image_size), "--seed", str(args.seed)])
    policies = PolicyStore(bridge_root / "policies")
    if policies.latest() is None:
        info = policies.publish((offline_run / "policy.onnx").read_bytes(), training_step=0,
                                extra={"source": "offline pretraining"})
        log(f"published the offline policy as {info.version} (sha256 {info.sha256[:12]})")
    return offline_store, offline_run


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="./lwd fleet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fleet", type=Path, default=None, help="fleet description YAML (default: lwd_bringup's config/fleet.yaml)")
    p.add_argument("--num-robots", type=int, default=2)
    p.add_argument("--run-dir", type=Path, default=Path("runs/fleet"))
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--tasks", nargs="+", default=["can_to_bin"], help="simulated tasks the fleet works on")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--offline-episodes", type=int, default=60)
    p.add_argument("--encoder-steps", type=int, default=500,
                   help="BC steps that train the image encoder; later steps train the heads on cached features")
    p.add_argument("--bc-steps", type=int, default=8000, help="BC steps in all (encoder steps included)")
    p.add_argument("--offline-rl-steps", type=int, default=1000)
    p.add_argument("--publish-every", type=int, default=50, help="online learner steps between policies")
    p.add_argument("--status-every", type=float, default=10.0, help="seconds between progress reports")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a fleet field, e.g. actor_params.jpeg_quality=90")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    run_dir = args.run_dir.resolve()
    bridge_root = run_dir / "bridge"
    offline_store, offline_run = bootstrap(args, run_dir, bridge_root)
    online_run = run_dir / "online_learner"
    overrides = parse_set(args.set)
    robots = []
    for i in range(args.num_robots):  # robots cycle through the tasks
        task = args.tasks[i % len(args.tasks)]
        robots.append({"id": f"robot{i}", "params": {
            "sim_robot": {"task": task, "image_width": args.image_size, "image_height": args.image_size},
            "sim_operator": {"task": task}}})
    overrides.update(
        robots=robots, run_dir=str(run_dir),
        bridge={**overrides.get("bridge", {}), "enabled": True, "root": str(bridge_root)},
        learner={"enabled": True, "args": [
            "--out", str(online_run), "--init", str(offline_run), "--offline-store", str(offline_store),
            "--publish-every", str(args.publish_every), "--image-size", str(args.image_size),
            str(args.image_size), "--no-progress"]},
    )
    # Robots start on the offline policy and fetch newer ones from the bridge at episode boundaries.
    overrides.setdefault("actor_params", {}).setdefault("policy_path", str(offline_run / "policy.onnx"))
    try:
        fleet = expand_fleet(load_fleet_yaml(args.fleet or default_fleet_file()), overrides)
    except (FleetConfigError, FileNotFoundError) as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    monitor = FleetMonitor(bridge_root, online_run, fleet.robot_ids)
    log(f"starting {len(fleet.processes)} processes for {len(fleet.robot_ids)} simulated robots; "
        f"Ctrl-C stops; logs in {run_dir / 'logs'}")
    Supervisor(fleet).run(duration_s=args.duration, on_tick=lambda: print(monitor.report(), flush=True),
                          tick_interval_s=args.status_every)
    print(monitor.report(), flush=True)
    for path in monitor.write_plots(run_dir / "plots"):
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
