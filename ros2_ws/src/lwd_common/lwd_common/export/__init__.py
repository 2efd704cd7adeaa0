"""Data in and out: lwd episode stores as MCAP (ROS 2 schemas) or LeRobot v3 datasets, and back.

`python -m lwd_common.export --help` is the CLI (docs/data.md). One module per format:
`mcap_ros2` (episodes as ROS 2 bags that Foxglove, `ros2 bag` and rosbags read) and
`lerobot_v3` (a LeRobotDataset v3.0 directory, export and import: a package, one module per
direction). This module holds what they share: opening a store without creating one by mistake,
choosing episodes, the episodes' robot (joints, cameras, rate: from their metadata, any robot),
progress lines.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from lwd_common.episode import Episode
from lwd_common.store import EPISODE_SUFFIX, EpisodeStore, check_episode_id
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES, RobotDescription, known_robots, load_robot


class ExportError(ValueError):
    """A problem with the user's input (paths, ids, dataset layout): the CLI prints it without a traceback."""


def open_store(path: str | os.PathLike) -> EpisodeStore:
    """The existing episode store at `path`.

    `EpisodeStore(path)` creates missing folders, which would turn a typo into an empty export;
    exporters open stores here so a wrong path is an error that says what is there instead.
    """
    root = Path(path)
    if not root.exists():
        raise ExportError(f"no episode store at {root}: the path does not exist")
    if not root.is_dir():
        raise ExportError(f"no episode store at {root}: it is a file, not a directory")
    if not (root / "episodes").is_dir() or not (root / "snapshots").is_dir():
        found = sorted(p.name for p in root.iterdir())[:10]
        raise ExportError(
            f"{root} is not an episode store: it needs episodes/ and snapshots/ folders "
            f"(found: {', '.join(found) or 'nothing'})"
        )
    return EpisodeStore(root)


def select_episode_ids(
    store: EpisodeStore, snapshot: int | None = None, episode_ids: Sequence[str] | None = None
) -> list[str]:
    """The episodes to export: `episode_ids` if given, else those of snapshot `snapshot` (default: the latest).

    Snapshots are what readers may rely on (`store` module docstring), so without explicit ids
    only committed episodes are exported.
    """
    if episode_ids:
        if snapshot is not None:
            raise ExportError("give either --snapshot or --episodes, not both")
        missing = []
        for eid in episode_ids:
            try:
                check_episode_id(eid)
            except ValueError as exc:
                raise ExportError(str(exc)) from None
            if not store.has(eid):
                missing.append(eid)
        if missing:
            raise ExportError(
                f"episodes not in {store.root}: {', '.join(missing)} "
                f"(it holds {len(store.ids())}; ids are the file names in episodes/ without {EPISODE_SUFFIX})"
            )
        return list(dict.fromkeys(episode_ids))
    versions = store.snapshot_versions()
    if not versions:
        raise ExportError(
            f"store {store.root} has no snapshot (nothing committed); pass --episodes ID ... to export "
            f"uncommitted episodes ({len(store.ids())} stored)"
        )
    if snapshot is None:
        snapshot = versions[-1]
    elif snapshot not in versions:
        raise ExportError(f"snapshot {snapshot} not in {store.root}; it has {_ranges(versions)}")
    snap = store.read_snapshot(snapshot)
    absent = [e for e in snap.episode_ids if not store.has(e)]
    if absent:
        raise ExportError(
            f"snapshot {snapshot} lists episodes missing from episodes/: {', '.join(absent[:5])}"
        )
    return list(snap.episode_ids)


def load_episode(store: EpisodeStore, episode_id: str) -> Episode:
    """`store.get`, with a damaged or foreign file reported as an input error naming the episode."""
    try:
        return store.get(episode_id)
    except (ValueError, TypeError, KeyError) as exc:
        raise ExportError(f"episode {episode_id} in {store.root} cannot be read: {exc}") from None


