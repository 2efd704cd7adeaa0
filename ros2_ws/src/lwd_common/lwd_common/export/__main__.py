"""`python -m lwd_common.export`: episode store -> MCAP / LeRobot v3, and LeRobot v3 -> episode store.

    python -m lwd_common.export mcap STORE OUT_DIR [--snapshot N | --episodes ID ...]
    python -m lwd_common.export lerobot STORE OUT_DIR [--snapshot N | --episodes ID ...] [--video] [--fps N]
    python -m lwd_common.export import DATASET_DIR STORE [--mapping FILE] [--episodes INDEX ...] [--no-commit]

One progress line per episode on stderr, a summary on stdout; a bad path, id or dataset ends with
`error: ...` and exit status 2 (no traceback). docs/data.md has the topics, layout and mapping.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lwd_common.export import ExportError, Progress, open_store, select_episode_ids


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", type=Path, help="episode store directory (episodes/ + snapshots/)")
    p.add_argument("out", type=Path, help="output directory")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--snapshot", type=int, help="export the episodes of this snapshot version (default: the latest)"
    )
    g.add_argument("--episodes", nargs="+", metavar="ID", help="export these episode ids (committed or not)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-episode progress lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lwd_common.export",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser(
        "mcap", help="one <episode_id>.mcap per episode, ROS 2 schemas (Foxglove, ros2 bag, rosbags)"
    )
    _selection(m)
    lr = sub.add_parser("lerobot", help="a LeRobotDataset v3.0 directory")
    _selection(lr)
    lr.add_argument(
        "--video",
        action="store_true",
        help="cameras as mp4 videos (MPEG-4 Part 2, lossy) instead of the recorded JPEGs in parquet",
    )
    lr.add_argument(
        "--fps", type=int, default=None, help="dataset fps (default: the episodes' control rate, e.g. 30)"
    )
    lr.add_argument(
        "--robot-type", default=None, help="info.json robot_type (default: lwd_<robot>, e.g. lwd_g1_dual_arm)"
    )
    lr.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    im = sub.add_parser("import", help="a local LeRobot v3 dataset into an episode store")
    im.add_argument("dataset", type=Path, help="LeRobot v3 dataset directory (meta/info.json, data/, ...)")
    im.add_argument("store", type=Path, help="episode store directory (created if absent)")
    im.add_argument(
        "--mapping",
        type=Path,
        default=None,
        help="YAML/JSON robot/joint/camera mapping (default: an lwd export's robot, else G1; docs/data.md)",
    )
    im.add_argument("--episodes", nargs="+", type=int, metavar="INDEX", help="only these episode indices")
    im.add_argument(
        "--no-commit", action="store_true", help="store the episodes without committing a snapshot"
    )
    im.add_argument("-q", "--quiet", action="store_true", help="no per-episode progress lines")
    return parser


def run(args: argparse.Namespace) -> str:
    """Carry out one parsed command; returns the summary line."""
    if args.command == "import":
        from lwd_common.export.lerobot_v3 import import_lerobot, load_mapping

        mapping = load_mapping(args.mapping)
        progress = Progress(total=None, verb="imported", quiet=args.quiet)
        ids = import_lerobot(
            args.dataset, args.store, progress, mapping, args.episodes, commit=not args.no_commit
        )
        if not ids:
            raise ExportError(f"{args.dataset} holds no episodes to import")
        return progress.summary(args.store)
    store = open_store(args.store)
    ids = select_episode_ids(store, args.snapshot, args.episodes)
    if not ids:
        raise ExportError(f"nothing to export: the selection in {args.store} is empty")
    progress = Progress(total=len(ids), quiet=args.quiet)
    if args.command == "mcap":
        from lwd_common.export.mcap_ros2 import export_mcap

        export_mcap(store, ids, args.out, progress)
    else:
        from lwd_common.export.lerobot_v3 import export_lerobot

        export_lerobot(
            store,
            ids,
            args.out,
            progress,
            fps=args.fps,
            video=args.video,
            robot_type=args.robot_type,
            overwrite=args.overwrite,
        )
    return progress.summary(args.out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(run(args))
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
