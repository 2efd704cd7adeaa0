"""Inputs as real robots deliver them: joint states from several controllers, publishers of any QoS,
robots without a configured id; and messages that say which input is at fault."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_obs
from test_actor_core import DT, Rig

from lwd_actor.core.actor import default_robot_id
from lwd_actor.core.dedupe import PublisherDedupe
from lwd_actor.core.episode_fsm import TransitionError
from lwd_actor.core.observation import (
    JOINTS_INPUT,
    InputError,
    JointsIncomplete,
    JointStateMerger,
    aspect_mismatch,
    compressed_image,
    encoded_image_size,
    fit_frame,
)
from lwd_actor.core.safety import HoldReason
from lwd_actor.core.sync import ApproximateSync
from lwd_common.episode import ActionSource
from lwd_common.preprocessing import encode_jpeg, resize
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES

ARM = [n for n in JOINT_NAMES if "gripper" not in n]
GRIPPERS = [n for n in JOINT_NAMES if "gripper" in n]


# --- joint states from several sources -------------------------------------------------------------
def test_arm_and_gripper_messages_merge_by_name_into_one_joint_vector():
    merger = JointStateMerger(max_age_s=0.5)
    with pytest.raises(JointsIncomplete, match="missing joints.*gripper"):
        merger.add(ARM, [1.0] * len(ARM), 10.0)
    q, stamp = merger.add(list(reversed(GRIPPERS)) + ["head_pan"], [0.02, 0.01, 9.0], 10.01)
    assert stamp == pytest.approx(10.01)
    assert q[JOINT_NAMES.index(GRIPPERS[0])] == 0.01 and q[JOINT_NAMES.index(GRIPPERS[1])] == 0.02
    assert q[JOINT_NAMES.index(ARM[0])] == 1.0
    q, stamp = merger.add(ARM, [2.0] * len(ARM), 10.03)  # the arm at its own rate: grippers still fresh
    assert q[JOINT_NAMES.index(ARM[0])] == 2.0 and stamp == pytest.approx(10.03)


def test_a_source_that_falls_silent_makes_its_joints_stale_by_name():
    merger = JointStateMerger(max_age_s=0.5)
    with pytest.raises(JointsIncomplete):
        merger.add(GRIPPERS, [0.0] * 2, 10.0)
    merger.add(ARM, [0.0] * len(ARM), 10.0)
    with pytest.raises(
        InputError,
        match=r"joints \['left_gripper_joint', 'right_gripper_joint'\] are more "
        r"than 0.5 s older",
    ) as info:
        merger.add(ARM, [0.0] * len(ARM), 10.6)
    assert not isinstance(info.value, JointsIncomplete)


def test_merger_refuses_bad_messages_and_starts_over_when_time_goes_back():
    merger = JointStateMerger(max_age_s=0.5)
    with pytest.raises(InputError, match="2 names but 1 positions"):
        merger.add(GRIPPERS, [0.0], 1.0)
    with pytest.raises(InputError, match="none of its joints"):
        merger.add(["head_pan"], [0.0], 1.0)
    with pytest.raises(InputError, match="non-finite"):
        merger.add(GRIPPERS, [0.0, float("nan")], 1.0)
    merger.add(JOINT_NAMES, np.zeros(16), 100.0)
    with pytest.raises(JointsIncomplete):  # sim reset: the arm's stamp went back, the grippers' did not
        merger.add(ARM, [0.0] * len(ARM), 1.0)


# --- publishers of any QoS ---------------------------------------------------------------------------
def test_a_message_heard_on_both_subscriptions_passes_once_and_never_out_of_order():
    d = PublisherDedupe()
    assert d.accept(b"pedal", 1) and not d.accept(b"pedal", 1)  # reliable + best-effort copy
    assert d.accept(b"pedal", 2) and not d.accept(b"pedal", 1)  # a late copy of an older message
    assert d.accept(b"other", 1)  # another publisher has its own sequence
    assert d.accept(None, None) and d.accept(None, None)  # a middleware without ids: never dropped
    assert d.duplicates == 2


# --- robot_id from the namespace --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ns", "want"),
    [("/robot1", "robot1"), ("/site_a/robot1/", "site_a_robot1"), ("/", "g1-host"), ("", "g1-host")],
)
def test_robot_id_defaults_to_the_namespace_else_the_host(ns, want):
    assert default_robot_id(ns, "g1-host") == want


# --- aspect ratio: scaling is fine, squashing is not -------------------------------------------------
def test_frames_of_another_aspect_ratio_than_the_policy_are_a_mismatch():
    assert aspect_mismatch((480, 640), (96, 128)) == ""  # same 3:4, only smaller
    assert aspect_mismatch((64, 64), (32, 32)) == ""
    assert "resizing would squash them" in aspect_mismatch((480, 640), (32, 32))


# --- compressed camera input, resized on receipt ------------------------------------------------------
def test_compressed_jpeg_and_png_frames_decode_to_rgb():
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[..., 0] = 200  # red: a channel swap would show
    img = compressed_image("rgb8; jpeg compressed bgr8", encode_jpeg(rgb, 95))
    assert img.shape == (24, 32, 3) and img[..., 0].mean() > 180 and img[..., 2].mean() < 20
    import cv2

    png = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
    np.testing.assert_array_equal(compressed_image("png", png), rgb)


@pytest.mark.parametrize(
    ("fmt", "data", "match"),
    [
        ("16UC1; compressedDepth", b"x", "unsupported compressed image format"),
        ("theora", b"x", "unsupported compressed image format"),
        ("jpeg", b"not a jpeg", "unknown signature"),
        ("jpeg", b"\xff\xd8\xff\xda\x00\x02garbage", "without a frame header"),
        ("png", b"\x89PNG\r\n\x1a\n\x00\x00", "without an IHDR header"),
    ],
)
def test_bad_compressed_frames_are_refused_with_a_reason(fmt, data, match):
    with pytest.raises(InputError, match=match):
        compressed_image(fmt, data)


def png_bomb(height: int, width: int) -> bytes:
    """A valid all-black RGB PNG of height x width, built row by row (never held decoded): ~190 KB
    for 8000 x 8000, 192 MB once decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_small_png_that_decodes_huge_is_refused_from_its_header_undecoded():
    bomb = png_bomb(8000, 8000)
    assert len(bomb) < 300_000 and encoded_image_size(bomb) == (8000, 8000)
    with pytest.raises(InputError, match="larger than the 16777216 pixels"):
        compressed_image("png", bomb)


