"""Episode writer: a complete set of frames -> one verified episode file in the store.

Assembling, hashing and fsyncing a long episode takes a while, so with threads
it runs off the frame loop (fsync releases the GIL, so a burst of episode ends
is written in parallel); without threads (tests) it runs inline. A writer
touches only the store and the frames handed to it; results are picked up by
the frame loop (`finished`), which alone decides what the robot is told.

No episode may take a writer down: any exception becomes a refusal of that
episode (`bad_episode`, or `internal` for a bridge bug, which the robot
retries). A writer thread that dies anyway (a nested meta once killed both with
a RecursionError and nothing committed afterwards) is noticed by `supervise`,
which the server calls every second: its episode is answered `internal`, a new
thread takes its place and `health` reports the death for `HEALTH_WINDOW_S`.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from lwd_common.episode import Episode, encode_episode, outcome_from_dict
from lwd_common.store import EpisodeStore
from lwd_learner_bridge.logs import safe, short_traceback

if TYPE_CHECKING:
    from lwd_learner_bridge.assembly import Partial

log = logging.getLogger("lwd.bridge")

HEALTH_WINDOW_S = 300.0  # a writer death keeps the health red this long


class WriteJob(NamedTuple):
    """A complete episode handed to a writer: who sent it, its id, its frames."""

    peer: bytes
    episode_id: str
    partial: Partial


@dataclass(frozen=True)
class WriteResult:
    peer: bytes
    episode_id: str
    digest: str | None  # sha256 of the stored file; None: refused with `code`, `message`
    code: str | None = None
    message: str | None = None


def write_episode(store: EpisodeStore, peer: bytes, eid: str, p: Partial) -> WriteResult:
    """Assemble the episode like the robot did, check steps and sha256, store it atomically."""
    end = p.end
    assert end is not None and p.meta is not None
    try:
        chunks = [p.chunks[seq] for seq in sorted(p.chunks)]
        episode = Episode.from_columns(p.meta, chunks, outcome_from_dict(end["outcome"]))
        data = encode_episode(episode)
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
        return WriteResult(
            peer, eid, None, "bad_episode", f"episode {eid} does not assemble: {safe(str(exc))}"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != end["content_hash"] or episode.num_steps != end["num_steps"]:
        return WriteResult(
            peer,
            eid,
            None,
            "hash_mismatch",
            (
                f"episode {eid}: assembled {episode.num_steps} steps with hash {digest[:12]}.., robot sent "
                f"{end['num_steps']} steps {safe(end['content_hash'][:12])}.."
            ),
        )
    try:
        store.put_encoded(eid, data)
    except OSError as exc:
        return WriteResult(
            peer, eid, None, "store_error", f"bridge could not store {eid}: {exc}; retry later"
        )
    return WriteResult(peer, eid, digest)


def write_safely(store: EpisodeStore, peer: bytes, eid: str, p: Partial) -> WriteResult:
    """`write_episode`, with any unexpected exception turned into an `internal` result (logged once)."""
    try:
        return write_episode(store, peer, eid, p)
    except Exception as exc:  # noqa: BLE001 - a bug must cost one episode (retried), never the writer
        log.error("episode writer failed on %s:\n%s", eid, short_traceback(exc))
        return WriteResult(peer, eid, None, "internal", f"bridge failed writing {eid}: {type(exc).__name__}")


class EpisodeWriter:
    def __init__(self, store: EpisodeStore, threads: int):
        self.store = store
        self.size = threads
        self._jobs: queue.Queue[WriteJob | None] = queue.Queue()
        self._done: queue.Queue[WriteResult] = queue.Queue()
        self._current: list[WriteJob | None] = [None] * threads  # what each thread writes
        self._threads: list[threading.Thread] = [self._start(i) for i in range(threads)]
        self._closing = False
        self.restarts = 0
        self.deaths: list[tuple[float, str]] = []  # (time, why), the most recent few

    def _start(self, slot: int) -> threading.Thread:
        thread = threading.Thread(target=self._loop, args=(slot,), name=f"episode-writer-{slot}", daemon=True)
        thread.start()
        return thread

    def submit(self, peer: bytes, eid: str, p: Partial) -> None:
        if self._threads:
            self._jobs.put(WriteJob(peer, eid, p))
        else:
            self._done.put(write_safely(self.store, peer, eid, p))

    def finished(self) -> list[WriteResult]:
        """Results of the writes done since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def _loop(self, slot: int) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                self._current[slot] = job
                self._done.put(write_safely(self.store, *job))
                self._current[slot] = None
        except BaseException as exc:
            self.deaths = [*self.deaths[-9:], (time.time(), f"{type(exc).__name__}: {safe(str(exc))}")]
            raise

    def supervise(self) -> int:
        """Replace dead writer threads (their episodes are answered `internal`); returns how many died."""
        died = 0
        for slot, thread in enumerate(self._threads):
            if thread.is_alive() or self._closing:
                continue
            died += 1
            job = self._current[slot]
            self._current[slot] = None
            if job is not None:
                self._done.put(
                    WriteResult(
                        job.peer,
                        job.episode_id,
                        None,
                        "internal",
                        f"bridge writer died writing {job.episode_id}; retry",
                    )
                )
            if not self.deaths or time.time() - self.deaths[-1][0] > 1.0:
                self.deaths = [*self.deaths[-9:], (time.time(), "thread ended")]
            log.error("episode writer %d died (%s); restarting it", slot, self.deaths[-1][1])
            self._threads[slot] = self._start(slot)
            self.restarts += 1
        return died

    def health(self, now: float | None = None) -> dict[str, Any]:
        """Writers alive, restarts, and the deaths of the last HEALTH_WINDOW_S (any: the bridge is not healthy)."""
        now = time.time() if now is None else now
        recent = [why for t, why in self.deaths if now - t < HEALTH_WINDOW_S]
        return {
            "writers": self.size,
            "alive": sum(t.is_alive() for t in self._threads),
            "restarts": self.restarts,
            "recent_deaths": recent,
        }

    def close(self) -> None:
        self._closing = True
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(timeout=60)
