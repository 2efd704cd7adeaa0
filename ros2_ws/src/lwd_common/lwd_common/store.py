"""Directory episode store: one file per episode, versioned snapshots.

Layout under `root`:
    episodes/<episode_id>.lwdep     one encoded episode, written atomically
    snapshots/<version>.json        a consistent view: the episode ids it holds

Writers (bridge, offline generators) `put` episodes and then `commit_snapshot`;
readers (the learner) read `latest_snapshot` and load only the episodes it
lists, so they never see a half-written store. Each episode is written to a
temp file, fsynced and renamed, so it is either there whole or not at all;
`put` of an id that exists is a no-op, which makes delivery retries idempotent.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lwd_common.episode import (
    Episode,
    decode_episode,
    encode_episode,
)

EPISODE_SUFFIX = ".lwdep"
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_episode_id(episode_id: str) -> str:
    """Episode ids become file names: the WHOLE id in a safe character set (`$` also matched before a newline)."""
    if not isinstance(episode_id, str) or not _SAFE_ID.fullmatch(episode_id):
        raise ValueError(f"invalid episode id {episode_id!r}")
    return episode_id


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class Snapshot:
    version: int
    episode_ids: tuple[str, ...]
    created_at: float


class EpisodeStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.episodes_dir = self.root / "episodes"
        self.snapshots_dir = self.root / "snapshots"
        self.episodes_dir.mkdir(parents=True, exist_ok=True)
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)

    def path_of(self, episode_id: str) -> Path:
        return self.episodes_dir / (check_episode_id(episode_id) + EPISODE_SUFFIX)

    def has(self, episode_id: str) -> bool:
        return self.path_of(episode_id).exists()

    def put(self, episode: Episode) -> bool:
        """Store an episode; False (and nothing written) if its id is already stored."""
        return self.put_encoded(episode.meta.episode_id, encode_episode(episode))

    def put_encoded(self, episode_id: str, data: bytes) -> bool:
        path = self.path_of(episode_id)
        if path.exists():
            return False
        atomic_write(path, data)
        return True

    def get(self, episode_id: str) -> Episode:
        return decode_episode(self.read_bytes(episode_id))

    def read_bytes(self, episode_id: str) -> bytes:
        return self.path_of(episode_id).read_bytes()

    def ids(self) -> list[str]:
        """All stored episode ids (committed to a snapshot or not), sorted."""
        return sorted(p.name[: -len(EPISODE_SUFFIX)] for p in self.episodes_dir.glob("*" + EPISODE_SUFFIX))

    def snapshot_versions(self) -> list[int]:
        return sorted(int(p.stem) for p in self.snapshots_dir.glob("*.json") if p.stem.isdigit())

    def latest_snapshot(self) -> Snapshot | None:
        versions = self.snapshot_versions()
        return self.read_snapshot(versions[-1]) if versions else None

    def read_snapshot(self, version: int) -> Snapshot:
        d = json.loads((self.snapshots_dir / f"{version:010d}.json").read_text())
        return Snapshot(int(d["version"]), tuple(d["episode_ids"]), float(d["created_at"]))

    def commit_snapshot(self) -> Snapshot:
        """Publish every stored episode as a new snapshot version (single writer)."""
        latest = self.latest_snapshot()
        version = (latest.version if latest else 0) + 1
        snap = Snapshot(version, tuple(self.ids()), time.time())
        payload = {
            "version": snap.version,
            "episode_ids": list(snap.episode_ids),
            "created_at": snap.created_at,
        }
        atomic_write(self.snapshots_dir / f"{version:010d}.json", json.dumps(payload).encode())
        return snap
