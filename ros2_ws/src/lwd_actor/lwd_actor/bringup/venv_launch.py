"""Start a fleet from the venv (where `ros2 launch` is not available).

    python -m lwd_actor.bringup.venv_launch [--fleet config/fleet.yaml] [--num-robots 2]
        [--mode sim|real] [--run-dir runs/fleet] [--use-sim-time] [--duration 600]
        [--no-bridge] [--no-learner] [--data-plane local|s3-queue]
        [--set actor_params.jpeg_quality=90 ...]

It reads the same fleet description as fleet.launch.py and supervises the
same processes (see lwd_actor.bringup.supervisor). Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lwd_actor.bringup.bootstrap import NotBootstrapped, with_run_dir_defaults
from lwd_actor.bringup.data_plane import DATA_PLANES, check_ports
from lwd_actor.bringup.description import (
    FleetConfigError,
    add_fleet_file_flags,
    default_fleet_file,
    expand_fleet,
    load_fleet_yaml,
    parse_set,
)
from lwd_actor.bringup.fleet_keys import ensure_fleet_keys
from lwd_actor.bringup.supervisor import Supervisor


def build_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides = parse_set(args.set)
    if args.num_robots is not None:
        overrides.update(num_robots=args.num_robots, robots=None)
    if args.mode:
        overrides["mode"] = args.mode
    if args.run_dir:
        overrides["run_dir"] = args.run_dir
    if args.use_sim_time:
        overrides["use_sim_time"] = True
    if args.no_bridge:
        overrides.setdefault("bridge", {})["enabled"] = False
    if args.no_learner:
        overrides.setdefault("learner", {})["enabled"] = False
    if args.data_plane:
        overrides["data_plane"] = args.data_plane
    return overrides


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-robots", type=int, default=None)
    p.add_argument("--mode", choices=["sim", "real"], default=None)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--use-sim-time", action="store_true")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--no-bridge", action="store_true")
    p.add_argument("--no-learner", action="store_true")
    p.add_argument(
        "--data-plane",
        choices=DATA_PLANES,
        default=None,
        help="s3-queue: run an S3 server, a NATS queue and the coordinator here too (default: the fleet file's)",
    )
    add_fleet_file_flags(p)
    p.add_argument("--print", action="store_true", help="print the expanded processes and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        cfg = load_fleet_yaml(args.fleet or default_fleet_file())
        fleet = expand_fleet(cfg, with_run_dir_defaults(cfg, build_overrides(args)))
    except (FleetConfigError, FileNotFoundError, NotBootstrapped) as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    if args.print:
        for spec in fleet.processes:
            print(
                f"{spec.name:24s} {spec.fully_qualified_name:24s} python -m {spec.module} {' '.join(spec.args)}"
            )
        return 0
    try:
        if note := ensure_fleet_keys(fleet):
            print(f"fleet: {note}")
        if fleet.data_plane is not None:
            check_ports(fleet.data_plane.ports())
    except FleetConfigError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    failure = Supervisor(fleet).run(duration_s=args.duration)
    if failure:
        print(f"fleet: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
