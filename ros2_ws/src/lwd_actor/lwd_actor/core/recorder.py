"""Episode recorder: turns control ticks into `StepRecord`s and hands them to an `EpisodeSink`.

JPEG encoding (a few ms for three frames) and the sink's I/O must not stall the
30 Hz tick, so the control thread only enqueues raw frames (references, no
copies: frames are never mutated after they are received) and a worker thread
encodes and forwards them, in order. The queue of pending steps is bounded;
if it overflows the step is dropped, counted and reported in the episode's
outcome note and diagnostics, never silently. begin/end are never dropped.

`close(timeout)` is bounded (the actor's shutdown): steps still waiting for their
JPEG encoding when the time left runs short are dropped, counted and named in their
episode's note, so that the episode's end still reaches the sink in time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from lwd_common.episode import ActionSource, EpisodeMeta, EpisodeOutcome, EpisodeSink, StepRecord
from lwd_common.preprocessing import encode_jpeg


@dataclass(frozen=True)
class RawStep:
    step: int
    stamp: float
    images: dict[str, np.ndarray]
    joint_pos: np.ndarray
    action: np.ndarray
    source: ActionSource
    chunk_id: int
    policy_version: str


# What the worker hands to the sink, in order: an episode's start, its steps, its end.
_Item = EpisodeMeta | RawStep | EpisodeOutcome


def _kind(item: _Item) -> str:
    """The sink call `item` is for, as error messages name it."""
    if isinstance(item, EpisodeMeta):
        return "begin"
    return "step" if isinstance(item, RawStep) else "end"


class EpisodeRecorder:
    def __init__(
        self,
        sink: EpisodeSink,
        jpeg_quality: int = 80,
        max_pending_steps: int = 300,
        on_error: Callable[[str], None] | None = None,
    ):
        if not 1 <= jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in 1..100")
        self.sink = sink
        self.jpeg_quality = jpeg_quality
        self.max_pending_steps = max_pending_steps
        self._on_error = on_error or (lambda msg: None)
        self._items: deque[_Item] = deque()
        self._pending_steps = 0
        self._cond = threading.Condition()
        self._busy = False
        self._stop = False
        self._open = False
        self.dropped_steps = 0  # total, all episodes
        self._dropped_this_episode = 0
        self._delivered_this_episode = 0
        self.recorded_steps = 0
        self.episodes_ended = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="lwd-recorder", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._cond:
            return self._pending_steps

    def begin(self, meta: EpisodeMeta) -> None:
        self._dropped_this_episode = 0
        self._open = True
        self._put(meta)

    def add(self, step: RawStep) -> bool:
        """Queue one step; False (and counted) if the queue is full or no episode is open."""
        if not self._open:
            return False
        with self._cond:
            if self._pending_steps >= self.max_pending_steps:
                self.dropped_steps += 1
                self._dropped_this_episode += 1
                return False
            self._pending_steps += 1
            self._items.append(step)
            self._cond.notify_all()
        return True

    def end(self, outcome: EpisodeOutcome) -> None:
        if self._dropped_this_episode:
            note = f"{outcome.note} [recorder dropped {self._dropped_this_episode} steps]".strip()
            outcome = replace(outcome, note=note)
        self._open = False
        self._put(outcome)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything queued has reached the sink."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._busy, timeout)

    def close(self, timeout: float = 10.0, end_reserve_s: float | None = None) -> bool:
        """Hand what is queued to the sink and stop the thread, within `timeout` seconds.

        Steps still queued when only `end_reserve_s` (default: half the timeout) is left are
        dropped (counted; their episode's outcome note says how many), so that begin/end items
        still get their turn. True if the queue emptied and the thread ended in time; False leaves
        the (daemon) thread finishing the sink call it is in."""
        deadline = time.monotonic() + timeout
        reserve = timeout / 2 if end_reserve_s is None else min(end_reserve_s, timeout)
        if not self.flush(timeout - reserve):
            self._shed_steps("the actor was shutting down")
            self.flush(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def _shed_steps(self, why: str) -> int:
        """Drop every queued step; each episode end queued after dropped steps gets a note. Returns how many."""
        with self._cond:
            kept: deque[_Item] = deque()
            shed = run = 0
            for item in self._items:
                if isinstance(item, RawStep):
                    run += 1
                    continue
                if isinstance(item, EpisodeOutcome) and run:
                    item = replace(item, note=f"{item.note} [{run} steps not recorded: {why}]".strip())
                shed, run = shed + run, 0
                kept.append(item)
            shed += run
            if run and self._open:  # steps of the episode still open: its end() notes them
                self._dropped_this_episode += run
            self._items = kept
            self._pending_steps = 0
            self.dropped_steps += shed
            self._cond.notify_all()
        return shed

    def _put(self, item: EpisodeMeta | EpisodeOutcome) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def _encode(self, raw: RawStep) -> StepRecord:
        return StepRecord(
            step=raw.step,
            stamp=raw.stamp,
            images={cam: encode_jpeg(img, self.jpeg_quality) for cam, img in raw.images.items()},
            joint_pos=np.asarray(raw.joint_pos, np.float32),
            action=np.asarray(raw.action, np.float32),
            source=raw.source,
            chunk_id=raw.chunk_id,
            policy_version=raw.policy_version,
        )

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._items or self._stop)
                if not self._items:
                    return
                item = self._items.popleft()
                if isinstance(item, RawStep):
                    self._pending_steps -= 1
                self._busy = True
            try:
                if isinstance(item, EpisodeMeta):
                    self._delivered_this_episode = 0
                    self.sink.begin(item)
                elif isinstance(item, RawStep):
                    self.sink.add_step(self._encode(item))
                    self.recorded_steps += 1
                    self._delivered_this_episode += 1
                else:
                    # The episode holds exactly the steps the sink received.
                    self.sink.end(replace(item, num_steps=self._delivered_this_episode))
                    self.episodes_ended += 1
            except Exception as exc:  # noqa: BLE001 - a sink failure must not kill recording or control
                self.errors += 1
                self._on_error(f"recorder: sink {_kind(item)} failed: {type(exc).__name__}: {exc}")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
