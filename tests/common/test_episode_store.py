import numpy as np
import pytest

from lwd_common.episode import (
    ActionSource,
    Episode,
    EpisodeKind,
    EpisodeMeta,
    EpisodeOutcome,
    Label,
    StepRecord,
    content_hash,
    decode_episode,
    encode_episode,
)
from lwd_common.preprocessing import decode_jpeg, encode_jpeg
from lwd_common.store import EpisodeStore, check_episode_id
from lwd_description.robot import CAMERA_NAMES, NUM_JOINTS
from lwd_testing.sinks import DirectorySink


def make_steps(n: int, teleop_from: int = 10**9) -> list[StepRecord]:
    img = encode_jpeg(np.full((16, 16, 3), 128, np.uint8))
    return [
        StepRecord(
            step=i,
            stamp=i / 30.0,
            images={c: img for c in CAMERA_NAMES},
            joint_pos=np.full(NUM_JOINTS, i, np.float32),
            action=np.full(NUM_JOINTS, i + 0.5, np.float32),
            source=ActionSource.TELEOP if i >= teleop_from else ActionSource.POLICY,
            chunk_id=i // 30,
            policy_version="v1" if i < n // 2 else "v2",
        )
        for i in range(n)
    ]


def make_episode(eid: str = "r0-ep1", n: int = 40, label: Label = Label.SUCCESS) -> Episode:
    meta = EpisodeMeta(eid, "r0", "pick_cup", "put the cup on the shelf", EpisodeKind.ROLLOUT, started_at=1.0)
    return Episode.from_steps(meta, make_steps(n, teleop_from=20), EpisodeOutcome(label, n, ended_at=2.0))


def test_episode_round_trips_through_encoding():
    ep = make_episode()
    back = decode_episode(encode_episode(ep))
    assert back.meta == ep.meta and back.outcome == ep.outcome
    np.testing.assert_array_equal(back.action, ep.action)
    assert back.policy_versions == ["v1", "v2"] and back.policy_version_at(39) == "v2"
    assert back.images["head"][0] == ep.images["head"][0]


def test_encoding_is_canonical_so_equal_episodes_hash_equal():
    assert content_hash(make_episode()) == content_hash(make_episode())
    assert content_hash(make_episode()) != content_hash(make_episode(label=Label.FAILURE))


def test_reward_is_one_only_on_last_step_of_a_success():
    assert make_episode().rewards().tolist() == [0.0] * 39 + [1.0]
    assert make_episode(label=Label.FAILURE).rewards().sum() == 0


def test_intervention_mask_marks_teleop_steps():
    assert make_episode().intervention_mask.sum() == 20


def test_missing_camera_frames_are_refused():
    steps = make_steps(3)
    del steps[1].images["left_wrist"]
    meta = EpisodeMeta("e", "r", "t", "i")
    with pytest.raises(ValueError, match="left_wrist"):
        Episode.from_steps(meta, steps, EpisodeOutcome(Label.FAILURE, 3))


def test_outcome_step_count_must_match_columns():
    ep = make_episode()
    ep.outcome.num_steps = 3
    with pytest.raises(ValueError, match="steps"):
        encode_episode(ep)


def test_jpeg_round_trip_keeps_rgb_order():
    img = np.zeros((32, 32, 3), np.uint8)
    img[..., 0] = 255  # pure red
    back = decode_jpeg(encode_jpeg(img, quality=95))
    assert back.shape == (32, 32, 3)
    assert back[..., 0].mean() > 240 and back[..., 2].mean() < 15


def test_store_put_is_idempotent_and_snapshots_are_consistent(tmp_path):
    store = EpisodeStore(tmp_path)
    assert store.latest_snapshot() is None
    assert store.put(make_episode("a")) is True
    assert store.put(make_episode("a")) is False
    snap1 = store.commit_snapshot()
    store.put(make_episode("b"))
    assert store.latest_snapshot().episode_ids == ("a",)
    snap2 = store.commit_snapshot()
    assert (snap1.version, snap2.version) == (1, 2)
    assert store.latest_snapshot().episode_ids == ("a", "b")
    assert content_hash(store.get("a")) == content_hash(make_episode("a"))


def test_store_refuses_unsafe_episode_ids(tmp_path):
    for bad in ["../etc", "a/b", "", ".hidden"]:
        with pytest.raises(ValueError):
            check_episode_id(bad)


def test_directory_sink_stores_the_streamed_episode(tmp_path):
    store = EpisodeStore(tmp_path)
    sink = DirectorySink(store)
    ref = make_episode("r0-ep9")
    sink.begin(ref.meta)
    for s in make_steps(40, teleop_from=20):
        sink.add_step(s)
    sink.end(ref.outcome)
    assert store.latest_snapshot().episode_ids == ("r0-ep9",)
    assert content_hash(store.get("r0-ep9")) == content_hash(ref)


def test_directory_sink_refuses_steps_outside_an_episode(tmp_path):
    sink = DirectorySink(EpisodeStore(tmp_path))
    with pytest.raises(RuntimeError):
        sink.add_step(make_steps(1)[0])
