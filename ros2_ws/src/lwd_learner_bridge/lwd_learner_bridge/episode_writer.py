"""Episode writer: a complete set of frames -> one verified episode file in the store.

Assembling, hashing and fsyncing a long episode takes a while, so with threads
it runs off the frame loop (fsync releases the GIL, so a burst of episode ends
is written in parallel); without threads (tests) it runs inline. A writer
touches only the store and the frames handed to it; results are picked up by
the frame loop (`finished`), which alone decides what the robot is told.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lwd_common.episode import Episode, encode_episode, outcome_from_dict
from lwd_common.store import EpisodeStore

if TYPE_CHECKING:
    from lwd_learner_bridge.assembly import Partial


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
        steps = [s for seq in sorted(p.chunks) for s in p.chunks[seq]]
        episode = Episode.from_steps(p.meta, steps, outcome_from_dict(end["outcome"]))
        data = encode_episode(episode)
    except (ValueError, TypeError, KeyError) as exc:
        return WriteResult(peer, eid, None, "bad_episode", f"episode {eid} does not assemble: {exc}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != end["content_hash"] or episode.num_steps != end["num_steps"]:
        return WriteResult(peer, eid, None, "hash_mismatch", (
            f"episode {eid}: assembled {episode.num_steps} steps with hash {digest[:12]}.., robot sent "
            f"{end['num_steps']} steps {end['content_hash'][:12]}.."))
    try:
        store.put_encoded(eid, data)
    except OSError as exc:
        return WriteResult(peer, eid, None, "store_error", f"bridge could not store {eid}: {exc}; retry later")
    return WriteResult(peer, eid, digest)


class EpisodeWriter:
    def __init__(self, store: EpisodeStore, threads: int):
        self.store = store
        self._jobs: queue.Queue = queue.Queue()
        self._done: queue.Queue[WriteResult] = queue.Queue()
        self._threads = [threading.Thread(target=self._loop, name=f"episode-writer-{i}", daemon=True)
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def submit(self, peer: bytes, eid: str, p: Partial) -> None:
        if self._threads:
            self._jobs.put((peer, eid, p))
        else:
            self._done.put(write_episode(self.store, peer, eid, p))

    def finished(self) -> list[WriteResult]:
        """Results of the writes done since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._done.put(write_episode(self.store, *job))

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(timeout=60)
