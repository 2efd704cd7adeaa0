"""Safety filter: URDF position limits, per-step velocity limits, NaN/inf hold, stale-input guard."""

import numpy as np
import pytest
from conftest import ARM_LIMIT, ARM_VELOCITY

from lwd_actor.core.safety import HoldReason, SafetyFilter, StaleGuard

STEP = ARM_VELOCITY / 30.0


def test_targets_beyond_position_limits_are_clamped(limits):
    f = SafetyFilter(limits)
    last = np.full(16, 0.0)
    last[:14] = ARM_LIMIT - 0.01
    target = last.copy()
    target[:14] = ARM_LIMIT + 1.0
    res = f.apply(target, last)
    assert res.clamped_position and not res.held
    assert (res.command[:14] == ARM_LIMIT).all()


def test_per_step_change_is_limited_to_velocity_times_period(limits):
    f = SafetyFilter(limits)
    target = np.zeros(16)
    target[0] = 1.0
    res = f.apply(target, np.zeros(16))
    assert res.clamped_velocity
    assert res.command[0] == pytest.approx(STEP)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_target_holds_the_last_command(limits, bad):
    f = SafetyFilter(limits)
    last = np.full(16, 0.01)
    target = np.zeros(16)
    target[3] = bad
    res = f.apply(target, last)
    assert res.held and res.reason is HoldReason.NONFINITE
    np.testing.assert_array_equal(res.command, last)
    assert f.nonfinite_holds == 1


def test_command_within_limits_passes_unchanged(limits):
    f = SafetyFilter(limits)
    target = np.full(16, 0.01)
    res = f.apply(target, np.zeros(16))
    np.testing.assert_array_equal(res.command, target)
    assert not (res.held or res.clamped_position or res.clamped_velocity)


def test_wrong_target_length_is_an_error_not_a_command(limits):
    with pytest.raises(ValueError, match="shape"):
        SafetyFilter(limits).apply(np.zeros(8), np.zeros(16))


def test_stale_guard_names_inputs_older_than_the_timeout_or_never_seen():
    g = StaleGuard(max_age_s=0.2)
    stale = g.stale_inputs(10.0, {"head": 9.95, "left_wrist": 9.7, "right_wrist": None, "joint_states": 10.0})
    assert stale == ["left_wrist", "right_wrist"]
