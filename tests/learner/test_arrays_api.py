"""The array API's input checks (lwd_learner.arrays) and its equivalence with the store path: the
same steps given as arrays or as a stored episode become the same chunk transitions."""

from __future__ import annotations

import dataclasses

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
)
from lwd_common.preprocessing import encode_jpeg, frames_from_jpeg
from lwd_learner.arrays import episodes_from_arrays, observation_config
from lwd_learner.config import EncoderConfig, ModelConfig
from lwd_learner.replay import ReplayBuffer, Vocab, episode_arrays

T = 10


def _data(rng=None) -> dict:
    rng = rng or np.random.default_rng(0)
    ends = np.zeros(T, bool)
    ends[[3, 9]] = True
    return {
        "observations": {
            "wrist": rng.integers(0, 256, (T, 8, 8, 3), dtype=np.uint8),
            "joint_pos": rng.normal(size=(T, 3)).astype(np.float32),
            "object_pose": rng.normal(size=(T, 7)),
        },
        "actions": rng.normal(size=(T, 3)).astype(np.float32),
        "rewards": np.where(np.arange(T) == 9, 1.0, 0.0).astype(np.float32),
        "episode_ends": ends,
    }


def _model(data: dict) -> ModelConfig:
    base = ModelConfig(encoder=EncoderConfig(image_size=(8, 8)), horizon=4)
    return observation_config(data["observations"], data["actions"], base)


def _episodes(data: dict, model: ModelConfig | None = None, **kw):
    model = model or _model(data)
    return episodes_from_arrays(
        data["observations"], data["actions"], data["rewards"], data["episode_ends"], model, Vocab(), **kw
    )


def test_observation_names_come_from_the_arrays():
    m = _model(_data())
    assert (m.cameras, m.state_names, m.state_dims) == (("wrist",), ("object_pose",), (7,))
    assert m.joint_names == ("joint0", "joint1", "joint2") and m.state_dim == 7


def test_episode_ends_split_the_steps_and_rewards_label_success():
    eps = _episodes(_data())
    assert [len(e.actions) for e in eps] == [4, 6] and [e.success for e in eps] == [False, True]
    assert eps[1].extra_state.shape == (6, 7) and eps[1].images.shape == (6, 1, 8, 8, 3)


def test_mismatched_lengths_are_an_error_naming_the_key():
    d = _data()
    d["observations"]["object_pose"] = d["observations"]["object_pose"][:-1]
    with pytest.raises(ValueError, match="object_pose"):
        _episodes(d, _model(_data()))
    d = _data()
    with pytest.raises(ValueError, match="rewards"):
        _episodes({**d, "rewards": d["rewards"][:-1]})
    with pytest.raises(ValueError, match="episode_ends"):
        _episodes({**d, "episode_ends": d["episode_ends"][:-2]})


def test_missing_and_unknown_keys_are_errors():
    d = _data()
    model = _model(d)
    del d["observations"]["wrist"]
    with pytest.raises(ValueError, match=r"lack \['wrist'\]"):
        _episodes(d, model)
    d = _data()
    d["observations"]["scene"] = d["observations"]["wrist"]
    with pytest.raises(ValueError, match=r"\['scene'\] are not the model's"):
        _episodes(d, model)
    with pytest.raises(ValueError, match="non-empty dict"):
        observation_config({}, d["actions"])


def test_wrong_dtypes_and_shapes_are_errors():
    d = _data()
    float_frames = {**d["observations"], "wrist": d["observations"]["wrist"].astype(np.float32)}
    with pytest.raises(ValueError, match=r"'wrist' is float32 .*camera is uint8"):
        observation_config(float_frames, d["actions"])
    int_state = {**d["observations"], "object_pose": np.zeros((T, 7), np.int64)}
    with pytest.raises(ValueError, match="'object_pose' is int64"):
        observation_config(int_state, d["actions"])
    with pytest.raises(ValueError, match="actions must be float"):
        _episodes({**d, "actions": d["actions"].astype(np.int64)}, _model(d))
    with pytest.raises(ValueError, match="episode_ends must be bool"):
        _episodes({**d, "episode_ends": d["episode_ends"].astype(np.float32)})
    with pytest.raises(ValueError, match="actions have width 3, the model 4 joints"):
        _episodes(d, dataclasses.replace(_model(d), joint_names=("a", "b", "c", "d")))
    narrow = {**d["observations"], "joint_pos": d["observations"]["joint_pos"][:, :2]}
    with pytest.raises(ValueError, match="joint_pos has width 2, the model 3 joints"):
        _episodes({**d, "observations": narrow}, _model(d))


def test_bad_values_are_errors():
    d = _data()
    d["observations"]["object_pose"][2, 1] = np.nan
    with pytest.raises(ValueError, match="object_pose.*NaN"):
        _episodes(d)
    d = _data()
    with pytest.raises(ValueError, match="instructions vary inside episode 1"):
        _episodes(d, instructions=["a"] * 4 + ["b"] * 3 + ["c"] * 3)
    with pytest.raises(ValueError, match="relative_actions needs the joint positions"):
        no_joints = {k: v for k, v in d["observations"].items() if k != "joint_pos"}
        observation_config(no_joints, d["actions"], ModelConfig(relative_actions=True))


def test_arrays_and_a_stored_episode_give_the_same_chunk_transitions():
    """The store path (episode_arrays of a recorded episode) and the array API fed the same steps
    (the recorded frames as the learner decodes them) yield identical replay batches."""
    rng = np.random.default_rng(4)
    joints = ("shoulder", "elbow", "gripper")
    q = rng.normal(size=(T, 3)).astype(np.float32)
    a = rng.normal(size=(T, 3)).astype(np.float32)
    jpeg = [encode_jpeg(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(T)]
    meta = EpisodeMeta(
        "e0", "arm", "reach", "reach it", EpisodeKind.DEMO, cameras=("wrist",), joint_names=joints
    )
    steps = [
        StepRecord(t, t / 30, {"wrist": jpeg[t]}, q[t], a[t], ActionSource.TELEOP, 0, "v0") for t in range(T)
    ]
    ep = Episode.from_steps(meta, steps, EpisodeOutcome(Label.SUCCESS, T))
    model = ModelConfig(
        encoder=EncoderConfig(image_size=(8, 8)), horizon=4, joint_names=joints, cameras=("wrist",)
    )
    stored = episode_arrays(ep, Vocab(), (8, 8), model.cameras, model.joint_names)
    (arrays,) = episodes_from_arrays(
        {"wrist": frames_from_jpeg(jpeg, (8, 8)), "joint_pos": q},
        a,
        ep.rewards(),
        np.arange(T) == T - 1,
        model,
        Vocab(),
        instructions="reach it",
        demos=np.ones(T, bool),
    )
    batches = []
    for e in (stored, arrays):
        buf = ReplayBuffer(horizon=4, nstep=2, gamma=0.9, bc_data="demos")
        e.intervention = np.zeros(T, bool)  # the array API has no interventions; compare the rest
        buf.add(e)
        batches.append(buf.gather(np.stack([np.zeros(T, int), np.arange(T)], 1)))
    assert batches[0].keys() == batches[1].keys()
    for k in batches[0]:
        np.testing.assert_array_equal(batches[0][k], batches[1][k], err_msg=k)
    assert batches[1]["done"].tolist() == [0.0] * 2 + [1.0] * 8 and batches[1]["ret"][-1] == 1.0
