"""Episode state machine: idle -> running -> awaiting label -> done (-> idle on the next start).

A running episode ends by `stop` (then it awaits its label), by `abort`, by an
e-stop (`fail`) or by hitting the time limit (all recorded as failures, no label
needed). An episode awaiting its label blocks every new start, so a label
deadline (`label_deadline_s` > 0) ends it without one: stored as a failure whose
reason says so (`label_timeout`, or `unlabelled` for learners that leave such
episodes out: the episode format has no "unknown" label). Policies
may only be swapped when no episode is running or awaiting its label, so that
an episode never mixes two policies by accident. Refused transitions raise
`TransitionError` with a message meant for the service response.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from lwd_common.episode import Label


class EpisodeState(IntEnum):
    # Values match lwd_msgs/EpisodeStatus constants.
    IDLE = 0
    RUNNING = 1
    AWAITING_LABEL = 2
    DONE = 3


class TransitionError(RuntimeError):
    """A request that the current episode state does not allow."""


@dataclass(frozen=True)
class Ending:
    """How an episode ended, once it has ended (label known)."""

    label: Label
    reason: str  # labelled | time_limit | abort | estop | label_timeout | unlabelled
    note: str = ""


LABEL_TIMEOUT_REASONS = ("label_timeout", "unlabelled")  # `Ending.reason` of an episode nobody labelled


class EpisodeStateMachine:
    def __init__(
        self,
        time_limit_s: float = 60.0,
        label_deadline_s: float = 0.0,
        label_timeout_reason: str = "label_timeout",
    ):
        """`label_deadline_s`: an episode awaiting its label this long is stored as a failure with
        reason `label_timeout_reason`; 0 waits for the label forever."""
        if time_limit_s <= 0:
            raise ValueError("time_limit_s must be > 0")
        if label_deadline_s < 0:
            raise ValueError("label_deadline_s must be >= 0 (0: wait forever)")
        if label_timeout_reason not in LABEL_TIMEOUT_REASONS:
            raise ValueError(f"label_timeout_reason must be one of {LABEL_TIMEOUT_REASONS}")
        self.time_limit_s = time_limit_s
        self.label_deadline_s = label_deadline_s
        self.label_timeout_reason = label_timeout_reason
        self.stopped_at: float | None = None  # when the episode began awaiting its label
        self.state = EpisodeState.IDLE
        self.episode_id = ""
        self.task = ""
        self.instruction = ""
        self.started_at: float | None = None
        self.ending: Ending | None = None

    @property
    def can_swap_policy(self) -> bool:
        return self.state in (EpisodeState.IDLE, EpisodeState.DONE)

    def label_wait_s(self, now: float) -> float | None:
        """How long the episode has been awaiting its label (None if it is not)."""
        if self.state is not EpisodeState.AWAITING_LABEL or self.stopped_at is None:
            return None
        return max(0.0, now - self.stopped_at)

    def label_deadline_in_s(self, now: float) -> float | None:
        """Seconds until an unlabelled episode is stored without its label (None: no deadline running)."""
        wait = self.label_wait_s(now)
        if wait is None or self.label_deadline_s <= 0:
            return None
        return max(0.0, self.label_deadline_s - wait)

    def start(self, episode_id: str, task: str, instruction: str, now: float) -> None:
        if self.state not in (EpisodeState.IDLE, EpisodeState.DONE):
            hint = ""
            if self.state is EpisodeState.AWAITING_LABEL:
                left = self.label_deadline_in_s(now)
                hint = (
                    " (label it first)"
                    if left is None
                    else f" (label it first, or in {left:.0f} s it is stored as a failure"
                    f" ({self.label_timeout_reason}))"
                )
            raise TransitionError(
                f"cannot start: episode {self.episode_id} is {self.state.name.lower()}{hint}"
            )
        if not task:
            raise TransitionError("cannot start: task is empty")
        self.state = EpisodeState.RUNNING
        self.episode_id, self.task, self.instruction = episode_id, task, instruction
        self.started_at = now
        self.stopped_at = None
        self.ending = None

    def stop(self, abort: bool, reason: str = "", now: float | None = None) -> Ending | None:
        """Stop the running episode; an abort ends it as a failure at once (returned). `now` starts
        the label deadline (without it the deadline starts at the next `check_label_deadline`)."""
        if self.state is not EpisodeState.RUNNING:
            raise TransitionError(f"cannot stop: no episode is running (state {self.state.name.lower()})")
        if abort:
            return self._finish(Ending(Label.FAILURE, "abort", reason))
        self.state = EpisodeState.AWAITING_LABEL
        self.stopped_at = now
        return None

    def fail(self, reason: str, note: str = "") -> Ending:
        """End the running episode as a failure for `reason` (e.g. "estop"), no label needed."""
        if self.state is not EpisodeState.RUNNING:
            raise TransitionError(f"cannot end: no episode is running (state {self.state.name.lower()})")
        return self._finish(Ending(Label.FAILURE, reason, note))

    def check_label_deadline(self, now: float) -> Ending | None:
        """Store an episode that waited past the label deadline without its label (failure)."""
        if self.state is not EpisodeState.AWAITING_LABEL or self.label_deadline_s <= 0:
            return None
        if self.stopped_at is None:
            self.stopped_at = now
        if now - self.stopped_at >= self.label_deadline_s - 1e-9:
            return self._finish(
                Ending(
                    Label.FAILURE, self.label_timeout_reason, f"no label within {self.label_deadline_s:g} s"
                )
            )
        return None

    def label(self, success: bool, note: str = "") -> Ending:
        if self.state is not EpisodeState.AWAITING_LABEL:
            raise TransitionError(
                f"cannot label: no episode is awaiting a label (state {self.state.name.lower()})"
            )
        return self._finish(Ending(Label.SUCCESS if success else Label.FAILURE, "labelled", note))

    def check_time_limit(self, now: float) -> Ending | None:
        """End a running episode that has run out of time (failure)."""
        if self.state is EpisodeState.RUNNING and self.started_at is not None:
            if now - self.started_at >= self.time_limit_s - 1e-9:  # float-safe at exact multiples
                return self._finish(
                    Ending(Label.FAILURE, "time_limit", f"time limit {self.time_limit_s:g} s")
                )
        return None

    def _finish(self, ending: Ending) -> Ending:
        self.state = EpisodeState.DONE
        self.ending = ending
        return ending
