"""Chunk scheduler: a timeline of joint targets indexed by control step.

The policy produces chunks of H targets starting at the step of the observation
they were inferred from. Inference takes a few ticks, so by the time a chunk
arrives its first rows are already in the past: those are dropped, and the rest
is stitched onto the timeline by step index. The next chunk is requested while
the current one still has `request_threshold` steps left, so that (with inference
faster than that many ticks) the timeline never runs dry. If it does, the tick
holds and the event is counted.

Where an arriving chunk overlaps the plan, `SchedulerConfig.merge` decides:
REPLACE (the newer chunk wins), BLEND (linear cross-fade over `blend_steps`) or
ENSEMBLE (ACT's temporal ensembling: each step's target is the weighted average of
every chunk's prediction for it, weight exp(-ensemble_decay * i), i = 0 for the
oldest prediction of that step, 1 for the next, ... as in ACT, Zhao et al. 2023).
Oldest-first with a positive decay favours the plan already being executed, so a new
chunk is eased in rather than switched to; ensemble_decay 0 is a plain mean. ACT
re-plans every step; here a chunk is asked for when `request_threshold` steps remain,
so a step averages up to ceil(H / (H - request_threshold)) predictions (3 at the default
request_threshold 20 with H = 30, 2 at 12).

Defaults (ENSEMBLE, request_threshold 20): the best measured on held-out can_to_bin episodes
through the actor's execution path, by success then chunk-boundary smoothness
(docs/results/chunk_stitching.md, experiments/chunk_stitching.py). With H = 30 a chunk late by
d ticks never starves the timeline while d <= min(request_threshold, (H - 2) // 2): 14 ticks at 20.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class MergeMode(StrEnum):
    REPLACE = "replace"  # the newer chunk wins on every overlapping step
    BLEND = "blend"  # linear cross-fade from the old to the new chunk over the overlap
    ENSEMBLE = "ensemble"  # ACT temporal ensembling: weighted mean of every chunk's prediction


@dataclass(frozen=True)
class SchedulerConfig:
    request_threshold: int = 20  # request the next chunk when this many future steps (or fewer) remain:
    # re-plan every H - request_threshold rows (10 with H = 30) when inference is in time
    merge: MergeMode = MergeMode.ENSEMBLE
    blend_steps: int = 8  # BLEND: cross-fade length (capped at the overlap)
    ensemble_decay: float = 0.01  # ENSEMBLE: m in exp(-m * i), i = 0 the oldest prediction (ACT's 0.01)

    def __post_init__(self) -> None:
        if self.request_threshold < 1:
            raise ValueError("request_threshold must be >= 1")
        if self.blend_steps < 1:
            raise ValueError("blend_steps must be >= 1")
        if not (self.ensemble_decay >= 0 and np.isfinite(self.ensemble_decay)):
            raise ValueError("ensemble_decay must be a finite number >= 0")
        object.__setattr__(self, "merge", MergeMode(self.merge))


@dataclass(frozen=True)
class ScheduledTarget:
    target: np.ndarray  # (16,)
    chunk_id: int


class ChunkScheduler:
    """Not thread-safe: owned by the control loop; chunks are handed in on its thread."""

    def __init__(self, config: SchedulerConfig = SchedulerConfig()):
        self.config = config
        self._targets: dict[int, np.ndarray] = {}
        self._chunk_of: dict[int, int] = {}
        # ENSEMBLE: per step, the weighted sum of predictions, the sum of weights, their count
        self._acc: dict[int, tuple[np.ndarray, float, int]] = {}
        self.dry_events = 0  # times the timeline ran out after having had targets
        self.dry_ticks = 0  # ticks spent dry (includes the ticks of dry_events)
        self.dropped_rows = 0  # rows of arriving chunks that were already in the past
        self._was_supplied = False

    def clear(self) -> None:
        """Forget all pending targets (pedal takeover, episode boundaries)."""
        self._targets.clear()
        self._chunk_of.clear()
        self._acc.clear()
        self._was_supplied = False

    def remaining(self, step: int) -> int:
        """Number of consecutive scheduled steps from `step` on (inclusive)."""
        n = 0
        while (step + n) in self._targets:
            n += 1
        return n

    def target_at(self, step: int) -> np.ndarray | None:
        """The planned target of `step`, if any (not removed)."""
        return self._targets.get(step)

    def needs_chunk(self, step: int) -> bool:
        return self.remaining(step) <= self.config.request_threshold

    def add_chunk(self, start_step: int, targets: np.ndarray, chunk_id: int, now_step: int) -> int:
        """Stitch a chunk whose row 0 belongs to `start_step`; returns rows kept (future ones)."""
        targets = np.array(targets, dtype=np.float64)  # a copy: blending must not alter the caller's chunk
        if targets.ndim != 2:
            raise ValueError(f"chunk must be [H, J], got shape {targets.shape}")
        first = max(start_step, now_step)
        skip = first - start_step
        self.dropped_rows += min(skip, len(targets))
        rows = targets[skip:]
        if len(rows) == 0:
            return 0
        steps = range(first, first + len(rows))
        overlap = [s for s in steps if s in self._targets]
        if self.config.merge is MergeMode.BLEND and overlap:
            n = min(len(overlap), self.config.blend_steps)
            for k, s in enumerate(overlap[:n]):
                w = (k + 1) / (n + 1)  # weight of the new chunk grows across the cross-fade
                rows[s - first] = (1.0 - w) * self._targets[s] + w * rows[s - first]
        if self.config.merge is MergeMode.ENSEMBLE:
            for k, s in enumerate(steps):
                total, wsum, count = self._acc.get(s, (np.zeros_like(rows[k]), 0.0, 0))
                w = float(np.exp(-self.config.ensemble_decay * count))  # count = this prediction's age index
                total, wsum = total + w * rows[k], wsum + w
                self._acc[s] = (total, wsum, count + 1)
                rows[k] = total / wsum
        # Steps beyond the new chunk keep nothing of the old one: a stale tail would
        # otherwise be executed after a fresher plan ends.
        for s in [s for s in self._targets if s >= first + len(rows)]:
            del self._targets[s]
            del self._chunk_of[s]
            self._acc.pop(s, None)
        for s, row in zip(steps, rows, strict=True):
            self._targets[s] = row
            self._chunk_of[s] = chunk_id
        return len(rows)

    def pop(self, step: int) -> ScheduledTarget | None:
        """Target for `step`, dropping everything before it; None (counted) if the timeline is dry."""
        for s in [s for s in self._targets if s < step]:
            del self._targets[s]
            del self._chunk_of[s]
        for s in [s for s in self._acc if s <= step]:
            del self._acc[s]
        target = self._targets.pop(step, None)
        if target is None:
            self.dry_ticks += 1
            if self._was_supplied:
                self.dry_events += 1
                self._was_supplied = False
            return None
        self._was_supplied = True
        return ScheduledTarget(target, self._chunk_of.pop(step))