def test_a_frame_of_the_wrong_size_is_refused_before_decoding():
    jpeg = encode_jpeg(np.zeros((48, 64, 3), np.uint8), 90)
    assert encoded_image_size(jpeg) == (48, 64)
    with pytest.raises(InputError, match="image is 48x64, expected 24x32 \\(not decoded\\)"):
        compressed_image("jpeg", jpeg, (24, 32))


def test_frames_are_resized_to_the_recording_size_on_receipt_and_never_squashed():
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    small = fit_frame(frame, (96, 128), (32, 32 * 4 // 3))
    np.testing.assert_array_equal(small, resize(frame, (96, 128)))
    assert fit_frame(frame, None, None) is frame
    with pytest.raises(InputError, match="aspect ratio of the recording size"):
        fit_frame(frame, (96, 96), None)
    with pytest.raises(InputError, match="aspect ratio of the policy input 32x32"):
        fit_frame(frame, (96, 128), (32, 32))


# --- messages naming the input at fault ------------------------------------------------------------
def test_sync_explains_which_input_is_missing_refused_or_old():
    sync = ApproximateSync(slop_s=0.05)
    for cam in CAMERA_NAMES:
        if cam != "left_wrist":
            sync.add(cam, 1.0, np.zeros((4, 4, 3), np.uint8))
    sync.reject("head", "unsupported image encoding 'mono8' (want rgb8)")
    sync.reject(JOINTS_INPUT, "joint_states: missing joints ['right_gripper_joint']")
    why = sync.explain(now=1.2, max_age_s=0.5)
    assert "camera/left_wrist: nothing received" in why
    assert "camera/head: messages refused: unsupported image encoding 'mono8'" in why
    assert "joint_states: messages refused: joint_states: missing joints ['right_gripper_joint']" in why
    assert "right_wrist" not in why
    sync.add("head", 1.1, np.zeros((4, 4, 3), np.uint8))  # a good frame clears the refusal
    assert "camera/head" not in sync.explain(now=1.2, max_age_s=0.5)
    assert "camera/right_wrist: newest message 2.00 s old" in sync.explain(now=3.0, max_age_s=0.5)


def test_sync_explains_stamps_that_never_line_up():
    sync = ApproximateSync(slop_s=0.05)
    for name in (*CAMERA_NAMES, JOINTS_INPUT):
        sync.add(
            name,
            1.0 if name != JOINTS_INPUT else 1.2,
            np.zeros(16) if name == JOINTS_INPUT else np.zeros((4, 4, 3), np.uint8),
        )
    assert sync.latest() is None
    assert "span 0.200 s, more than sync_slop_s 0.05 s" in sync.explain(now=1.2, max_age_s=0.5)


@pytest.fixture
def rig(tmp_path, limits):
    r = Rig(tmp_path, limits)
    yield r
    r.close()


def test_a_refused_start_says_why_there_is_no_observation(rig):
    sync = ApproximateSync()
    sync.reject("head", "unsupported image encoding 'mono8' (want rgb8)")
    rig.core.input_report = lambda now: sync.explain(now, 0.5)
    with pytest.raises(
        TransitionError,
        match="no synchronised camera \\+ joint observation yet: "
        "camera/head: messages refused: unsupported image encoding 'mono8'",
    ):
        rig.core.start_episode("e", "pick", "", 0.0)


def test_a_stale_hold_names_only_the_input_that_stopped(rig):
    rig.start()
    for _ in range(3):
        rig.tick()
    now = rig.core.step * DT + 1.0  # nothing new synchronised for 1 s: the whole set is old...
    newest = {c: now for c in CAMERA_NAMES} | {JOINTS_INPUT: now}
    newest["left_wrist"] = now - 1.0  # ...because one camera stopped
    res = rig.core.tick(now, None, rig.worker.poll(), newest)
    assert res.source is ActionSource.HOLD and res.hold_reason is HoldReason.STALE
    assert res.stale_inputs == ("left_wrist",)
    res = rig.core.tick(now + DT, make_obs(now - 1.0), rig.worker.poll())  # without newest stamps: all
    assert set(res.stale_inputs) == {*CAMERA_NAMES, JOINTS_INPUT}