@dataclass(frozen=True)
class EpisodeRobot:
    """The robot an episode was recorded on, as its metadata says: exports serve any robot, not only the G1.

    `control_hz` is `meta.extra["control_hz"]` (the actor records it), else that of the robot
    description (lwd_description) with the episode's joints and cameras, else None (unknown);
    `name` is that description's name, if one matches.
    """

    joint_names: tuple[str, ...]
    cameras: tuple[str, ...]
    control_hz: float | None
    name: str | None

    def whole_fps(self, episode_id: str) -> int:
        """The control rate as dataset formats' fps (a whole number); ExportError where it is not one."""
        hz = self.control_hz
        if hz is None:
            raise ExportError(
                f"episode {episode_id} records no control rate (meta.extra['control_hz']) and its joints "
                "match no lwd_description robot; give the dataset's fps with --fps"
            )
        if not hz.is_integer():
            raise ExportError(f"control rate {hz} Hz is not a whole number of frames per second; pass --fps")
        return int(hz)

    def check_same(self, first_id: str, ep: Episode) -> None:
        """ExportError unless `ep` has these joints, cameras and rate (if both say): one export, one robot."""
        other = episode_robot(ep)
        for what, a, b in (
            ("joints", self.joint_names, other.joint_names),
            ("cameras", self.cameras, other.cameras),
            ("control rate (Hz)", self.control_hz, other.control_hz),
        ):
            if a != b and None not in (a, b):
                shown = [list(v) if isinstance(v, tuple) else v for v in (a, b)]
                raise ExportError(
                    f"episodes of different robots in one export: {first_id} has {what} {shown[0]}, "
                    f"{ep.meta.episode_id} has {shown[1]}; export each robot's episodes apart (--episodes)"
                )


@functools.cache
def _descriptions() -> dict[tuple[str, ...], RobotDescription]:
    """The robot descriptions lwd_description ships, by joint names (read once)."""
    out: dict[tuple[str, ...], RobotDescription] = {}
    for name in known_robots():
        try:
            robot = load_robot(name)
        except (OSError, ValueError):
            continue  # a broken description is reported where it is asked for by name
        out.setdefault(robot.joint_names, robot)
    return out


def _rate(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return float(value) if ok else None


def episode_robot(ep: Episode) -> EpisodeRobot:
    """`ep`'s robot from its meta (joint_names, cameras, extra.control_hz) and the matching description."""
    joints, cameras = tuple(ep.meta.joint_names), tuple(ep.meta.cameras)
    desc = _descriptions().get(joints)
    if desc is not None and not set(cameras) <= set(desc.cameras):
        desc = None
    hz = _rate(ep.meta.extra.get("control_hz")) or (desc.control_hz if desc else None)
    return EpisodeRobot(joints, cameras, hz, desc.name if desc else None)


def robot_names(robot: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(joint names, camera names) of an lwd_description robot (name or YAML path; None: the G1's);
    a missing or unusable description is an input error."""
    if robot is None:
        return JOINT_NAMES, CAMERA_NAMES
    try:
        desc = load_robot(robot)
    except (OSError, ValueError) as exc:
        raise ExportError(str(exc)) from None
    return desc.joint_names, desc.camera_names


def _ranges(values: Sequence[int]) -> str:
    """`1-3, 7` for [1, 2, 3, 7]: snapshot lists can be long."""
    parts: list[str] = []
    start = prev = values[0]
    for v in list(values[1:]) + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


class Progress:
    """One line per episode on stderr (`[2/5] <id>: 340 steps, 0.41 s`), so long exports show they move."""

    def __init__(
        self, total: int | None, verb: str = "exported", stream: TextIO | None = None, quiet: bool = False
    ):
        self.total, self.verb, self.quiet = total, verb, quiet
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.steps = 0
        self._t0 = self._last = time.perf_counter()

    def episode(self, episode_id: str, steps: int, note: str = "") -> None:
        now = time.perf_counter()
        self.done += 1
        self.steps += steps
        if not self.quiet:
            extra = f" ({note})" if note else ""
            count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
            print(
                f"[{count}] {episode_id}: {steps} steps {self.verb} in {now - self._last:.2f} s{extra}",
                file=self.stream,
                flush=True,
            )
        self._last = now

    def summary(self, where: Path) -> str:
        return (
            f"{self.verb} {self.done} episodes ({self.steps} steps) to {where} "
            f"in {time.perf_counter() - self._t0:.1f} s"
        )
