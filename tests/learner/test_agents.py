"""One agent per method (lwd_learner.agents): the registry that TrainConfig.method names, and
checkpoints that keep the layout the single `Agent` class wrote before the split (so every earlier
checkpoint restores into the new agents), round-tripping into every method."""

from __future__ import annotations

import dataclasses
import hashlib
import typing

import jax
import numpy as np
import pytest

from lwd_learner.agents import AGENTS, HGDaggerAgent, LWDAgent, RecapAgent, SFTAgent, agent_class, make_agent
from lwd_learner.checkpoint import Checkpointer
from lwd_learner.config import (
    CriticConfig,
    EncoderConfig,
    LearnerConfig,
    ModelConfig,
    PolicyConfig,
    QAMConfig,
    TrainConfig,
    bc_rule,
    critic_needs_own_batch,
    trains_critic,
)
from lwd_learner.replay import NormStats, Vocab
from lwd_learner.train import Session, restore_session

MODEL = ModelConfig(
    encoder=EncoderConfig(image_size=(8, 8), conv_channels=(4,), joint_hidden=8, task_dim=4, out_dim=8),
    policy=PolicyConfig(hidden=(16,)),
    critic=CriticConfig(hidden=(8, 8), action_dim=8, num_atoms=11),
)
STATS = NormStats(
    np.zeros(16, np.float32), np.ones(16, np.float32), np.zeros(16, np.float32), np.ones(16, np.float32)
)

# What the single Agent class (lwd_learner/agent.py before the split into agents/) checkpointed
# for MODEL, per "method/qam.reference/phase" (the state after `init`, and after `start_rl` for
# lwd's RL phase): the number of leaves and a digest of their paths and dtypes (`_layout`).
FORMER_LAYOUT = {
    "lwd/frozen/bc": (290, "f63f41c078f265d8"),
    "lwd/frozen/rl": (290, "fbdc1a65e188c0e1"),
    "lwd/bc_ema/bc": (290, "f63f41c078f265d8"),
    "lwd/bc_ema/rl": (331, "0055f9186ff3af19"),
    "sft/frozen/bc": (290, "f63f41c078f265d8"),
    "sft/bc_ema/bc": (290, "f63f41c078f265d8"),
    "hg_dagger/frozen/bc": (290, "f63f41c078f265d8"),
    "hg_dagger/bc_ema/bc": (290, "f63f41c078f265d8"),
    "recap/frozen/bc": (290, "f63f41c078f265d8"),
    "recap/bc_ema/bc": (290, "f63f41c078f265d8"),
}
# The parameter paths of the policy and the critic it wrote (every method's, every phase's).
FORMER_POLICY_PARAMS = (
    "encoder/conv0/bias",
    "encoder/conv0/kernel",
    "encoder/fuse/bias",
    "encoder/fuse/kernel",
    "encoder/joint/bias",
    "encoder/joint/kernel",
    "encoder/norm/bias",
    "encoder/norm/scale",
    "encoder/text/table/embedding",
    "head/dense0/bias",
    "head/dense0/kernel",
    "head/out/bias",
    "head/out/kernel",
)
FORMER_CRITIC_PARAMS = (
    "encoder/conv0/bias",
    "encoder/conv0/kernel",
    "encoder/fuse/bias",
    "encoder/fuse/kernel",
    "encoder/joint/bias",
    "encoder/joint/kernel",
    "encoder/norm/bias",
    "encoder/norm/scale",
    "encoder/text/table/embedding",
    "pool/embed/bias",
    "pool/embed/kernel",
    "pool/key/bias",
    "pool/key/kernel",
    "pool/pos",
    "pool/query",
    "pool/value/bias",
    "pool/value/kernel",
    "q0/mlp_dense0/bias",
    "q0/mlp_dense0/kernel",
    "q0/mlp_dense1/bias",
    "q0/mlp_dense1/kernel",
    "q0/mlp_ln0/bias",
    "q0/mlp_ln0/scale",
    "q0/mlp_ln1/bias",
    "q0/mlp_ln1/scale",
    "q0/mlp_out/bias",
    "q0/mlp_out/kernel",
    "q1/mlp_dense0/bias",
    "q1/mlp_dense0/kernel",
    "q1/mlp_dense1/bias",
    "q1/mlp_dense1/kernel",
    "q1/mlp_ln0/bias",
    "q1/mlp_ln0/scale",
    "q1/mlp_ln1/bias",
    "q1/mlp_ln1/scale",
    "q1/mlp_out/bias",
    "q1/mlp_out/kernel",
    "v_dist/mlp_dense0/bias",
    "v_dist/mlp_dense0/kernel",
    "v_dist/mlp_dense1/bias",
    "v_dist/mlp_dense1/kernel",
    "v_dist/mlp_ln0/bias",
    "v_dist/mlp_ln0/scale",
    "v_dist/mlp_ln1/bias",
    "v_dist/mlp_ln1/scale",
    "v_dist/mlp_out/bias",
    "v_dist/mlp_out/kernel",
    "v_scalar/mlp_dense0/bias",
    "v_scalar/mlp_dense0/kernel",
    "v_scalar/mlp_dense1/bias",
    "v_scalar/mlp_dense1/kernel",
    "v_scalar/mlp_ln0/bias",
    "v_scalar/mlp_ln0/scale",
    "v_scalar/mlp_ln1/bias",
    "v_scalar/mlp_ln1/scale",
    "v_scalar/mlp_out/bias",
    "v_scalar/mlp_out/kernel",
)


