"""The main job: a simulated fleet learning online, on one machine (`./lwd fleet`).

1. Bootstrap (only what is missing under --run-dir): generate an offline buffer
   with the simulator's scripted expert, pretrain the learner on it offline
   (BC, then DIVL + QAM), and publish that policy as the fleet's first version.
2. Start the fleet from the shared description: bridge, online learner, and per
   robot a simulator, the actor and a simulated operator who intervenes and labels.
   With --data-plane s3-queue also an S3 server (SeaweedFS), a NATS JetStream
   queue and the coordinator, all on this machine: episodes go to S3 through
   the queue instead of the bridge's directory (docs/fleet.md).
3. Show live progress: episodes, success rate per task, interventions, policy
   version per robot, bridge latencies, learner step.
4. On exit (Ctrl-C or --duration), write plots to <run-dir>/plots.

Runs are resumable: a second `./lwd fleet` reuses the buffer, the offline
checkpoint and the online learner's checkpoints in the same run directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lwd_actor.bringup.bootstrap import (
    add_settings_flags,
    bootstrap,
    fleet_run_overrides,
    log,
    run_dir_layout,
    settings_overrides,
)
from lwd_actor.bringup.data_plane import DATA_PLANES, check_ports
from lwd_actor.bringup.description import (
    FleetConfigError,
    deep_merge,
    default_fleet_file,
    expand_fleet,
    load_fleet_yaml,
)
from lwd_actor.bringup.fleet_keys import ensure_fleet_keys
from lwd_actor.bringup.monitor import FleetMonitor
from lwd_actor.bringup.settings import run_settings
from lwd_actor.bringup.supervisor import Supervisor


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="./lwd fleet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--num-robots", type=int, default=None, help="simulated robots (default: the fleet file's)"
    )
    p.add_argument("--run-dir", type=Path, default=Path("runs/fleet"))
    p.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)"
    )
    p.add_argument("--status-every", type=float, default=10.0, help="seconds between progress reports")
    p.add_argument(
        "--data-plane",
        choices=DATA_PLANES,
        default=None,
        help="local: the bridge stores and commits episodes in its directory; s3-queue: an S3 server, "
        "a NATS queue and the coordinator run here too, episodes go to S3 (default: the fleet file's)",
    )
    add_settings_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    layout = run_dir_layout(args.run_dir)
    # Robots start on the offline policy and fetch newer ones from the bridge at episode boundaries.
    overrides = deep_merge(
        settings_overrides(args), {"bridge": {"enabled": True}, "learner": {"enabled": True}}
    )
    if args.num_robots is not None:
        overrides.update(num_robots=args.num_robots, robots=None)
    if args.data_plane is not None:
        overrides["data_plane"] = args.data_plane
    try:
        cfg = load_fleet_yaml(args.fleet or default_fleet_file())
        settings = run_settings(deep_merge(cfg, overrides))
        # A broken description, or a data-plane port in use, is refused before minutes of bootstrap.
        plane = expand_fleet(cfg, overrides).data_plane
        if plane is not None:
            check_ports(plane.ports())
    except (FleetConfigError, FileNotFoundError) as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    bootstrap(settings, layout)
    overrides = deep_merge(fleet_run_overrides(layout, learner_enabled=True, settings=settings), overrides)
    try:
        fleet = expand_fleet(cfg, overrides)
        if note := ensure_fleet_keys(fleet):
            log(note)
        if fleet.data_plane is not None:
            check_ports(fleet.data_plane.ports())
    except FleetConfigError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    supervisor = Supervisor(fleet)  # its processes get this environment as it is now, plus their own
    monitor = FleetMonitor(layout.bridge_root, layout.online_learner, fleet.robot_ids, fleet.episode_store)
    if fleet.data_plane is not None:
        os.environ.update(fleet.data_plane.client_env())  # the monitor (and its value plot) read S3
        log(
            f"data plane s3-queue: episodes in {fleet.data_plane.store_url} at {fleet.data_plane.endpoint}, "
            f"queue {fleet.data_plane.queue_url}, data under {fleet.data_plane.dir}"
        )
    log(
        f"starting {len(fleet.processes)} processes for {len(fleet.robot_ids)} simulated robots; "
        f"Ctrl-C stops; logs in {layout.run_dir / 'logs'}"
    )
    reported: list[bool] = []
    dashboard_log = layout.run_dir / "logs" / "dashboard.log"
    seen = (
        dashboard_log.stat().st_size if dashboard_log.exists() else 0
    )  # earlier runs' lines: not this one's
    announced: list[str] = []

    def tick() -> None:
        if not announced and any(p.name == "dashboard" for p in fleet.processes):
            url = dashboard_url(dashboard_log, seen)  # printed once it listens (with the run's token)
            if url:
                announced.append(url)
                log(f"dashboard: {url}")
        print(monitor.report(), flush=True)

    def final_report() -> None:
        if not reported:
            reported.append(True)
            print(monitor.report(), flush=True)
            for path in monitor.write_plots(layout.run_dir / "plots"):
                log(f"wrote {path}")

    failure = supervisor.run(
        duration_s=args.duration,
        on_tick=tick,
        tick_interval_s=args.status_every,
        # With the s3-queue data plane the episodes are in the S3 server: report while it still runs,
        # after the bridge and the coordinator have flushed and committed what they had.
        before_servers_stop=final_report,
    )
    final_report()
    if failure:
        print(f"fleet: {failure}", file=sys.stderr)
        return 1
    return 0


def dashboard_url(log_file: Path, offset: int = 0) -> str:
    """The URL the dashboard printed in its log after `offset` bytes ("" until it listens)."""
    try:
        with log_file.open("rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    urls = [ln.split("lwd dashboard: ", 1)[1].strip() for ln in lines if "lwd dashboard: " in ln]
    return urls[-1] if urls else ""


if __name__ == "__main__":
    sys.exit(main())
