"""The simulated teleoperator's judgement, ROS-free: when to press the pedal, release it, and end episodes.

A human operator watching a learning robot steps in when the policy stalls (the
arm barely moves for a while), drifts (a gripper leaves the workspace or heads into
the table) or makes no progress (no new sub-task for a while),
drives the robot until it has made progress again, releases, and at the end
labels the episode from what they see (here: the simulator's success signal).
`OperatorBrain.observe` implements those rules and returns one decision per call.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
from enum import Enum

import numpy as np


@dataclass(frozen=True)
class OperatorRules:
    # never intervene right after the episode starts; raised, a late operator: no takeover before this
    # time into the episode (a stall before it is rescued, if at all, once it is over)
    startup_grace_s: float = 1.0
    stall_window_s: float = 1.0  # the policy stalls if the arms move less than stall_motion_rad over this
    stall_motion_rad: float = 0.03
    # ... or if no new sub-task was done for this long; 0: a quarter of time_limit_s. Early enough that
    # help still finishes the task: the expert taking over can_to_bin at 1.5 s of 8 s finished 8/8
    # episodes, at 4.5 s only 4/8 (most online data were failures with the old fixed 6 s).
    no_progress_s: float = 0.0
    engage_min_s: float = 1.0  # once engaged, drive at least this long
    release_after_subtasks: int = 1  # release after this many new sub-tasks (or success)
    max_engaged_s: float = 20.0  # give control back after this long regardless
    max_interventions: int = 3  # per episode
    settle_s: float = 0.3  # wait after success before stopping the episode
    time_limit_s: float = 60.0  # stop and label failure after this long
    intervene: bool = True  # false: only label (pure autonomous evaluation)
    # A sparser operator: the chance that a trouble (stall, no progress or drift) is rescued, drawn
    # once when it starts (seeded, OperatorBrain's rng). A trouble let go stays let go until it clears
    # (the arm moves again, a new sub-task, back in the workspace): the policy recovers or fails alone.
    rescue_probability: float = 1.0
    # The policy drifts if a tool centre point leaves this box (x, y, z ranges in metres, world frame):
    # off the reachable table area, or down into the table top (0.75 m).
    workspace: tuple[tuple[float, float], tuple[float, float], tuple[float, float]] = (
        (0.15, 0.85),
        (-0.6, 0.6),
        (0.76, 1.4),
    )

    def __post_init__(self) -> None:
        for name in ("stall_window_s", "time_limit_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if not 0.0 <= self.rescue_probability <= 1.0:
            raise ValueError("rescue_probability must be in [0, 1]")
        if self.no_progress_s < 0:
            raise ValueError("no_progress_s must be >= 0 (0: a quarter of time_limit_s)")
        if self.no_progress_s == 0:
            object.__setattr__(self, "no_progress_s", 0.25 * self.time_limit_s)


PARAMETER_NAMES = (
    "startup_grace_s",
    "stall_window_s",
    "stall_motion_rad",
    "no_progress_s",
    "engage_min_s",
    "release_after_subtasks",
    "max_engaged_s",
    "max_interventions",
    "settle_s",
    "intervene",
    "rescue_probability",
)


def default_parameters() -> dict:
    """The rules' declared defaults as node parameters (no_progress_s still 0: 'a quarter of the
    time limit', resolved only once the episode's time limit is known)."""
    return {f.name: f.default for f in fields(OperatorRules) if f.name in PARAMETER_NAMES}


def rules_from_parameters(values: dict, time_limit_s: float) -> OperatorRules:
    """Rules from node parameters (missing ones take their defaults) for an episode time limit."""
    defaults = default_parameters()
    typed = {k: type(defaults[k])(values.get(k, defaults[k])) for k in PARAMETER_NAMES}
    return OperatorRules(**typed, time_limit_s=time_limit_s)


class Decision(Enum):
    NONE = "none"
    ENGAGE = "engage"
    RELEASE = "release"
    STOP_SUCCESS = "stop_success"
    STOP_FAILURE = "stop_failure"


@dataclass(frozen=True)
class Progress:
    success: bool
    failed: bool
    subtasks_done: int


class OperatorBrain:
    """`rng` (a seed or a Generator, kept across episodes) draws which troubles are rescued
    (`OperatorRules.rescue_probability`); nothing is drawn when every trouble is rescued."""

    def __init__(self, rules: OperatorRules = OperatorRules(), rng: np.random.Generator | int = 0):
        self.rules = rules
        self.rng = np.random.default_rng(rng)
        self.start_time = 0.0
        self.engaged = False
        self.engaged_since = 0.0
        self.subtasks_at_engage = 0
        self.interventions = 0
        self.last_progress_time = 0.0
        self.best_subtasks = 0
        self.success_since: float | None = None
        self.history: deque[tuple[float, np.ndarray]] = deque()
        self.reason = ""
        self.letting_go = False  # a trouble drawn not to be rescued has not cleared yet
        self.let_go = 0  # troubles not rescued this episode

    def start_episode(self, t: float) -> None:
        self.__init__(self.rules, self.rng)
        self.start_time = t
        self.last_progress_time = t

    def _stalled(self, t: float, q: np.ndarray) -> bool:
        self.history.append((t, np.asarray(q, float)[:14].copy()))
        while self.history and self.history[0][0] < t - self.rules.stall_window_s:
            self.history.popleft()
        if (
            len(self.history) < 2
            or self.history[-1][0] - self.history[0][0] < 0.9 * self.rules.stall_window_s
        ):
            return False
        qs = np.stack([h[1] for h in self.history])
        return float(np.max(qs.max(0) - qs.min(0))) < self.rules.stall_motion_rad

    def _drifted(self, tcp: np.ndarray | None) -> bool:
        if tcp is None:
            return False
        box = np.asarray(self.rules.workspace, float)
        pts = np.atleast_2d(np.asarray(tcp, float))
        return bool(((pts < box[:, 0]) | (pts > box[:, 1])).any())

    def observe(
        self, t: float, joint_pos: np.ndarray, p: Progress, tcp: np.ndarray | None = None
    ) -> Decision:
        """One decision per control tick; `tcp` ([2, 3] tool centre points) enables the drift rule."""
        r = self.rules
        stalled = self._stalled(t, joint_pos)
        if p.subtasks_done > self.best_subtasks:
            self.best_subtasks = p.subtasks_done
            self.last_progress_time = t
        if p.success:
            if self.success_since is None:
                self.success_since = t
            if t - self.success_since >= r.settle_s:
                self.reason = "sim_success"
                return Decision.STOP_SUCCESS
            return Decision.NONE
        self.success_since = None
        if p.failed:
            self.reason = "sim_failed"
            return Decision.STOP_FAILURE
        if t - self.start_time > r.time_limit_s:
            self.reason = "time_limit"
            return Decision.STOP_FAILURE
        if self.engaged:
            held = t - self.engaged_since
            progressed = p.subtasks_done >= self.subtasks_at_engage + r.release_after_subtasks
            if (held >= r.engage_min_s and progressed) or held > r.max_engaged_s:
                self.engaged = False
                self.last_progress_time = t
                self.history.clear()
                self.reason = "progress" if progressed else "max_engaged"
                return Decision.RELEASE
            return Decision.NONE
        if not r.intervene or self.interventions >= r.max_interventions:
            return Decision.NONE
        if t - self.start_time < r.startup_grace_s:
            return Decision.NONE
        no_progress = t - self.last_progress_time > r.no_progress_s
        drifted = self._drifted(tcp)
        trouble = stalled or no_progress or drifted
        if self.letting_go:
            self.letting_go = trouble
            return Decision.NONE
        if trouble and r.rescue_probability < 1.0 and self.rng.random() >= r.rescue_probability:
            self.letting_go = True
            self.let_go += 1
            return Decision.NONE
        if trouble:
            self.engaged = True
            self.engaged_since = t
            self.subtasks_at_engage = p.subtasks_done
            self.interventions += 1
            self.reason = "drift" if drifted else ("stall" if stalled else "no_progress")
            return Decision.ENGAGE
        return Decision.NONE
