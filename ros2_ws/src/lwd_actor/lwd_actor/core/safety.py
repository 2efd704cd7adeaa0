"""Safety filter on every outgoing command, and the stale-input guard.

Order of checks for one proposed target: non-finite values -> hold the last
command (a NaN must never be clipped into a plausible number); otherwise clip
to the URDF position limits, then limit the change from the last command to
`velocity * dt * velocity_scale` per joint. Stale inputs are judged separately
(`StaleGuard`) because they make the robot hold before any target is proposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from lwd_description.robot import CONTROL_HZ, JointLimits


class HoldReason(StrEnum):
    NONE = ""
    NONFINITE = "nonfinite_target"
    STALE = "stale_input"
    DRY = "timeline_dry"  # no policy target for this step (waiting for a chunk)
    NO_TELEOP = "no_teleop_target"  # pedal held but no teleop target received yet
    ESTOP = "estop"  # e-stop engaged: hold briefly, then send nothing
    WATCHDOG = "watchdog"  # the control thread or the inference stalled beyond its bound


@dataclass(frozen=True)
class SafetyConfig:
    control_hz: float = CONTROL_HZ
    velocity_scale: float = 1.0  # fraction of the URDF velocity limit allowed per step

    def __post_init__(self) -> None:
        if not (self.control_hz > 0 and 0 < self.velocity_scale <= 1.0):
            raise ValueError("control_hz must be > 0 and velocity_scale in (0, 1]")


@dataclass(frozen=True)
class FilterResult:
    command: np.ndarray  # (J,) float64, always finite and within limits
    held: bool  # True if the proposed target was refused and the last command repeated
    clamped_position: bool
    clamped_velocity: bool
    reason: HoldReason = HoldReason.NONE


class SafetyFilter:
    def __init__(self, limits: JointLimits, config: SafetyConfig = SafetyConfig()):
        self.limits = limits
        self.config = config
        self.max_step = limits.velocity * config.velocity_scale / config.control_hz
        self.position_clamps = 0
        self.velocity_clamps = 0
        self.nonfinite_holds = 0

    def hold(self, last_command: np.ndarray, reason: HoldReason) -> FilterResult:
        """Repeat the last command (itself already safe) and say why."""
        return FilterResult(
            self.limits.clip(np.asarray(last_command, np.float64)), True, False, False, reason
        )

    def apply(self, target: np.ndarray, last_command: np.ndarray) -> FilterResult:
        """Make `target` safe to send given the previously sent `last_command`."""
        target = np.asarray(target, dtype=np.float64)
        if target.shape != self.limits.lower.shape:
            raise ValueError(f"target has shape {target.shape}, want {self.limits.lower.shape}")
        if not np.isfinite(target).all():
            self.nonfinite_holds += 1
            return self.hold(last_command, HoldReason.NONFINITE)
        clipped = self.limits.clip(target)
        pos = bool((clipped != target).any())
        last = np.asarray(last_command, dtype=np.float64)
        limited = np.clip(clipped, last - self.max_step, last + self.max_step)
        # Keep the result inside the position limits even if the last command was not.
        limited = self.limits.clip(limited)
        vel = bool((limited != clipped).any())
        self.position_clamps += pos
        self.velocity_clamps += vel
        return FilterResult(limited, False, pos, vel)


def chunk_violation(actions: np.ndarray, horizon: int, limits: JointLimits, margin: float) -> str:
    """Why a policy's chunk breaks the policy contract ("" if it keeps it): not [<= horizon, J]
    floats, non-finite values, or a target beyond its joint's range by more than `margin` times the
    range. Such a chunk is never executed (the actor faults, `ActorCore`): a graph that lies about its
    output shape, or drives 1e6 rad, is broken, and clamping it would drive the robot to its limits."""
    a = np.asarray(actions)
    joints = len(limits.lower)
    if a.ndim != 2 or a.shape[1] != joints or not 1 <= a.shape[0] <= horizon:
        return f"chunk has shape {list(a.shape)}, the contract is [{horizon}, {joints}]"
    if not np.issubdtype(a.dtype, np.floating):
        return f"chunk has dtype {a.dtype}, the contract is float"
    if not np.isfinite(a).all():
        return "chunk has non-finite values (NaN/Inf)"
    slack = margin * (limits.upper - limits.lower)
    beyond = np.maximum(limits.lower - slack - a, a - limits.upper - slack)
    if (beyond > 0).any():
        row, j = np.unravel_index(int(np.argmax(beyond)), beyond.shape)
        return (
            f"chunk row {row} drives {limits.names[j]} to {a[row, j]:.6g}, outside its range "
            f"[{limits.lower[j]:.4g}, {limits.upper[j]:.4g}] by more than {margin:g} x the range"
        )
    return ""


@dataclass(frozen=True)
class StaleGuard:
    """Inputs older than `max_age_s` (by their header stamps, in the node's clock) make the robot hold."""

    max_age_s: float = 0.5

    def stale_inputs(self, now: float, stamps: dict[str, float | None]) -> list[str]:
        """Names whose latest stamp is missing or older than max_age_s at `now`."""
        return sorted(name for name, t in stamps.items() if t is None or now - t > self.max_age_s)
