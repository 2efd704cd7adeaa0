"""Episode store: immutable episodes and versioned, incremental snapshots, in a directory or S3.

Layout under the store's location (`lwd_common.blobs`: a directory, or `s3://bucket/prefix`):

    episodes/<episode_id>.lwdep          one encoded episode, written once (a retry is a no-op)
    snapshots/HEAD                       {"version": v}: the newest committed snapshot
    snapshots/delta/<v>.json             what version v added: episode ids and their sha256
    snapshots/segment/<last>.json        the deltas of SEGMENT_VERSIONS versions, merged
    snapshots/<v>.json                   (stores written before deltas) a full id list; read-only

Writers (bridge, offline generators, a coordinator) `put` episodes and then `commit_snapshot`:
the delta is created first (create-only, so two writers can never both commit a version), then
HEAD moves. A reader follows HEAD and reads only what is listed up to it, so it never sees an
episode that is half-written or not yet committed. A commit costs what it adds, not the store's
history: one delta, one HEAD, and every SEGMENT_VERSIONS versions one segment of that many deltas
(which a reader of the whole history reads instead of the deltas). A writer that died between
its delta and HEAD is rolled forward by the next writer; committing an id twice adds it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lwd_common.blobs import BlobMissing, Blobs, DirectoryBlobs, is_remote, open_blobs
from lwd_common.episode import (
    Episode,
    decode_episode,
    encode_episode,
)

EPISODE_SUFFIX = ".lwdep"
SEGMENT_VERSIONS = 256  # deltas merged per segment: a whole-history read is ~1/256 of the deltas
HEAD_KEY = "snapshots/HEAD"
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_episode_id(episode_id: str) -> str:
    """Episode ids become file names: the WHOLE id in a safe character set (`$` also matched before a newline)."""
    if not isinstance(episode_id, str) or not _SAFE_ID.fullmatch(episode_id):
        raise ValueError(f"invalid episode id {episode_id!r}")
    return episode_id


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see all of it or nothing."""
    DirectoryBlobs(path.parent).replace(path.name, data)


class StoreConflict(RuntimeError):
    """Another writer committed the snapshot version this one was about to commit."""


class EpisodeCorrupt(ValueError):
    """An episode's bytes do not match the sha256 its snapshot recorded."""


@dataclass(frozen=True)
class Snapshot:
    version: int
    episode_ids: tuple[str, ...]
    created_at: float
    content_hashes: tuple[str, ...] = ()  # sha256 per id, in order; empty for stores written before deltas


@dataclass(frozen=True)
class _Delta:
    ids: tuple[str, ...]
    hashes: tuple[str, ...]
    created_at: float


def _delta_key(version: int) -> str:
    return f"snapshots/delta/{version:010d}.json"


def _segment_key(last: int) -> str:
    return f"snapshots/segment/{last:010d}.json"


def _legacy_key(version: int) -> str:
    return f"snapshots/{version:010d}.json"