def _config(method: str = "lwd", reference: str = "frozen", **train) -> LearnerConfig:
    return LearnerConfig(
        model=MODEL,
        qam=QAMConfig(reference=reference, flow_steps=2),
        train=TrainConfig(method=method, batch_size=4, **train),
    )


def _layout(state) -> list[str]:
    """`field[path]:dtype` of every leaf a checkpoint holds (fields that are None are not written)."""
    rows = []
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if value is not None:
            for path, leaf in jax.tree_util.tree_flatten_with_path(value)[0]:
                rows.append(f"{f.name}{jax.tree_util.keystr(path)}:{np.asarray(leaf).dtype}")
    return rows


def _param_paths(params) -> list[str]:
    return [
        "/".join(str(k.key) for k in path[1:]) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    ]


def _batch(n: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    h, w = MODEL.encoder.image_size
    img = lambda: rng.integers(0, 256, (n, MODEL.num_cameras, h, w, 3), dtype=np.uint8)  # noqa: E731
    return {
        "images": img(),
        "next_images": img(),
        "joint_pos": rng.normal(size=(n, 16)).astype(np.float32),
        "next_joint_pos": rng.normal(size=(n, 16)).astype(np.float32),
        "task_id": np.ones(n, np.int32),
        "next_task_id": np.ones(n, np.int32),
        "actions": rng.normal(size=(n, MODEL.horizon, 16)).astype(np.float32),
        "ret": rng.uniform(size=n).astype(np.float32),
        "done": np.zeros(n, np.float32),
        "discount": np.full(n, 0.99, np.float32),
    }


# ---- registry ------------------------------------------------------------------------------------
def test_the_registry_has_an_agent_for_every_method_the_config_names():
    methods = typing.get_args(typing.get_type_hints(TrainConfig)["method"])
    assert tuple(AGENTS) == methods
    expected = {"lwd": LWDAgent, "sft": SFTAgent, "hg_dagger": HGDaggerAgent, "recap": RecapAgent}
    for name, cls in expected.items():
        assert agent_class(name) is cls and cls.name == name
        assert type(make_agent(_config(name))) is cls


def test_an_unknown_method_is_one_line_listing_the_methods():
    with pytest.raises(ValueError) as err:
        make_agent(_config("dagger"))
    msg = str(err.value)
    assert "\n" not in msg and "'dagger'" in msg and "lwd, sft, hg_dagger, recap" in msg


@pytest.mark.parametrize("bc_data", ["demos", "all", "hg_dagger"])
@pytest.mark.parametrize("method", list(AGENTS))
def test_each_agent_agrees_with_the_config_helpers(method, bc_data):
    cfg = _config(method, bc_data=bc_data)
    agent = make_agent(cfg)
    assert agent.trains_critic == trains_critic(cfg.train)
    assert agent.bc_rule == bc_rule(cfg.train)
    assert agent.critic_needs_own_batch == critic_needs_own_batch(cfg.train)


def test_each_agent_names_the_update_of_each_phase():
    assert [make_agent(_config(m)).update_kind("bc") for m in AGENTS] == ["bc"] * 4
    assert make_agent(_config("lwd")).update_kind("rl") == "rl"
    assert make_agent(_config("recap")).update_kind("rl") == "recap"
    for method in ("sft", "hg_dagger"):  # BC only: an RL-phase state is refused, not trained with QAM
        with pytest.raises(ValueError, match=f"method '{method}' has no RL phase"):
            make_agent(_config(method)).update_kind("rl")


# ---- checkpoints -----------------------------------------------------------------------------------
@pytest.mark.parametrize("key", list(FORMER_LAYOUT))
def test_the_checkpointed_state_has_the_former_agents_layout(key):
    method, reference, phase = key.split("/")
    agent = make_agent(_config(method, reference))
    state = agent.init(STATS, 0)
    if phase == "rl":
        state = agent.start_rl(state)
    rows = _layout(state)
    assert (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]) == FORMER_LAYOUT[key]
    assert tuple(_param_paths(state.policy)) == FORMER_POLICY_PARAMS
    assert tuple(_param_paths(state.critic)) == FORMER_CRITIC_PARAMS


