"""Episode state machine: idle -> running -> awaiting label -> done (-> idle on the next start).

A running episode ends by `stop` (then it awaits its label), by `abort` or by
hitting the time limit (both recorded as failures, no label needed). Policies
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
    reason: str  # labelled | time_limit | abort
    note: str = ""


class EpisodeStateMachine:
    def __init__(self, time_limit_s: float = 60.0):
        if time_limit_s <= 0:
            raise ValueError("time_limit_s must be > 0")
        self.time_limit_s = time_limit_s
        self.state = EpisodeState.IDLE
        self.episode_id = ""
        self.task = ""
        self.instruction = ""
        self.started_at: float | None = None
        self.ending: Ending | None = None

    @property
    def can_swap_policy(self) -> bool:
        return self.state in (EpisodeState.IDLE, EpisodeState.DONE)

    def start(self, episode_id: str, task: str, instruction: str, now: float) -> None:
        if self.state not in (EpisodeState.IDLE, EpisodeState.DONE):
            raise TransitionError(
                f"cannot start: episode {self.episode_id} is {self.state.name.lower()}"
                + (" (label it first)" if self.state is EpisodeState.AWAITING_LABEL else "")
            )
        if not task:
            raise TransitionError("cannot start: task is empty")
        self.state = EpisodeState.RUNNING
        self.episode_id, self.task, self.instruction = episode_id, task, instruction
        self.started_at = now
        self.ending = None

    def stop(self, abort: bool, reason: str = "") -> Ending | None:
        """Stop the running episode; an abort ends it as a failure at once (returned)."""
        if self.state is not EpisodeState.RUNNING:
            raise TransitionError(f"cannot stop: no episode is running (state {self.state.name.lower()})")
        if abort:
            return self._finish(Ending(Label.FAILURE, "abort", reason))
        self.state = EpisodeState.AWAITING_LABEL
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
                return self._finish(Ending(Label.FAILURE, "time_limit", f"time limit {self.time_limit_s:g} s"))
        return None

    def _finish(self, ending: Ending) -> Ending:
        self.state = EpisodeState.DONE
        self.ending = ending
        return ending