class EpisodeStore:
    """Episodes and their snapshots at one location (a directory path or `s3://bucket/prefix`)."""

    def __init__(self, location: str | os.PathLike):
        self.location = os.fspath(location)
        self.blobs: Blobs = open_blobs(location)
        self.root: Path | str = self.location if is_remote(location) else Path(location)
        if isinstance(self.root, Path):
            (self.root / "episodes").mkdir(parents=True, exist_ok=True)
            (self.root / "snapshots").mkdir(parents=True, exist_ok=True)
        self._writer: _WriterState | None = None

    # --- episodes --------------------------------------------------------------------------------------

    def key_of(self, episode_id: str) -> str:
        return f"episodes/{check_episode_id(episode_id)}{EPISODE_SUFFIX}"

    def path_of(self, episode_id: str) -> Path:
        """The episode's file (directory stores only)."""
        if not isinstance(self.root, Path):
            raise TypeError(f"{self.location} is not a directory store")
        return self.root / self.key_of(episode_id)

    def has(self, episode_id: str) -> bool:
        return self.blobs.exists(self.key_of(episode_id))

    def put(self, episode: Episode) -> bool:
        """Store an episode; False (and nothing written) if its id is already stored."""
        return self.put_encoded(episode.meta.episode_id, encode_episode(episode))

    def put_encoded(self, episode_id: str, data: bytes) -> bool:
        return self.blobs.create(self.key_of(episode_id), data)

    def get(self, episode_id: str, sha256: str | None = None) -> Episode:
        return decode_episode(self.read_bytes(episode_id, sha256))

    def read_bytes(self, episode_id: str, sha256: str | None = None) -> bytes:
        """The episode's bytes; with `sha256` (from its snapshot) checked against them."""
        data = self.blobs.read(self.key_of(episode_id))
        if sha256 and hashlib.sha256(data).hexdigest() != sha256:
            raise EpisodeCorrupt(
                f"episode {episode_id} in {self.location} does not match its snapshot's sha256"
            )
        return data

    def ids(self) -> list[str]:
        """All stored episode ids (committed to a snapshot or not), sorted. Lists the whole store."""
        names = (k.rsplit("/", 1)[-1] for k in self.blobs.keys("episodes"))
        return sorted(n[: -len(EPISODE_SUFFIX)] for n in names if n.endswith(EPISODE_SUFFIX))

    # --- snapshots: reading ----------------------------------------------------------------------------

    def head_version(self) -> int:
        """The newest committed snapshot version, 0 if none."""
        return self._head()[0]

    def _head(self) -> tuple[int, int]:
        """(HEAD's version, the legacy base version it builds on): one read."""
        try:
            d = json.loads(self.blobs.read(HEAD_KEY))
            return int(d["version"]), int(d.get("legacy_base", 0))
        except BlobMissing:
            legacy = self._legacy_versions()
            return (legacy[-1], legacy[-1]) if legacy else (0, 0)

    def snapshot_versions(self) -> list[int]:
        return list(range(1, self.head_version() + 1))

    def latest_snapshot(self) -> Snapshot | None:
        head, base = self._head()
        return self._snapshot_at(head, base) if head else None

    def read_snapshot(self, version: int) -> Snapshot:
        """Every episode committed up to `version` (KeyError if there is no such version)."""
        head, base = self._head()
        if not 1 <= version <= head:
            raise KeyError(f"no snapshot version {version} in {self.location}")
        return self._snapshot_at(version, base)

    def _snapshot_at(self, version: int, base: int) -> Snapshot:
        if version <= base:
            return self._read_legacy(version)
        start = self._read_legacy(base) if base else Snapshot(0, (), 0.0)
        ids, hashes, created = self._added_between(base, version, base)
        return Snapshot(
            version,
            start.episode_ids + ids,
            created or start.created_at,
            ("",) * len(start.episode_ids) + hashes,
        )

    def changes_since(self, version: int, upto: int | None = None) -> Snapshot:
        """What versions after `version` added, up to HEAD (or `upto`): `Snapshot(upto, new ids, ...)`.

        A reader that keeps up reads one delta per commit, never the history. Readers that must
        agree (the hosts of one learner) pass the same `upto`."""
        head, base = self._head()
        if upto is not None:
            if upto > head:
                raise KeyError(f"no snapshot version {upto} in {self.location} (HEAD is {head})")
            head = upto
        if head <= version:
            return Snapshot(version, (), 0.0)
        if version < base:  # from inside a store written before deltas: diff against that old list
            full = self._snapshot_at(head, base)
            old = set(self._read_legacy(version).episode_ids) if version > 0 else set()
            keep = [i for i, e in enumerate(full.episode_ids) if e not in old]
            return Snapshot(
                head,
                tuple(full.episode_ids[i] for i in keep),
                full.created_at,
                tuple(full.content_hashes[i] for i in keep),
            )
        ids, hashes, created = self._added_between(version, head, base)
        return Snapshot(head, ids, created, hashes)

    def _added_between(
        self, after: int, upto: int, base: int
    ) -> tuple[tuple[str, ...], tuple[str, ...], float]:
        """Ids and hashes committed in versions after..upto: whole segments where aligned, else deltas."""
        ids: list[str] = []
        hashes: list[str] = []
        created = 0.0
        v = after + 1
        while v <= upto:
            last = v + SEGMENT_VERSIONS - 1
            if (v - base - 1) % SEGMENT_VERSIONS == 0 and last <= upto:
                d = self._read_record(_segment_key(last))
                v = last + 1
            else:
                d = self._read_record(_delta_key(v))
                v += 1
            ids.extend(d.ids)
            hashes.extend(d.hashes)
            created = d.created_at
        return tuple(ids), tuple(hashes), created

    def _read_record(self, key: str) -> _Delta:
        d = json.loads(self.blobs.read(key))
        return _Delta(tuple(d["ids"]), tuple(d["sha256"]), float(d["created_at"]))

    # Stores written before deltas: full id lists at snapshots/<v>.json; new versions build on the last.

    def _legacy_versions(self) -> list[int]:
        names = (k.rsplit("/", 1)[-1] for k in self.blobs.keys("snapshots"))
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def _read_legacy(self, version: int) -> Snapshot:
        d = json.loads(self.blobs.read(_legacy_key(version)))
        return Snapshot(int(d["version"]), tuple(d["episode_ids"]), float(d["created_at"]))

    # --- snapshots: writing (one writer at a time) ------------------------------------------------------

    def commit_snapshot(self, added: Mapping[str, str] | Iterable[str] | None = None) -> Snapshot:
        """Commit a new version holding `added` (ids, or ids -> sha256) on top of HEAD.

        None commits every stored episode not yet committed (lists the store; the bridge and the
        coordinator pass what they wrote instead). Ids already committed are skipped; if nothing
        is left, nothing is committed. Returns the version's `Snapshot` of the ids it added
        (`read_snapshot` gives the whole view).
        """
        w = self._writer_state()
        if added is None:
            candidates = [i for i in self.ids() if i not in w.committed]
            added = {i: "" for i in candidates}
        elif not isinstance(added, Mapping):
            added = {i: "" for i in added}
        new = {check_episode_id(i): h for i, h in added.items() if i not in w.committed}
        if not new:
            return Snapshot(w.head, (), time.time())
        for i, h in new.items():
            if not h:  # hash what the caller did not: every committed episode carries its sha256
                new[i] = hashlib.sha256(self.read_bytes(i)).hexdigest()
        version = w.head + 1
        record = _Delta(tuple(new), tuple(new.values()), time.time())
        if not self.blobs.create(_delta_key(version), _encode(version, record)):
            self._writer = None  # someone else committed: reload before the next try
            raise StoreConflict(
                f"snapshot version {version} of {self.location} was committed by another writer"
            )
        self._finish(w, version, record)
        return Snapshot(version, record.ids, record.created_at, record.hashes)

    def _finish(self, w: _WriterState, version: int, record: _Delta) -> None:
        """After version's delta exists: its segment when one is due, then HEAD (readers follow HEAD)."""
        w.apply(version, record)
        if (version - w.legacy_base) % SEGMENT_VERSIONS == 0:
            merged = _Delta(
                tuple(i for d in w.since_segment for i in d.ids),
                tuple(h for d in w.since_segment for h in d.hashes),
                record.created_at,
            )
            # create-only: a segment a rolled-forward commit already wrote holds the same ids
            self.blobs.create(_segment_key(version), _encode(version, merged))
            w.since_segment = []
        self._write_head(version, w.legacy_base)

    def _write_head(self, version: int, legacy_base: int) -> None:
        self.blobs.replace(HEAD_KEY, json.dumps({"version": version, "legacy_base": legacy_base}).encode())

    def _writer_state(self) -> _WriterState:
        """Committed ids and the deltas since the last segment, read once; a crashed commit rolled forward."""
        if self._writer is not None:
            return self._writer
        head, base = self._head()
        w = _WriterState(head=base, legacy_base=base)
        if base:
            w.committed.update(self._read_legacy(base).episode_ids)
        ids, _, _ = self._added_between(base, head, base)
        w.committed.update(ids)
        w.head = head
        first_open = base + (head - base) // SEGMENT_VERSIONS * SEGMENT_VERSIONS + 1
        w.since_segment = [self._read_record(_delta_key(v)) for v in range(first_open, head + 1)]
        while self.blobs.exists(_delta_key(w.head + 1)):  # a writer died after its delta, before HEAD
            self._finish(w, w.head + 1, self._read_record(_delta_key(w.head + 1)))
        self._writer = w
        return w


@dataclass
class _WriterState:
    """What a writer keeps between commits: HEAD, every committed id, the deltas since the last segment."""

    head: int
    legacy_base: int
    committed: set[str] = field(default_factory=set)
    since_segment: list[_Delta] = field(default_factory=list)

    def apply(self, version: int, record: _Delta) -> None:
        self.head = version
        self.committed.update(record.ids)
        self.since_segment.append(record)


def _encode(version: int, record: _Delta) -> bytes:
    return json.dumps(
        {
            "version": version,
            "ids": list(record.ids),
            "sha256": list(record.hashes),
            "created_at": record.created_at,
        }
    ).encode()
