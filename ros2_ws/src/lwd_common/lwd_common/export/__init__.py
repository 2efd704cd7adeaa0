"""Data in and out: lwd episode stores as MCAP (ROS 2 schemas) or LeRobot v3 datasets, and back.

`python -m lwd_common.export --help` is the CLI (docs/data.md). One module per format:
`mcap_ros2` (episodes as ROS 2 bags that Foxglove, `ros2 bag` and rosbags read) and
`lerobot_v3` (a LeRobotDataset v3.0 directory, export and import). This module holds what they
share: opening a store without creating one by mistake, choosing episodes, progress lines.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from lwd_common.episode import Episode
from lwd_common.store import EPISODE_SUFFIX, EpisodeStore, check_episode_id


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
