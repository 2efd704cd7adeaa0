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


def _two_episodes(truncated_first: bool) -> dict:
    """Two state-only episodes of 6 steps with rewards on every step; the first one marked truncated
    (cut off by a time limit) or not, the second terminal."""
    rng = np.random.default_rng(7)
    ends = np.zeros(12, bool)
    ends[[5, 11]] = True
    truncated = np.zeros(12, bool)
    truncated[5] = truncated_first
    return {
        "observations": {"pos": rng.normal(size=(12, 2)).astype(np.float32)},
        "actions": rng.normal(size=(12, 2)).astype(np.float32),
        "rewards": rng.uniform(0.1, 1.0, 12).astype(np.float32),
        "episode_ends": ends,
        "truncated": truncated,
    }


def test_truncated_end_bootstraps_from_the_last_state_and_terminal_end_does_not():
    """horizon 2, n 2: the window is 4 steps. In the truncated episode every transition has done 0;
    one whose window reaches past the end is shortened to the last recorded state s_5 and bootstraps
    from it with gamma^(5 - t); its last step has no next state and is never sampled for DIVL / QAM
    (BC still clones it). The terminal episode keeps done 1 and no bootstrap near its end."""
    from lwd_learner.device_replay import DeviceReplay, gather
    from lwd_learner.divl import nstep_target

    d = _two_episodes(truncated_first=True)
    model = observation_config(d["observations"], d["actions"], ModelConfig(horizon=2))
    eps = episodes_from_arrays(
        d["observations"],
        d["actions"],
        d["rewards"],
        d["episode_ends"],
        model,
        Vocab(),
        truncated=d["truncated"],
    )
    assert [e.truncated for e in eps] == [True, False]
    gamma, r = 0.9, d["rewards"].astype(np.float64)
    buf = ReplayBuffer(horizon=2, nstep=2, gamma=gamma, bc_data="all")
    for e in eps:
        buf.add(e)
    index = np.array([(0, t) for t in range(6)] + [(1, t) for t in range(6)])
    b = buf.gather(index)
    v_next = np.linspace(0.2, 0.7, 12)  # any values of the bootstrap states
    y = np.asarray(nstep_target(b["ret"], v_next, b["done"], b["discount"]))
    for t in range(5):  # truncated episode: bootstrap from s_end, end = min(t + 4, 5)
        end = min(t + 4, 5)
        want = sum(gamma**j * r[t + j] for j in range(end - t)) + gamma ** (end - t) * v_next[t]
        assert b["done"][t] == 0.0 and np.allclose(b["discount"][t], gamma ** (end - t)), t
        np.testing.assert_allclose(b["next_joint_pos"][t], eps[0].joint_pos[end])
        np.testing.assert_allclose(b["next_extra"][t], d["observations"]["pos"][end])
        np.testing.assert_allclose(y[t], want, rtol=1e-5, err_msg=str(t))
    for t in range(6):  # terminal episode: done once the window reaches the end, no bootstrap
        i, s = 6 + t, 6 + t
        done = t + 4 >= 6
        end = 12 if done else s + 4
        want = sum(gamma ** (j - s) * r[j] for j in range(s, end)) + (0.0 if done else gamma**4 * v_next[i])
        assert b["done"][i] == float(done), t
        np.testing.assert_allclose(y[i], want, rtol=1e-5, err_msg=str(t))
    # The truncated episode's last step: in the BC pool, not in the DIVL / QAM pool (host and device).
    rl_pool = {tuple(x) for x in buf._all()}
    assert (0, 5) not in rl_pool and len(rl_pool) == 11 and (0, 5) in {tuple(x) for x in buf._bc()}
    dev = DeviceReplay(2, 2, gamma, bc_data="all", min_capacity=16)
    dev.add(eps)
    data = dev.arrays()
    pool = np.asarray(data.pool_offline)[: int(data.n_offline)].tolist()
    assert pool == [0, 1, 2, 3, 4, *range(6, 12)] and int(data.n_bc) == 12
    on_device = gather(data, np.asarray(pool))
    host = buf.gather(index[pool])
    for k in ("ret", "done", "discount", "next_joint_pos", "next_extra"):
        np.testing.assert_allclose(np.asarray(on_device[k]), host[k], rtol=1e-6, err_msg=k)
    # Unmarked, the same episode is terminal: done where the window reaches its end.
    plain = episodes_from_arrays(
        d["observations"], d["actions"], d["rewards"], d["episode_ends"], model, Vocab()
    )
    term = ReplayBuffer(horizon=2, nstep=2, gamma=gamma)
    term.add(plain[0])
    assert term.gather(index[:6])["done"].tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]


def test_a_bad_truncated_flag_is_a_clear_error():
    d = _two_episodes(truncated_first=True)
    model = observation_config(d["observations"], d["actions"], ModelConfig(horizon=2))

    def episodes(flags):
        return episodes_from_arrays(
            d["observations"], d["actions"], d["rewards"], d["episode_ends"], model, Vocab(), truncated=flags
        )

    for bad in (d["truncated"][:-1], d["truncated"][:, None], d["truncated"].astype(np.float32)):
        with pytest.raises(ValueError, match=r"truncated must be bool \[T\] = \[12\]"):
            episodes(bad)
    stray = d["truncated"].copy()
    stray[3] = True
    with pytest.raises(ValueError, match=r"truncated is set on steps \[3\] that end no episode"):
        episodes(stray)
    assert [e.truncated for e in episodes(d["truncated"].astype(np.int64))] == [True, False]
    last = np.zeros(12, bool)
    last[-1] = True  # the data's end closes the last episode; it may be a time-limit end too
    assert [e.truncated for e in episodes(last)] == [False, True]


def test_a_wall_clock_budget_stops_training_early_with_a_restorable_checkpoint(tmp_path):
    """max_seconds ends a run that asked for a million steps after the steps that fit in it: the
    last step is checkpointed and logged, the checkpoint restores to the same policy, a later call
    resumes from it. Trains with truncated failures (time-limit ends) too."""
    import json

    import reach2d

    from lwd_learner.arrays import predict_chunks, train_arrays
    from lwd_learner.checkpoint import Checkpointer
    from lwd_learner.train import restore_session

    data = reach2d.dataset(0, 20, good_every=2)
    truncated = data["episode_ends"] & ~data["good"]
    cfg = reach2d.config(1_000_000, method="lwd", bc_data="all")
    args = (data["observations"], data["actions"], data["rewards"], data["episode_ends"], tmp_path)
    session = train_arrays(*args, cfg, truncated=truncated, max_seconds=1.0)
    step = int(session.state.step)
    assert 1 <= step < cfg.train.bc_steps
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == step
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == step and "tau_mean" in lines[-1]
    assert (tmp_path / "tau_entropy.png").stat().st_size > 0
    restored = restore_session(tmp_path / "checkpoints")
    assert int(restored.state.step) == step
    obs = {k: v[:7] for k, v in data["observations"].items()}
    np.testing.assert_allclose(predict_chunks(restored, obs), predict_chunks(session, obs), atol=1e-6)
    resumed = train_arrays(*args, cfg, truncated=truncated, max_new_steps=2)
    assert int(resumed.state.step) == step + 2
