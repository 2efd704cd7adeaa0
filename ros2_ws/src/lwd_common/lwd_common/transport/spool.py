"""The robot's on-disk spool: every episode frame is written here before it is sent.

Layout under `root`:
    episodes/<episode_id>/<seq:08d>.frm   an encoded ep_begin / ep_chunk frame
    episodes/<episode_id>/<seq:08d>.end   the encoded ep_end frame (episode complete)
    orphaned/<episode_id>/                episodes a crash left without an end
    rejected/<episode_id>/                episodes the bridge refused (kept for a human)

Frames are written atomically (temp + fsync + rename), so after a crash each file
is whole or absent. An episode directory is deleted only after the bridge
reports it committed, or when a byte cap makes room (below).

Byte caps (0: none; `ClientConfig` gives the robot's defaults), so a robot whose
bridge is down for days cannot fill its disk:
- `rejected/` and `orphaned/` keep at most `max_rejected_bytes` / `max_orphaned_bytes`:
  when an episode set aside goes over the cap, the episodes set aside longest ago are
  deleted first (they are kept for a human, and the newest are the ones still relevant).
- `episodes/` (the send path) keeps at most `max_bytes`: before a frame is written,
  `make_room` drops the oldest *complete* unsent episodes, never one the caller names in
  `keep` (the stream names the episode being recorded and those with frames on the
  wire). Oldest first because a learner wants recent data (recorded by recent
  policies), and refusing new episodes would turn a bridge outage into a robot that
  records nothing. When only kept episodes remain the frame is written anyway (over
  the cap, counted in `spool_over_cap`): losing the episode being recorded would be worse,
  and that overshoot is bounded by one episode plus what is in flight.
Every deletion is counted (`stats()`) and logged as a warning, at most once a minute
per directory. Bytes are the frame files' sizes (no filesystem overhead), kept as a
running total per directory from one scan at start, so a write costs no tree walk.
The spool has one writer (the stream's thread); `stats()` may be read from any thread.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path

from lwd_common.store import atomic_write, check_episode_id

log = logging.getLogger("lwd.transport")

SEND = "episodes"
SET_ASIDE = ("rejected", "orphaned")
AREAS = (SEND, *SET_ASIDE)
WARN_EVERY_S = 60.0


@dataclass(frozen=True)
class SpooledEpisode:
    episode_id: str
    seqs: tuple[int, ...]
    end_seq: int | None  # None: the episode has no end frame yet


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


class Spool:
    def __init__(
        self,
        root: str | os.PathLike,
        fsync: bool = True,
        max_bytes: int = 0,
        max_rejected_bytes: int = 0,
        max_orphaned_bytes: int = 0,
        warn_every_s: float = WARN_EVERY_S,
    ):
        """Caps default to none, so a tool that only reads or repairs a spool never deletes from it."""
        self.root = Path(root)
        self.fsync = fsync
        self.episodes_dir = self.root / SEND
        self.episodes_dir.mkdir(parents=True, exist_ok=True)
        self.caps = {SEND: max_bytes, "rejected": max_rejected_bytes, "orphaned": max_orphaned_bytes}
        self.warn_every_s = warn_every_s
        self._warned_at: dict[str, float] = {}
        # area -> episode id -> bytes, oldest first (dicts keep insertion order)
        self._sizes: dict[str, dict[str, int]] = {}
        self._bytes: dict[str, int] = {}
        self._ended: set[str] = set()  # episodes in episodes/ with an end frame
        for area in AREAS:
            self._sizes[area] = self._scan_sizes(area)
            self._bytes[area] = sum(self._sizes[area].values())
        self.counters: dict[str, int] = {
            k: 0
            for k in (
                "spool_dropped_episodes",  # complete episodes dropped unsent to stay under max_bytes
                "spool_dropped_bytes",
                "spool_over_cap",  # frames written over max_bytes (only kept episodes were left)
                "spool_rejected_trimmed",  # episodes deleted from rejected/ for its cap
                "spool_orphaned_trimmed",
                "spool_trimmed_bytes",
            )
        }
        for area in SET_ASIDE:
            self._trim(area)

    def _scan_sizes(self, area: str) -> dict[str, int]:
        """The one tree walk: bytes per episode directory of `area`, oldest (mtime) first."""
        d = self.root / area
        if not d.is_dir():
            return {}
        found = []
        with os.scandir(d) as episodes:
            for ep in episodes:
                if not ep.is_dir(follow_symlinks=False):
                    continue
                size = 0
                with os.scandir(ep.path) as files:
                    for f in files:
                        if f.is_file(follow_symlinks=False):
                            size += f.stat(follow_symlinks=False).st_size
                            if area == SEND and f.name.endswith(".end"):
                                self._ended.add(ep.name)
                found.append((ep.stat(follow_symlinks=False).st_mtime, ep.name, size))
        return {name: size for _, name, size in sorted(found)}

    def _dir(self, episode_id: str) -> Path:
        return self.episodes_dir / check_episode_id(episode_id)

    def write(self, episode_id: str, seq: int, data: bytes, is_end: bool = False) -> None:
        path = self._dir(episode_id) / f"{seq:08d}.{'end' if is_end else 'frm'}"
        try:
            old = path.stat().st_size  # a frame written again replaces its bytes
        except FileNotFoundError:
            old = 0
        if self.fsync:
            atomic_write(path, data)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        sizes = self._sizes[SEND]
        sizes[episode_id] = sizes.get(episode_id, 0) + len(data) - old
        self._bytes[SEND] += len(data) - old
        if is_end:
            self._ended.add(episode_id)

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
        self._bytes[SEND] -= self._sizes[SEND].pop(episode_id, 0)
        self._ended.discard(episode_id)

    def set_aside(self, episode_id: str, why: str) -> Path:
        """Move an episode out of the send path into `orphaned/` or `rejected/` (then trim that to its cap)."""
        if why not in SET_ASIDE:
            raise ValueError(f"set_aside into {why!r}: want one of {SET_ASIDE}")
        dest = self.root / why / check_episode_id(episode_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(self._dir(episode_id), dest)
        os.utime(dest)  # its age in `why` counts from now, also for the scan of the next start
        size = self._sizes[SEND].pop(episode_id, 0)
        self._bytes[SEND] -= size
        self._ended.discard(episode_id)
        area = self._sizes[why]
        self._bytes[why] += size - area.pop(episode_id, 0)
        area[episode_id] = size
        self._trim(why)
        return dest

    def _trim(self, area: str) -> None:
        """Delete the oldest episodes of a set-aside directory until it is within its cap."""
        cap, sizes = self.caps[area], self._sizes[area]
        gone = 0
        while cap > 0 and self._bytes[area] > cap and sizes:
            eid, size = next(iter(sizes.items()))
            shutil.rmtree(self.root / area / eid, ignore_errors=True)
            del sizes[eid]
            self._bytes[area] -= size
            self.counters[f"spool_{area}_trimmed"] += 1
            self.counters["spool_trimmed_bytes"] += size
            gone += 1
        if gone:
            self._warn(
                area,
                "spool %s/ over its cap of %s: deleted %d episodes, oldest first (%d since start)",
                area,
                _mib(cap),
                gone,
                self.counters[f"spool_{area}_trimmed"],
            )

    def needs_room(self, nbytes: int) -> bool:
        """True if writing `nbytes` more to episodes/ would pass `max_bytes` (a cheap check per frame)."""
        cap = self.caps[SEND]
        return cap > 0 and self._bytes[SEND] + nbytes > cap

    def make_room(self, nbytes: int, keep: Container[str] = ()) -> list[str]:
        """Drop the oldest complete episodes not in `keep` until `nbytes` more fit under `max_bytes`.

        Returns the ids dropped (the caller forgets them). Episodes without an end frame are
        never dropped (one is being recorded). If the kept ones alone exceed the cap, the write
        goes over it and `spool_over_cap` counts it."""
        if not self.needs_room(nbytes):
            return []
        cap, dropped, freed = self.caps[SEND], [], 0
        for eid, size in list(self._sizes[SEND].items()):
            if self._bytes[SEND] + nbytes <= cap:
                break
            if eid in keep or eid not in self._ended:
                continue
            self.delete(eid)
            dropped.append(eid)
            freed += size
        self.counters["spool_dropped_episodes"] += len(dropped)
        self.counters["spool_dropped_bytes"] += freed
        if dropped:
            self._warn(
                SEND,
                "spool over its cap of %s: dropped %d unsent episodes, oldest first (%s); "
                "%d (%s) since start",
                _mib(cap),
                len(dropped),
                _mib(freed),
                self.counters["spool_dropped_episodes"],
                _mib(self.counters["spool_dropped_bytes"]),
            )
        if self._bytes[SEND] + nbytes > cap:
            self.counters["spool_over_cap"] += 1
            self._warn(
                "over_cap",
                "spool over its cap of %s (%s) with only the recording and in-flight episodes left; "
                "writing anyway (%d frames so far)",
                _mib(cap),
                _mib(self._bytes[SEND] + nbytes),
                self.counters["spool_over_cap"],
            )
        return dropped

    def usage(self) -> dict[str, int]:
        """Bytes per directory (episodes, rejected, orphaned), from the running totals."""
        return dict(self._bytes)

    def stats(self) -> dict[str, int]:
        """Counters and current sizes, for the stream's stats and robot_stats (any thread)."""
        b = self._bytes
        return {
            "spool_bytes": b[SEND],
            "spool_rejected_bytes": b["rejected"],
            "spool_orphaned_bytes": b["orphaned"],
            **self.counters,
        }

    def _warn(self, key: str, msg: str, *args: object) -> None:
        """A warning at most every `warn_every_s` per key: a full spool must not flood the log."""
        now = time.monotonic()
        last = self._warned_at.get(key)
        if last is None or now - last >= self.warn_every_s:
            self._warned_at[key] = now
            log.warning(msg, *args)
