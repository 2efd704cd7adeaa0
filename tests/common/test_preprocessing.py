"""lwd_common.preprocessing: training and deployment see identical pixels for the same camera frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lwd_actor.core.observation import JOINTS_INPUT, Observation, rgb_image
from lwd_actor.core.policy_runtime import OnnxPolicy
from lwd_common import episode as fmt
from lwd_common.preprocessing import (
    JPEG_QUALITY,
    bgr_to_rgb,
    decode_jpeg,
    encode_jpeg,
    frame_from_jpeg,
    policy_batch,
    policy_frame,
    resize,
)
from lwd_description.robot import CAMERA_NAMES, NUM_JOINTS
from lwd_learner.replay import Vocab, episode_arrays
from lwd_sim.evaluate_policy import OnnxChunkPolicy
from lwd_testing.models import build_policy

MODEL = 24


def camera_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A frame with gradients and hard colour edges, so JPEG and resizing both change it."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 7 * 30], -1).astype(
        np.uint8
    )
    rng = np.random.default_rng(seed)
    r, c = rng.integers(0, h // 2), rng.integers(0, w // 2)
    img[r : r + h // 3, c : c + w // 3] = (230, 20, 40)
    return img


def recorded_episode(frames: list[dict[str, np.ndarray]]) -> fmt.Episode:
    """An episode recorded as the actor's recorder records: each camera frame as JPEG."""
    meta = fmt.EpisodeMeta(
        episode_id="pre-0", robot_id="r", task="t", instruction="i", kind=fmt.EpisodeKind.ROLLOUT
    )
    steps = [
        fmt.StepRecord(
            step=t,
            stamp=t / 30.0,
            images={c: encode_jpeg(f[c], JPEG_QUALITY) for c in CAMERA_NAMES},
            joint_pos=np.zeros(NUM_JOINTS, np.float32),
            action=np.zeros(NUM_JOINTS, np.float32),
            source=fmt.ActionSource.POLICY,
            chunk_id=0,
            policy_version="v0",
        )
        for t, f in enumerate(frames)
    ]
    return fmt.Episode.from_steps(
        meta, steps, fmt.EpisodeOutcome(label=fmt.Label.FAILURE, num_steps=len(steps))
    )


def learner_pixels(frames: list[dict[str, np.ndarray]]) -> np.ndarray:
    """uint8 [T, cameras, H, W, 3]: what the learner's replay trains on."""
    return episode_arrays(recorded_episode(frames), Vocab(), (MODEL, MODEL), CAMERA_NAMES).images


@pytest.fixture
def policy_path(tmp_path):
    return build_policy(tmp_path / "p.onnx", image_size=MODEL)


def test_actor_feeds_the_pixels_the_learner_decodes_from_its_recording(policy_path):
    frames = [{c: camera_frame(40, 52, seed=t * 3 + k) for k, c in enumerate(CAMERA_NAMES)} for t in range(3)]
    actor = OnnxPolicy(policy_path)
    fed = np.stack(
        [actor.prepare_images(Observation(f, np.zeros(NUM_JOINTS), {JOINTS_INPUT: 0.0}))[0] for f in frames]
    )
    np.testing.assert_array_equal(fed, learner_pixels(frames))


def test_sim_evaluation_feeds_the_pixels_the_learner_decodes(policy_path):
    frames = [
        {c: camera_frame(MODEL, MODEL, seed=t * 3 + k) for k, c in enumerate(CAMERA_NAMES)} for t in range(2)
    ]
    policy = OnnxChunkPolicy(policy_path)
    fed = {}
    run = policy.session.run
    policy.session.run = lambda names, feeds: fed.update(feeds) or run(names, feeds)
    batch = np.stack([np.stack([f[c] for c in CAMERA_NAMES]) for f in frames])
    policy({"images": batch, "joint_pos": np.zeros((2, NUM_JOINTS), np.float32), "task_id": np.zeros(2, int)})
    np.testing.assert_array_equal(fed["images"], learner_pixels(frames))


def test_a_live_frame_is_given_the_recording_round_trip_not_a_plain_resize():
    frame = camera_frame(40, 52)
    live = policy_frame(frame, (MODEL, MODEL))
    np.testing.assert_array_equal(live, frame_from_jpeg(encode_jpeg(frame), (MODEL, MODEL)))
    assert np.abs(live.astype(int) - resize(frame, (MODEL, MODEL)).astype(int)).mean() > 0.5


def test_colour_order_is_rgb_in_memory_and_true_colour_in_the_jpeg_file():
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    data = encode_jpeg(red)
    assert decode_jpeg(data)[8, 8].tolist() == pytest.approx([255, 0, 0], abs=3)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[8, 8, 2] > 250  # OpenCV: BGR, R last


def test_bgr8_camera_messages_reach_the_policy_path_as_rgb():
    bgr = np.array([[[10, 20, 30]]], np.uint8)
    assert rgb_image("bgr8", 1, 1, 3, bgr.tobytes()).tolist() == [[[30, 20, 10]]]
    assert bgr_to_rgb(bgr).tolist() == [[[30, 20, 10]]]


def test_shrinking_a_block_pattern_averages_each_whole_block():
    ring = np.zeros((4, 4), np.uint8)
    ring[1:3, 1:3] = 160  # area mean 40; a bilinear or nearest resize would only see the centre
    hole = np.where(ring > 0, 0, 240).astype(np.uint8)  # area mean 180
    img = np.block([[ring, np.full((4, 4), 80, np.uint8)], [hole, np.eye(4, dtype=np.uint8) * 200]])
    out = resize(np.repeat(img[:, :, None], 3, axis=2), (2, 2))
    assert out[..., 0].tolist() == [[40, 80], [180, 50]]


def test_frames_already_at_the_model_size_are_left_untouched():
    frame = camera_frame(MODEL, MODEL)
    assert resize(frame, (MODEL, MODEL)) is frame


def test_policy_batch_is_batch_cameras_height_width_rgb_in_camera_order():
    images = np.zeros((2, 3, 40, 30, 3), np.uint8)
    for k in range(3):
        images[:, k, :, :, k] = 200  # camera k is pure colour channel k
    out = policy_batch(images, (MODEL, 20))
    assert out.dtype == np.uint8 and out.shape == (2, 3, MODEL, 20, 3) and out.flags.c_contiguous
    assert [int(np.argmax(out[1, k, 10, 10])) for k in range(3)] == [0, 1, 2]


def test_encoding_refuses_anything_but_hxwx3_uint8():
    with pytest.raises(ValueError, match="HxWx3 uint8 RGB"):
        encode_jpeg(np.zeros((4, 4, 3), np.float32))
