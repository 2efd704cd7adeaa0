"""Bad sensor input is refused with a clear error; approximate sync of three cameras + joints."""

import numpy as np
import pytest

from lwd_actor.core.observation import JOINTS_INPUT, InputError, ordered_joints, rgb_image
from lwd_actor.core.sync import ApproximateSync
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES


def test_rgb8_image_becomes_an_hxwx3_array_ignoring_row_padding():
    data = np.arange(2 * 8, dtype=np.uint8).reshape(2, 8)  # width 2, step 8 (2 bytes padding)
    img = rgb_image("rgb8", 2, 2, 8, data.tobytes())
    assert img.shape == (2, 2, 3) and img[1, 1, 2] == data[1, 5]


def test_bgr8_image_is_converted_to_rgb():
    img = rgb_image("bgr8", 1, 1, 3, bytes([1, 2, 3]))
    assert img.tolist() == [[[3, 2, 1]]]


@pytest.mark.parametrize(
    ("encoding", "h", "w", "step", "nbytes", "match"),
    [
        ("mono8", 2, 2, 6, 12, "encoding"),
        ("rgb8", 2, 2, 6, 10, "bytes"),
        ("rgb8", 0, 2, 6, 0, "size"),
        ("rgb8", 2, 2, 4, 8, "step"),
    ],
)
def test_bad_images_are_refused_with_a_reason(encoding, h, w, step, nbytes, match):
    with pytest.raises(InputError, match=match):
        rgb_image(encoding, h, w, step, bytes(nbytes))


def test_image_of_unexpected_size_is_refused_when_a_size_is_configured():
    with pytest.raises(InputError, match="expected 4x4"):
        rgb_image("rgb8", 2, 2, 6, bytes(12), expected_hw=(4, 4))


def test_reordered_joint_states_are_put_in_joint_names_order():
    names = list(reversed(JOINT_NAMES)) + ["head_pan"]
    values = list(range(len(names)))
    q = ordered_joints(names, values)
    assert q[0] == names.index(JOINT_NAMES[0]) and q.shape == (16,)


def test_joint_states_missing_a_joint_are_refused():
    with pytest.raises(InputError, match="missing joints.*right_gripper_joint"):
        ordered_joints(JOINT_NAMES[:-1], [0.0] * 15)


def feed(sync: ApproximateSync, stamps: dict[str, float]) -> None:
    for name, t in stamps.items():
        value = np.full(16, t) if name == JOINTS_INPUT else np.full((4, 4, 3), int(t * 10) % 255, np.uint8)
        sync.add(name, t, value)


def test_sync_picks_the_newest_set_within_the_slop():
    sync = ApproximateSync(slop_s=0.02)
    for k in range(5):
        t = k / 30
        feed(sync, {c: t + 0.005 for c in CAMERA_NAMES} | {JOINTS_INPUT: t})
    feed(sync, {JOINTS_INPUT: 5 / 30})  # joints ran ahead of the cameras
    obs = sync.latest()
    assert obs.stamps[JOINTS_INPUT] == pytest.approx(4 / 30)
    assert obs.joint_pos[0] == pytest.approx(4 / 30)


def test_sync_yields_nothing_until_every_input_has_arrived():
    sync = ApproximateSync()
    feed(sync, {c: 1.0 for c in CAMERA_NAMES})
    assert sync.latest() is None


def test_sync_keeps_the_previous_observation_when_stamps_drift_apart():
    sync = ApproximateSync(slop_s=0.02)
    feed(sync, {c: 1.0 for c in CAMERA_NAMES} | {JOINTS_INPUT: 1.0})
    first = sync.latest()
    feed(sync, {"head": 3.0, "left_wrist": 3.0, "right_wrist": 3.0, JOINTS_INPUT: 2.0})
    assert sync.latest() is first and sync.unsynced_sets == 1
