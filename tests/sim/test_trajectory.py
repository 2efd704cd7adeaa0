"""joint_trajectory following, as a JointTrajectoryController would."""

import numpy as np
import pytest

from lwd_description.robot import JOINT_NAMES
from lwd_sim.trajectory import TrajectoryFollower


def test_interpolates_named_joints_and_keeps_the_others():
    f = TrajectoryFollower(JOINT_NAMES)
    current = np.arange(16, dtype=float)
    f.set(["left_arm_joint2"], [0.0, 1.0], [[0.0], [1.0]], now=10.0, current=current)
    mid = f.sample(10.5)
    assert mid[1] == pytest.approx(0.5)
    assert np.delete(mid, 1) == pytest.approx(np.delete(current, 1))
    assert f.sample(99.0)[1] == pytest.approx(1.0)


def test_nothing_to_follow_until_set_and_after_clear():
    f = TrajectoryFollower(JOINT_NAMES)
    assert f.sample(0.0) is None
    f.set(["left_arm_joint1"], [0.5], [[0.1]], 0.0, np.zeros(16))
    f.clear()
    assert f.sample(1.0) is None


@pytest.mark.parametrize(
    "names,times,points,match",
    [
        (["elbow"], [1.0], [[0.0]], "unknown joints"),
        (["left_arm_joint1"], [], [], "no points"),
        (["left_arm_joint1"], [1.0, 0.5], [[0.0], [1.0]], "increase"),
        (["left_arm_joint1"], [1.0], [[0.0, 1.0]], "positions"),
        (["left_arm_joint1"], [1.0], [[float("nan")]], "NaN"),
    ],
)
def test_bad_trajectories_are_refused(names, times, points, match):
    with pytest.raises(ValueError, match=match):
        TrajectoryFollower(JOINT_NAMES).set(names, times, points, 0.0, np.zeros(16))
