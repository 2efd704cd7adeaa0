"""Making written episodes durable and visible: commit a snapshot here, or announce them on the queue
for the coordinator (its one job; `assembly.py` decides what was written, this decides when it is safe
to tell the robots).

A store or queue that fails keeps the episodes waiting, retried with back-off (COMMIT_RETRY_MIN_S
doubling to COMMIT_RETRY_MAX_S): robots hear `committed` only once their episodes are durable. At
start, episodes a crashed bridge stored but never committed are committed (or announced) now.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from lwd_common.episode import decode_episode
from lwd_common.store import EpisodeStore
from lwd_learner_bridge.announcements import Announcement, Announcer

log = logging.getLogger("lwd.bridge")

COMMIT_RETRY_MIN_S = 1.0
COMMIT_RETRY_MAX_S = 10.0


@dataclass(frozen=True)
class Written:
    """An episode on the store, waiting to be committed: who sent it and what it hashes to."""

    peer: bytes
    episode_id: str
    digest: str
    ended_at: float
    robot_id: str


class Committer:
    def __init__(self, store: EpisodeStore, announcer: Announcer | None = None):
        self.store = store
        self.announcer = announcer
        self._retry_at = 0.0
        self._backoff_s = COMMIT_RETRY_MIN_S
        if announcer is None:
            self.snapshot_version = store.commit_snapshot().version  # orphans of a crash, committed
        else:
            self.snapshot_version = store.head_version()  # the coordinator's; known here at start only
            self._announce_orphans()

    def ready(self) -> bool:
        """False while backing off after a failure."""
        return time.monotonic() >= self._retry_at

    def commit(self, written: list[Written]) -> bool:
        """Make `written` durable and visible (or queued for the coordinator); False, to retry later, if not."""
        try:
            if self.announcer is not None:
                self.announcer.publish(
                    [Announcement(w.episode_id, w.digest, w.robot_id, w.ended_at) for w in written]
                )
            else:
                snap = self.store.commit_snapshot({w.episode_id: w.digest for w in written})
                self.snapshot_version = snap.version
        except Exception as exc:  # noqa: BLE001 - an object store or queue that is down: wait for it
            log.warning(
                "could not commit %d episodes (%s: %s); retrying in %.0f s",
                len(written),
                type(exc).__name__,
                exc,
                self._backoff_s,
            )
            self._retry_at = time.monotonic() + self._backoff_s
            self._backoff_s = min(COMMIT_RETRY_MAX_S, 2 * self._backoff_s)
            return False
        self._backoff_s = COMMIT_RETRY_MIN_S
        return True

    def _announce_orphans(self) -> None:
        assert self.announcer is not None
        snap = self.store.latest_snapshot()
        committed = set(snap.episode_ids) if snap else set()
        orphans = [i for i in self.store.ids() if i not in committed]
        if not orphans:
            return
        log.info("announcing %d stored episodes that no snapshot holds yet", len(orphans))
        found = []
        for i in orphans:
            data = self.store.read_bytes(i)
            meta = decode_episode(data).meta
            found.append(Announcement(i, hashlib.sha256(data).hexdigest(), meta.robot_id, meta.started_at))
        self.announcer.publish(found)