def _save(directory, cfg, state, phase: str) -> None:
    session = Session(cfg, make_agent(cfg), state, Vocab(["reach"]), STATS, phase, {})
    ck = Checkpointer(directory)
    ck.save(int(state.step), state, session.meta())
    ck.close()


def _assert_same_tree(a, b) -> None:
    leaves_a, tree_a = jax.tree.flatten(jax.device_get(a))
    leaves_b, tree_b = jax.tree.flatten(jax.device_get(b))
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_checkpoints_round_trip_into_every_agent_with_the_same_outputs(tmp_path):
    cfg = _config("lwd")
    agent = LWDAgent(cfg)
    batch = _batch()
    state, _ = agent.bc_update(agent.init(STATS, 0), batch, _batch(seed=1))
    state = jax.device_get(state)
    noise = np.random.default_rng(2).normal(size=(4, MODEL.horizon, 16)).astype(np.float32)
    obs = (batch["images"], batch["joint_pos"], batch["task_id"], noise)
    actions = agent.act(state, *obs)
    values = np.asarray(agent.state_values(state.critic, state.norm, *obs[:3]))

    _save(tmp_path / "bc", cfg, state, "bc")
    for method in AGENTS:  # a BC checkpoint continues with any method
        s = restore_session(tmp_path / "bc", _config(method))
        assert type(s.agent) is AGENTS[method] and s.phase == "bc"
        _assert_same_tree(s.state, state)
        np.testing.assert_array_equal(s.agent.act(s.state, *obs), actions)
        np.testing.assert_array_equal(
            np.asarray(s.agent.state_values(s.state.critic, s.state.norm, *obs[:3])), values
        )

    rl, _ = agent.rl_update(agent.start_rl(jax.tree.map(np.copy, state)), batch)
    rl = jax.device_get(rl)
    _save(tmp_path / "rl", cfg, rl, "rl")
    s = restore_session(tmp_path / "rl")  # resumed as written: QAM's optimiser state and all
    _assert_same_tree(s.state, rl)
    np.testing.assert_array_equal(s.agent.act(s.state, *obs), agent.act(rl, *obs))
    s = restore_session(tmp_path / "rl", _config("recap"))  # another method: its own fresh optimiser
    assert s.agent.update_kind(s.phase) == "recap"
    _assert_same_tree(s.state.replace(policy_opt=None), rl.replace(policy_opt=None))
    _assert_same_tree(s.state.policy_opt, s.agent.bc_tx.init(rl.policy))
