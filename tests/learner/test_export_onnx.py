"""ONNX export: the contract of lwd_common.policy_io and parity with the JAX sampler (the export gate)."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from lwd_common import policy_io
from lwd_description.robot import JOINT_NAMES
from lwd_learner import networks
from lwd_learner.agents import make_agent
from lwd_learner.config import EncoderConfig, LearnerConfig, ModelConfig, PolicyConfig
from lwd_learner.export_onnx import export_policy
from lwd_learner.replay import NormStats


def _agent_state(image_size=(16, 20), pool="mean", relative=False, noise_scale=1.0):
    cfg = LearnerConfig(
        model=ModelConfig(
            encoder=EncoderConfig(image_size=image_size, conv_channels=(8, 16), pool=pool),
            relative_actions=relative,
            policy=PolicyConfig(hidden=(64, 64), noise_scale=noise_scale),
        )
    )
    agent = make_agent(cfg)
    rng = np.random.default_rng(0)
    stats = NormStats(
        rng.normal(size=16).astype(np.float32),
        rng.uniform(0.5, 2, 16).astype(np.float32),
        rng.normal(size=16).astype(np.float32),
        rng.uniform(0.1, 1, 16).astype(np.float32),
    )
    state = agent.init(stats, seed=1)
    # Random (non-zero) output layer so the field is not trivially zero.
    state = state.replace(
        policy=jax.tree.map(
            lambda x: x + 0.05 * np.asarray(jax.random.normal(jax.random.PRNGKey(2), x.shape)), state.policy
        )
    )
    return cfg, agent, state


def _inputs(cfg, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    h, w = cfg.model.encoder.image_size
    return (
        rng.integers(0, 256, (batch, 3, h, w, 3), dtype=np.uint8),
        rng.normal(size=(batch, 16)).astype(np.float32),
        np.array([0, 1, 2][:batch], np.int64),
        rng.normal(size=(batch, 30, 16)).astype(np.float32),
    )


@pytest.fixture(
    scope="module",
    params=[("mean", False, 1.0), ("spatial", True, 0.5)],
    ids=["mean-absolute-noise1", "spatial-relative-noise0.5"],
)
def exported(request):
    cfg, agent, state = _agent_state(
        pool=request.param[0], relative=request.param[1], noise_scale=request.param[2]
    )
    model = export_policy(state.policy, state.norm, cfg.model, ["<unknown>", "pick", "place"], 10, "v000007")
    return cfg, agent, state, model


def test_exported_policy_matches_jax_sampler_on_same_noise(exported):
    cfg, agent, state, model = exported
    images, q, task, noise = _inputs(cfg)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(
        [policy_io.OUTPUT_ACTIONS],
        {
            policy_io.INPUT_IMAGES: images,
            policy_io.INPUT_JOINT_POS: q,
            policy_io.INPUT_TASK_ID: task,
            policy_io.INPUT_NOISE: noise,
            **policy_io.rtc_feeds(30, 16, 3),  # no prefix: the plain sampler
        },
    )[0]
    want = agent.act(state, images, q, task.astype(np.int32), noise, steps=10)
    assert got.shape == (3, 30, 16)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert (
        np.abs(want - (noise * np.asarray(state.norm["action_std"]))).max() > 0.01
    )  # the field did something


def test_zero_noise_scale_gives_the_same_chunk_for_any_noise():
    cfg, agent, state = _agent_state(noise_scale=0.0)
    model = export_policy(state.policy, state.norm, cfg.model, ["<unknown>", "pick", "place"], 10, "v1")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    images, q, task, noise = _inputs(cfg)
    feeds = {
        policy_io.INPUT_IMAGES: images,
        policy_io.INPUT_JOINT_POS: q,
        policy_io.INPUT_TASK_ID: task,
        **policy_io.rtc_feeds(30, 16, 3),
    }
    a = sess.run(None, {**feeds, policy_io.INPUT_NOISE: noise})[0]
    b = sess.run(None, {**feeds, policy_io.INPUT_NOISE: 3 * noise + 1})[0]
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert np.abs(a[0] - a[1]).max() > 1e-3  # still a function of the observation


def test_exported_policy_satisfies_the_contract_and_metadata(exported):
    cfg, _, _, model = exported
    sig = policy_io.read_signature(onnx.load_from_string(model.SerializeToString()))
    assert (sig.image_height, sig.image_width) == (16, 20)
    assert sig.instructions == ("<unknown>", "pick", "place") and sig.version == "v000007"
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[policy_io.META_FLOW_STEPS] == "10"
    assert tuple(json.loads(meta[policy_io.META_JOINT_NAMES])) == JOINT_NAMES
    assert meta[policy_io.META_CONTROL_HZ] == "30"  # the rate the training data was recorded at


def test_exported_policy_runs_with_batch_one(exported):
    cfg, _, _, model = exported
    images, q, task, noise = _inputs(cfg, batch=1)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        "images": images,
        "joint_pos": q,
        "task_id": task,
        "noise": noise,
        **policy_io.rtc_feeds(30, 16, 1),
    }
    out = sess.run(None, feeds)[0]
    assert out.shape == (1, 30, 16) and np.all(np.isfinite(out))


def test_export_refuses_an_unknown_encoder():
    cfg, _, state = _agent_state()
    bad = ModelConfig(encoder=EncoderConfig(kind="vla"))
    with pytest.raises(ValueError, match="unknown encoder kind 'vla'"):
        export_policy(state.policy, state.norm, bad, ["<unknown>"], 10)


class _PixelMLPEncoder(nn.Module):
    """A non-conv encoder (pixel means, gelu MLP): it exports because the graph is traced, not mirrored."""

    cfg: EncoderConfig

    @nn.compact
    def __call__(self, images, joint_pos=None, task_id=None, features_only: bool = False):
        x = jnp.mean(images.astype(jnp.float32) / 255.0, axis=(2, 3)).reshape(images.shape[0], -1)
        t = nn.Embed(self.cfg.vocab_capacity, 8, name="task")(task_id)
        x = nn.gelu(nn.Dense(32, name="d0")(jnp.concatenate([x, joint_pos, t], axis=-1)))
        return jnp.tanh(nn.Dense(self.cfg.out_dim, name="d1")(x))


class _CumsumEncoder(nn.Module):
    cfg: EncoderConfig

    @nn.compact
    def __call__(self, images, joint_pos=None, task_id=None, features_only: bool = False):
        return nn.Dense(self.cfg.out_dim)(jnp.cumsum(joint_pos, axis=-1))


def _custom_encoder_state(monkeypatch, kind, module):
    monkeypatch.setitem(networks.ENCODERS, kind, module)
    cfg = LearnerConfig(
        model=ModelConfig(
            encoder=EncoderConfig(kind=kind, image_size=(8, 8)),
            policy=PolicyConfig(hidden=(32,), noise_scale=1.0),
        )
    )
    agent = make_agent(cfg)
    z = np.zeros(16, np.float32)
    state = agent.init(NormStats(z, z + 1, z, z + 1), seed=3)
    state = state.replace(
        policy=jax.tree.map(
            lambda x: x + 0.05 * np.asarray(jax.random.normal(jax.random.PRNGKey(4), x.shape)), state.policy
        )
    )
    return cfg, agent, state


def test_any_encoder_of_supported_primitives_exports_with_parity(monkeypatch):
    cfg, agent, state = _custom_encoder_state(monkeypatch, "pixel_mlp", _PixelMLPEncoder)
    model = export_policy(state.policy, state.norm, cfg.model, ["<unknown>", "pick", "place"], 4)
    images, q, task, noise = _inputs(cfg)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        "images": images,
        "joint_pos": q,
        "task_id": task,
        "noise": noise,
        **policy_io.rtc_feeds(30, 16, 3),
    }
    got = sess.run(None, feeds)[0]
    np.testing.assert_allclose(
        got, agent.act(state, images, q, task.astype(np.int32), noise, steps=4), rtol=1e-4, atol=1e-4
    )


def test_a_primitive_without_an_onnx_rule_fails_at_export_naming_it(monkeypatch):
    cfg, _, state = _custom_encoder_state(monkeypatch, "cumsum", _CumsumEncoder)
    with pytest.raises(NotImplementedError, match="cumsum"):
        export_policy(state.policy, state.norm, cfg.model, ["<unknown>"], 4)


# ---- the converter itself, primitive by primitive (small functions, dynamic batch) ----------------

_W = np.random.default_rng(5).normal(size=(4, 6)).astype(np.float32)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: jnp.where(x > 0, jnp.exp(-x), jnp.tanh(x)) * 2 + jnp.sqrt(jnp.abs(x)) - jax.nn.gelu(x) / 3,
        lambda x: jax.nn.softmax(x @ _W, axis=-1) + jnp.max(x, axis=-1, keepdims=True) - jnp.min(x),
        lambda x: jnp.concatenate([x, jnp.full((x.shape[0], 2), 0.5), jnp.sin(x[:, 1:3] ** 3)], axis=-1),
        lambda x: (
            jnp.einsum("bi,bj->bij", x, x).reshape(-1, 4) @ _W[:, :2]
            + jnp.mean(x.reshape(-1, 2, 2), axis=1)[:1]
        ),
        lambda x: (
            jnp.take(jnp.asarray(_W), (x[:, 0] > 0).astype(jnp.int32), axis=0)
            * jax.lax.rsqrt(1.0 + x[:, :1] ** 2)
        ),
    ],
    ids=["elementwise", "dense-softmax-reduce", "concat-constant-slice", "einsum-reshape-mean", "take-rsqrt"],
)
@pytest.mark.parametrize("batch", [1, 5])
def test_converter_matches_jax_for_any_batch(fn, batch):
    from lwd_learner.jaxpr_onnx import GraphInput, jax_to_onnx

    model = jax_to_onnx(fn, [GraphInput("x", ("B", 4), np.float32)], ["y"])
    onnx.checker.check_model(model)
    x = np.random.default_rng(batch).normal(size=(batch, 4)).astype(np.float32)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]
    np.testing.assert_allclose(got, np.asarray(fn(x)), rtol=1e-5, atol=1e-5)
