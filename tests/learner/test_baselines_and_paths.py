"""The paper's baselines (HG-DAgger's data rule, RECAP's advantage labels and deployment), the
frozen-encoder path, relative action chunks and config overrides."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import onnx
import pytest
import toytask
from test_online_and_cli import _store, tiny_config

from lwd_common import policy_io
from lwd_common.episode import EpisodeKind
from lwd_learner import recap
from lwd_learner.agents import make_agent
from lwd_learner.config import apply_overrides, relative_action_mask
from lwd_learner.replay import EpisodeInfo, NormStats, bc_frames
from lwd_learner.train import restore_session, run_offline


def _info(kind, success, teleop):
    return EpisodeInfo(kind, success, np.array(teleop, bool))


# ---- HG-DAgger ---------------------------------------------------------------------------------
def test_hg_dagger_clones_autonomous_successes_and_interventions_online_and_demos_offline():
    online = [
        _info(EpisodeKind.ROLLOUT, True, [0, 0, 0]),  # autonomous success: all of it
        _info(EpisodeKind.ROLLOUT, False, [0, 1, 1]),  # failure: the correction only
        _info(
            EpisodeKind.ROLLOUT, True, [0, 1, 0]
        ),  # rescued success: the correction, not the policy's steps
    ]
    got = bc_frames(online, "hg_dagger", online=True)
    assert [m.tolist() for m in got] == [[True, True, True], [False, True, True], [False, True, False]]
    offline = [_info(EpisodeKind.DEMO, True, [1, 1]), _info(EpisodeKind.ROLLOUT, True, [0, 1])]
    assert [m.tolist() for m in bc_frames(offline, "hg_dagger")] == [[True, True], [False, False]]


def test_demos_rule_falls_back_to_successes_in_a_buffer_without_demonstrations():
    eps = [_info(EpisodeKind.ROLLOUT, True, [0, 0]), _info(EpisodeKind.ROLLOUT, False, [1, 1])]
    assert [m.tolist() for m in bc_frames(eps, "demos", online=True)] == [[True, True], [False, False]]


# ---- RECAP ---------------------------------------------------------------------------------------
def test_recap_labels_the_top_30_percent_per_task_and_every_intervention_positive():
    n = 10
    values = np.zeros(2 * n)
    ret = np.concatenate([np.arange(n), 100 + np.arange(n)]).astype(float)  # task 1 has larger advantages
    task = np.repeat([0, 1], n)
    interv = np.zeros(2 * n)
    interv[0] = 1  # the lowest advantage of task 0, but a human's correction
    adv, pos = recap.advantage_labels(values, values, ret, np.ones(2 * n), 0.9, task, interv, 0.3)
    np.testing.assert_allclose(adv, ret)
    assert pos.tolist() == [True] + [False] * 6 + [True] * 3 + [False] * 7 + [True] * 3


def test_recap_advantage_bootstraps_from_the_next_value_unless_done():
    adv, _ = recap.advantage_labels(
        np.array([0.5, 0.5]),
        np.array([0.8, 0.8]),
        np.array([0.0, 0.0]),
        np.array([0.0, 1.0]),
        0.5,
        np.zeros(2, int),
        np.zeros(2),
        0.5,
    )
    np.testing.assert_allclose(adv, [0.5 * 0.8 - 0.5, -0.5])


def test_recap_policy_deploys_conditioned_on_positive():
    items = ["<unknown>", "pick", recap.conditioned("pick", True), recap.conditioned("pick", False)]
    deployed = recap.deployed_instructions(items)
    assert deployed.index("pick") == 2 and len(set(deployed)) == 4


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("paths")
    _store(root / "store", toytask.mixed_dataset(0, n_demo=2, n_rollout=3, n_play=1))
    return root / "store"


@pytest.mark.parametrize("replay", ["device", "host"])
def test_recap_offline_run_labels_steps_and_exports_the_positive_policy(store, tmp_path, replay):
    cfg = tiny_config()
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, method="recap", replay=replay, recap_relabel_every=2)
    )
    run_offline(store, tmp_path / "run", cfg, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rl = [m for m in lines if m["phase"] == "rl"]
    # the top 30% of advantages (demonstrations are teleoperated but are not interventions)
    assert rl and all(0.3 <= m["recap_positive"] <= 0.45 for m in rl) and "critic_loss" in rl[-1]
    sig = policy_io.read_signature(onnx.load(tmp_path / "run" / "policy.onnx"))
    session = restore_session(tmp_path / "run" / "checkpoints")
    positive = session.vocab.items.index(recap.conditioned(toytask.INSTRUCTION, True))
    assert sig.task_id(toytask.INSTRUCTION) == positive


def test_hg_dagger_offline_run_is_behaviour_cloning_only(store, tmp_path):
    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, method="hg_dagger"))
    s = run_offline(store, tmp_path / "run", cfg, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert int(s.state.step) == cfg.train.bc_steps and all("critic_loss" not in m for m in lines)


# ---- frozen encoder ------------------------------------------------------------------------------
def _agent_and_batch(cfg, n=8, seed=0):
    agent = make_agent(cfg)
    z = np.zeros(16, np.float32)
    state = agent.init(NormStats(z, z + 1, z, z + 1))
    rng = np.random.default_rng(seed)
    h, w = cfg.model.encoder.image_size
    img = lambda: rng.integers(0, 256, (n, 3, h, w, 3), dtype=np.uint8)  # noqa: E731
    batch = {
        "images": img(),
        "next_images": img(),
        "joint_pos": rng.normal(size=(n, 16)).astype(np.float32),
        "next_joint_pos": rng.normal(size=(n, 16)).astype(np.float32),
        "task_id": np.ones(n, np.int32),
        "next_task_id": np.ones(n, np.int32),
        "actions": rng.normal(size=(n, 30, 16)).astype(np.float32),
        "ret": np.zeros(n, np.float32),
        "done": np.zeros(n, np.float32),
        "discount": np.ones(n, np.float32),
    }
    return agent, state, batch


def test_features_path_encodes_exactly_like_the_image_path():
    cfg = dataclasses.replace(
        tiny_config(),
        model=dataclasses.replace(
            tiny_config().model, encoder=dataclasses.replace(tiny_config().model.encoder, pool="spatial")
        ),
    )
    agent, state, batch = _agent_and_batch(cfg)
    obs = agent.nets.obs(state.norm, batch)
    feats = agent.image_features(state.policy, batch["images"])
    from lwd_learner.networks import FlowPolicy

    z_img = agent.policy.apply(state.policy, *obs, method=FlowPolicy.encode)
    z_feat = agent.policy.apply(state.policy, feats, obs[1], obs[2], method=FlowPolicy.encode)
    np.testing.assert_allclose(z_feat, z_img, rtol=1e-5, atol=1e-6)


def test_updates_on_cached_features_leave_the_shared_backbone_unchanged():
    agent, state, batch = _agent_and_batch(tiny_config())
    state = agent.freeze_encoder(state)
    conv = lambda p: p["params"]["encoder"]["conv0"]["kernel"]  # noqa: E731
    np.testing.assert_array_equal(conv(state.critic), conv(state.policy))  # one backbone for every network
    before = jax.device_get(state)
    fb = {
        **batch,
        "images": np.asarray(agent.image_features(state.policy, batch["images"])),
        "next_images": np.asarray(agent.image_features(state.policy, batch["next_images"])),
    }
    for _ in range(3):  # BC, then RL: momentum and weight decay must not move the frozen backbone either
        state, _ = agent.bc_update(state, fb)
    state = agent.start_rl(state)
    for _ in range(3):
        state, _ = agent.rl_update(state, fb)
    for net in ("policy", "critic"):
        np.testing.assert_array_equal(conv(getattr(state, net)), conv(getattr(before, net)))
    assert np.abs(np.asarray(state.policy["params"]["head"]["out"]["kernel"])).sum() > 0  # the head did train


def test_frozen_path_offline_run_freezes_at_encoder_steps_and_resumes_frozen(store, tmp_path):
    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, encoder_steps=3))
    s = run_offline(store, tmp_path / "run", cfg, progress=False, max_new_steps=5)
    assert s.frozen
    kernel = np.asarray(s.state.policy["params"]["encoder"]["conv0"]["kernel"])
    s2 = run_offline(store, tmp_path / "run", cfg, progress=False)
    assert s2.frozen and int(s2.state.step) == cfg.train.bc_steps + cfg.train.rl_steps
    np.testing.assert_array_equal(np.asarray(s2.state.policy["params"]["encoder"]["conv0"]["kernel"]), kernel)


# ---- relative actions and config --------------------------------------------------------------
def test_relative_action_statistics_are_taken_from_the_chunk_start():
    ep = toytask.mixed_dataset(0, n_demo=1, n_rollout=0, n_play=0)[0]
    cfg = dataclasses.replace(tiny_config().model, relative_actions=True)
    mask = relative_action_mask(cfg)
    assert mask[:14].all() and not mask[14:].any()  # arms relative, grippers absolute
    stats = NormStats.from_episodes([ep], relative_mask=mask, horizon=4)
    big_t = len(ep.action)
    idx = np.minimum(np.arange(big_t)[:, None] + np.arange(4), big_t - 1)
    want = (ep.action[idx] - mask * ep.joint_pos[:, None]).reshape(-1, 16).mean(0)
    np.testing.assert_allclose(stats.action_mean, want, rtol=1e-5, atol=1e-6)


def test_set_overrides_any_config_field_and_refuses_unknown_ones():
    cfg = apply_overrides(
        tiny_config(),
        ["train.encoder_steps=7", "model.encoder.pool=spatial", "model.encoder.image_size=[16, 16]"],
    )
    assert cfg.train.encoder_steps == 7 and cfg.model.encoder.pool == "spatial"
    assert cfg.model.encoder.image_size == (16, 16)
    with pytest.raises(ValueError, match="unknown config key"):
        apply_overrides(tiny_config(), ["trian.encoder_steps=7"])
    with pytest.raises(ValueError, match="known field"):
        apply_overrides(tiny_config(), ["train.no_such_field=1"])


def test_q_std_temperature_is_lambda_times_the_critics_spread_on_the_batch():
    base = tiny_config()
    cfg = dataclasses.replace(base, qam=dataclasses.replace(base.qam, lam=3.0, lam_scale="q_std"))
    agent, state, batch = _agent_and_batch(cfg)
    # A critic whose values differ across the batch: perturb the Q heads' output layers.
    state = agent.start_rl(state.replace(critic=jax.tree.map(lambda x: x + 0.3, state.critic)))
    from lwd_learner.networks import CriticValue

    obs = agent.nets.obs(state.norm, batch)
    zc = agent.critic.apply(state.critic, *obs, method=CriticValue.encode)
    a = agent.nets.norm_actions(state.norm, batch["actions"], batch["joint_pos"])
    q = np.min(np.asarray(agent.critic.apply(state.critic, zc, a, method=CriticValue.q_from_z)), 0)
    _, stats = agent.policy_loss(
        state.policy, state.ref_policy, state.critic, state.norm, batch, jax.random.PRNGKey(0)
    )
    assert q.std() > 1e-3
    np.testing.assert_allclose(float(stats["lam_effective"]), 3.0 * (q.std() + 1e-4), rtol=1e-4)


def test_random_shift_crops_each_frame_from_its_edge_padded_self():
    from lwd_learner.agents.base import random_shift

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 3, 8, 8, 3), dtype=np.uint8)
    out = np.asarray(random_shift(jax.random.PRNGKey(0), images, 2))
    assert out.shape == images.shape and out.dtype == np.uint8
    moved = 0
    for b in range(4):
        for c in range(3):
            padded = np.pad(images[b, c], ((2, 2), (2, 2), (0, 0)), mode="edge")
            crops = [padded[i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
            assert any(np.array_equal(out[b, c], x) for x in crops)
            moved += not np.array_equal(out[b, c], images[b, c])
    assert moved > 0


def test_cli_offers_every_training_method_of_the_config():
    import subprocess
    import sys
    import typing

    from lwd_learner.config import TrainConfig

    out = subprocess.run(
        [sys.executable, "-m", "lwd_learner.cli", "offline", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for method in typing.get_args(typing.get_type_hints(TrainConfig)["method"]):
        assert method in out
