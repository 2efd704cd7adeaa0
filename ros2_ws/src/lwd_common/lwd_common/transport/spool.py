"""The robot's on-disk spool: every episode frame is written here before it is sent.

Layout under `root`:
    episodes/<episode_id>/<seq:08d>.frm   an encoded ep_begin / ep_chunk frame
    episodes/<episode_id>/<seq:08d>.end   the encoded ep_end frame (episode complete)
    orphaned/<episode_id>/                episodes a crash left without an end
    rejected/<episode_id>/                episodes the bridge refused (kept for a human)

Frames are written atomically (temp + fsync + rename), so after a crash each file
is whole or absent. An episode directory is deleted only after the bridge
reports it committed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lwd_common.store import atomic_write, check_episode_id


@dataclass(frozen=True)
class SpooledEpisode:
    episode_id: str
    seqs: tuple[int, ...]
    end_seq: int | None  # None: the episode has no end frame yet


class Spool:
    def __init__(self, root: str | os.PathLike, fsync: bool = True):
        self.root = Path(root)
        self.fsync = fsync
        self.episodes_dir = self.root / "episodes"
        self.episodes_dir.mkdir(parents=True, exist_ok=True)

    def _dir(self, episode_id: str) -> Path:
        return self.episodes_dir / check_episode_id(episode_id)

    def write(self, episode_id: str, seq: int, data: bytes, is_end: bool = False) -> None:
        path = self._dir(episode_id) / f"{seq:08d}.{'end' if is_end else 'frm'}"
        if self.fsync:
            atomic_write(path, data)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)

    def read(self, episode_id: str, seq: int) -> bytes:
        d = self._dir(episode_id)
        for suffix in ("frm", "end"):
            path = d / f"{seq:08d}.{suffix}"
            if path.exists():
                return path.read_bytes()
        raise FileNotFoundError(f"spool has no frame {seq} of episode {episode_id}")

    def scan(self) -> list[SpooledEpisode]:
        """Every spooled episode, oldest directory first."""
        out = []
        dirs = sorted(self.episodes_dir.iterdir(), key=lambda p: p.stat().st_mtime)
        for d in dirs:
            if not d.is_dir():
                continue
            seqs, end_seq = [], None
            for f in d.iterdir():
                stem, _, suffix = f.name.partition(".")
                if suffix in ("frm", "end") and stem.isdigit():
                    seqs.append(int(stem))
                    if suffix == "end":
                        end_seq = int(stem)
            out.append(SpooledEpisode(d.name, tuple(sorted(seqs)), end_seq))
        return out

    def delete(self, episode_id: str) -> None:
        shutil.rmtree(self._dir(episode_id), ignore_errors=True)

    def set_aside(self, episode_id: str, why: str) -> Path:
        """Move an episode out of the send path into `orphaned/` or `rejected/`."""
        dest = self.root / why / check_episode_id(episode_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(self._dir(episode_id), dest)
        return dest
