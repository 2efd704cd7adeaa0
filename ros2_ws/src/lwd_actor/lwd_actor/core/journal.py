"""Episode journal: every recorded step is on disk as soon as it is recorded, so a killed actor keeps it.

`JournalSink` is the actor's `directory` sink. It appends each step of the running
episode to a journal file and, at the episode's end, stores the episode in the
`EpisodeStore` (the learner's format) and deletes the journal. An actor that is
killed (SIGKILL, OOM killer, power cut) leaves the journal behind; the next start
(`recover`, run when the sink is made) stores it: with the outcome the journal
recorded if the end was journalled (a shutdown that ran out of time), else as a
failure with reason `interrupted` holding every step written before the kill.

Layout: `<journal_dir>/<robot_id>/<episode_id>.journal`, one per episode, and a
`.lock` file held (flock) by the actor using that robot id, so a second actor with
the same robot id and store is refused instead of finalising the first one's
running episode. A journal is a sequence of records, each an 8-byte header
(payload length, CRC-32 of the payload: little-endian uint32) and an
`lwd_common.codec` msgpack payload: `begin` (the meta), `step` (one StepRecord),
`end` (the outcome). Records are written with `os.write` (in the kernel at once:
a killed process loses nothing it wrote) and fsynced every `fsync_every_s` and at
begin and end (a power cut loses at most that long). A record cut short by a crash
(short header or payload, CRC mismatch) ends the journal; everything before it is kept.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lwd_common import codec
from lwd_common.blobs import fsync_dir
from lwd_common.episode import (
    ActionSource,
    Episode,
    EpisodeMeta,
    EpisodeOutcome,
    Label,
    StepRecord,
    meta_from_dict,
    meta_to_dict,
    outcome_from_dict,
    outcome_to_dict,
)
from lwd_common.store import EPISODE_SUFFIX, EpisodeStore, check_episode_id

SUFFIX = ".journal"
INTERRUPTED = "interrupted"  # outcome reason of an episode the actor never ended (killed, crashed)
_HEADER = struct.Struct("<II")  # payload length, crc32(payload)


class JournalLocked(ValueError):
    """Another live actor holds this robot id's journal (same robot id, same store)."""


@dataclass(frozen=True)
class JournalContents:
    meta: EpisodeMeta | None  # None: the begin record never made it to disk
    steps: list[StepRecord]
    outcome: EpisodeOutcome | None  # None: the episode was never ended (killed while it ran)
    cut: bool  # a record was cut short or damaged; what came after it is lost


@dataclass(frozen=True)
class Recovered:
    """A journal that a start found and what became of it."""

    episode_id: str
    steps: int
    outcome: EpisodeOutcome | None  # what was stored (None: nothing stored)
    message: str


def _record(payload: dict[str, Any]) -> bytes:
    data = codec.packb(payload)
    return _HEADER.pack(len(data), zlib.crc32(data)) + data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def step_to_dict(step: StepRecord) -> dict[str, Any]:
    return {
        "t": "step",
        "step": int(step.step),
        "stamp": float(step.stamp),
        "images": {cam: bytes(jpeg) for cam, jpeg in step.images.items()},
        "joint_pos": np.asarray(step.joint_pos, np.float32),
        "action": np.asarray(step.action, np.float32),
        "source": int(step.source),
        "chunk_id": int(step.chunk_id),
        "policy_version": str(step.policy_version),
    }


def step_from_dict(d: dict[str, Any]) -> StepRecord:
    return StepRecord(
        step=int(d["step"]),
        stamp=float(d["stamp"]),
        images={str(cam): bytes(jpeg) for cam, jpeg in d["images"].items()},
        joint_pos=np.asarray(d["joint_pos"], np.float32),
        action=np.asarray(d["action"], np.float32),
        source=ActionSource(int(d["source"])),
        chunk_id=int(d["chunk_id"]),
        policy_version=str(d["policy_version"]),
    )


def read_journal(path: Path) -> JournalContents:
    """Everything a journal holds up to its first cut-short or damaged record."""
    data = path.read_bytes()
    meta: EpisodeMeta | None = None
    outcome: EpisodeOutcome | None = None
    steps: list[StepRecord] = []
    pos, cut = 0, False
    while pos < len(data):
        if len(data) - pos < _HEADER.size:
            cut = True
            break
        size, crc = _HEADER.unpack_from(data, pos)
        payload = data[pos + _HEADER.size : pos + _HEADER.size + size]
        if len(payload) != size or zlib.crc32(payload) != crc:
            cut = True
            break
        pos += _HEADER.size + size
        try:
            rec = codec.unpackb(payload)
            kind = rec["t"]
            if kind == "begin":
                meta = meta_from_dict(rec["meta"])
            elif kind == "step" and meta is not None:
                steps.append(step_from_dict(rec))
            elif kind == "end" and meta is not None:
                outcome = outcome_from_dict(rec["outcome"])
                break
        except (ValueError, TypeError, KeyError):
            cut = True
            break
    return JournalContents(meta, steps, outcome, cut)


class JournalSink:
    """EpisodeSink storing into an `EpisodeStore`, journalling every step on the way (module doc).

    Called from the recorder's thread only (`recover` from the constructor).
    """

    def __init__(
        self,
        store: EpisodeStore,
        journal_dir: str | os.PathLike[str],
        robot_id: str,
        commit: bool = True,
        fsync_every_s: float = 1.0,
    ):
        self.store = store
        self.commit = commit
        self.fsync_every_s = fsync_every_s
        self.dir = Path(journal_dir) / check_episode_id(robot_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise JournalLocked(
                f"another actor with robot id {robot_id!r} is recording into {self.dir} (journal locked)"
            ) from exc
        self._meta: EpisodeMeta | None = None
        self._path: Path | None = None
        self._fd: int | None = None
        self._steps = 0
        self._last_sync = 0.0
        self.recovered = self.recover()

    # --- EpisodeSink ---------------------------------------------------------------------------
    def begin(self, meta: EpisodeMeta) -> None:
        if self._meta is not None:
            raise RuntimeError(f"episode {self._meta.episode_id} is still open")
        path = self.dir / (check_episode_id(meta.episode_id) + SUFFIX)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            _write_all(fd, _record({"t": "begin", "meta": meta_to_dict(meta)}))
            os.fsync(fd)
            fsync_dir(self.dir)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._meta, self._path, self._fd, self._steps = meta, path, fd, 0
        self._last_sync = time.monotonic()

    def add_step(self, step: StepRecord) -> None:
        if self._fd is None or self._meta is None:
            raise RuntimeError("add_step before begin")
        missing = [c for c in self._meta.cameras if c not in step.images]
        if missing:
            raise ValueError(f"step {step.step} lacks camera frames {missing}")
        _write_all(self._fd, _record(step_to_dict(step)))
        self._steps += 1
        now = time.monotonic()
        if now - self._last_sync >= self.fsync_every_s:
            os.fsync(self._fd)
            self._last_sync = now

    def end(self, outcome: EpisodeOutcome) -> None:
        """Journal the end (fsync: from here the outcome survives anything), then store the episode."""
        if self._fd is None or self._path is None:
            raise RuntimeError("end before begin")
        fd, path = self._fd, self._path
        try:
            _write_all(fd, _record({"t": "end", "outcome": outcome_to_dict(outcome)}))
            os.fsync(fd)
        finally:
            os.close(fd)
            self._meta, self._path, self._fd = None, None, None
        self._store(path)

    def close(self) -> None:
        """Release the journal (an open episode stays in it, for the next start)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # --- recovery --------------------------------------------------------------------------------
    def pending(self) -> list[Path]:
        """Journals not stored yet (a running episode's included)."""
        return sorted(p for p in self.dir.glob("*" + SUFFIX) if p != self._path)

    def recover(self) -> list[Recovered]:
        """Store every episode an earlier run of this robot left in the journal (see the module doc).

        A journal that cannot be read as an episode is moved to `unreadable/` (kept for a human);
        one that cannot be stored now (disk full) stays for the next start."""
        out = []
        for path in self.pending():
            try:
                out.append(self._store(path))
            except (ValueError, TypeError) as exc:
                aside = self.dir / "unreadable"
                aside.mkdir(exist_ok=True)
                shutil.move(str(path), aside / path.name)
                out.append(
                    Recovered(path.stem, 0, None, f"journal {path.name} unusable ({exc}): moved to {aside}")
                )
            except OSError as exc:
                out.append(Recovered(path.stem, 0, None, f"journal {path.name} not stored yet: {exc}"))
        return out

    def _store(self, path: Path) -> Recovered:
        """Store the episode a journal holds (as it ended, else as interrupted), then delete the journal."""
        episode_id = path.name[: -len(SUFFIX)]
        j = read_journal(path)
        if j.meta is None:
            path.unlink()
            return Recovered(episode_id, 0, None, f"journal {path.name} held no episode start: removed")
        n = len(j.steps)
        cut = " (its last record was cut short)" if j.cut else ""
        if j.outcome is not None:
            outcome = replace(j.outcome, num_steps=n)
            how = f"ended {outcome.label.value} ({outcome.reason})"
        else:
            outcome = EpisodeOutcome(
                label=Label.FAILURE,
                num_steps=n,
                reason=INTERRUPTED,
                note=f"the actor stopped without ending the episode (killed or crashed) after {n} "
                f"recorded steps{cut}; stored from its journal at the next start",
            )
            how = "never ended: stored as failure (interrupted)"
        if not self.store.has(j.meta.episode_id):
            # a put cut short by an exit leaves its temp file: remove it before writing again
            for tmp in self.store.path_of(j.meta.episode_id).parent.glob(
                f".{j.meta.episode_id}{EPISODE_SUFFIX}.*.tmp"
            ):
                tmp.unlink(missing_ok=True)
            self.store.put(Episode.from_steps(j.meta, j.steps, outcome))
            if self.commit:
                self.store.commit_snapshot()
        path.unlink()
        return Recovered(episode_id, n, outcome, f"episode {episode_id}: {n} steps, {how}{cut}")
