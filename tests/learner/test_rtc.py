"""Real-time chunking (flow.rtc_sample): the JAX sampler, its ONNX export and their agreement."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from lwd_common import policy_io
from lwd_learner.agents import make_agent
from lwd_learner.config import EncoderConfig, LearnerConfig, ModelConfig, PolicyConfig
from lwd_learner.export_onnx import export_policy
from lwd_learner.flow import rtc_guidance_scale, rtc_weights
from lwd_learner.replay import NormStats
from lwd_testing.models import random_flow_params

H, J = 30, 16
STEPS = 10  # the learner's default flow_steps
INSTRUCTIONS = ["<unknown>", "pick", "place"]
# One batch covering the cases: no prefix, guided only, frozen + guided, a whole-chunk prefix, and a
# delay past prefix_len (clipped to it).
PREFIX_LEN = np.array([0, 12, 20, 30, 6], np.int64)
DELAY = np.array([0, 0, 4, 7, 9], np.int64)


@pytest.fixture(scope="module")
def policy():
    cfg = LearnerConfig(
        model=ModelConfig(
            encoder=EncoderConfig(image_size=(8, 8), conv_channels=(4, 8), out_dim=32),
            relative_actions=True,
            policy=PolicyConfig(hidden=(64, 64), time_features=8, noise_scale=1.0),
        )
    )
    agent = make_agent(cfg)
    rng = np.random.default_rng(0)
    stats = NormStats(
        rng.normal(size=J).astype(np.float32),
        rng.uniform(0.5, 2, J).astype(np.float32),
        rng.normal(size=J).astype(np.float32),
        rng.uniform(0.1, 1, J).astype(np.float32),
    )
    # A state with only what sampling reads (BaseAgent.init compiles the whole agent: slow on 2 cores).
    state = SimpleNamespace(
        policy=random_flow_params(cfg.model), norm={k: np.asarray(v) for k, v in stats.to_dict().items()}
    )
    rtc = export_policy(state.policy, state.norm, cfg.model, INSTRUCTIONS, STEPS, "v1")
    plain = export_policy(state.policy, state.norm, cfg.model, INSTRUCTIONS, STEPS, "v1", rtc=False)
    return agent, state, rtc, plain


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _inputs(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {
        policy_io.INPUT_IMAGES: rng.integers(0, 256, (batch, 3, 8, 8, 3), dtype=np.uint8),
        policy_io.INPUT_JOINT_POS: rng.normal(size=(batch, J)).astype(np.float32),
        policy_io.INPUT_TASK_ID: np.arange(batch, dtype=np.int64) % 3,
        policy_io.INPUT_NOISE: rng.normal(size=(batch, H, J)).astype(np.float32),
    }


def _prefix(prefix_len, seed: int = 1) -> np.ndarray:
    """Random absolute targets, zero rows from prefix_len on (the contract)."""
    prefix = np.random.default_rng(seed).normal(size=(len(prefix_len), H, J)).astype(np.float32)
    prefix[np.arange(H)[None, :] >= np.asarray(prefix_len)[:, None]] = 0.0
    return prefix


def _act(agent, state, feeds, steps=STEPS, **rtc):
    return agent.act(
        state,
        feeds[policy_io.INPUT_IMAGES],
        feeds[policy_io.INPUT_JOINT_POS],
        feeds[policy_io.INPUT_TASK_ID].astype(np.int32),
        feeds[policy_io.INPUT_NOISE],
        steps=steps,
        **rtc,
    )


def test_rtc_weights_freeze_the_delay_rows_and_decay_to_zero_at_prefix_len():
    w = np.asarray(rtc_weights(H, np.array([0, 20, 6]), np.array([0, 4, 9])))
    assert w.shape == (3, H)
    assert not w[0].any()  # no prefix: no guidance
    assert (w[1, :4] == 1).all() and (w[1, 20:] == 0).all()
    soft = w[1, 4:20]
    assert (np.diff(soft) < 0).all() and 0 < soft[-1] < soft[0] < 1
    c = (20 - 4) / (20 - 4 + 1)
    assert soft[0] == pytest.approx(c * (np.exp(c) - 1) / (np.e - 1))
    assert (w[2, :6] == 1).all() and not w[2, 6:].any()  # delay clipped to prefix_len


def test_guidance_weight_is_capped_and_finite_at_noise():
    assert rtc_guidance_scale(0.0, 5.0) == 5.0  # (1 - w) / (w r^2) is infinite at w = 0
    assert rtc_guidance_scale(0.5, 5.0) == pytest.approx(2.0)  # (w^2 + (1 - w)^2) / (w (1 - w))
    assert rtc_guidance_scale(0.9, 100.0) == pytest.approx((0.81 + 0.01) / (0.9 * 0.1))
    assert rtc_guidance_scale(0.9, 5.0) == 5.0


def test_rtc_graph_matches_the_jax_sampler_with_a_prefix(policy):
    agent, state, rtc, _ = policy
    feeds = _inputs(len(PREFIX_LEN))
    prefix = _prefix(PREFIX_LEN)
    got = _session(rtc).run(
        None,
        {
            **feeds,
            policy_io.INPUT_PREFIX: prefix,
            policy_io.INPUT_PREFIX_LEN: PREFIX_LEN,
            policy_io.INPUT_DELAY: DELAY,
        },
    )[0]
    want = _act(agent, state, feeds, prefix=prefix, prefix_len=PREFIX_LEN, delay=DELAY)
    assert got.shape == (len(PREFIX_LEN), H, J)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_rtc_graph_runs_with_batch_one(policy):
    _, _, rtc, _ = policy
    feeds = {**_inputs(1), **policy_io.rtc_feeds(H, J, 1, _prefix([30])[0], 25, 3)}
    out = _session(rtc).run(None, feeds)[0]
    assert out.shape == (1, H, J) and np.isfinite(out).all()


def test_frozen_rows_are_the_prefix_exactly(policy):
    agent, state, rtc, _ = policy
    feeds = _inputs(len(PREFIX_LEN), seed=3)
    prefix = _prefix(PREFIX_LEN, seed=4)
    rtc_in = {
        policy_io.INPUT_PREFIX: prefix,
        policy_io.INPUT_PREFIX_LEN: PREFIX_LEN,
        policy_io.INPUT_DELAY: DELAY,
    }
    onnx_out = _session(rtc).run(None, {**feeds, **rtc_in})[0]
    jax_out = _act(agent, state, feeds, prefix=prefix, prefix_len=PREFIX_LEN, delay=DELAY)
    for b, frozen in enumerate(np.minimum(DELAY, PREFIX_LEN)):
        np.testing.assert_array_equal(onnx_out[b, :frozen], prefix[b, :frozen])
        np.testing.assert_array_equal(jax_out[b, :frozen], prefix[b, :frozen])
        assert not np.allclose(onnx_out[b, frozen:], prefix[b, frozen:], atol=1e-3)  # the rest is sampled


def test_prefix_len_zero_is_the_plain_sampler_exactly(policy):
    agent, state, rtc, plain = policy
    feeds = _inputs(3, seed=5)
    prefix = np.random.default_rng(6).normal(size=(3, H, J)).astype(np.float32)  # ignored: prefix_len 0
    zeros = np.zeros(3, np.int64)
    np.testing.assert_array_equal(
        _act(agent, state, feeds, prefix=prefix, prefix_len=zeros, delay=zeros + 4), _act(agent, state, feeds)
    )
    rtc_out = _session(rtc).run(
        None,
        {
            **feeds,
            policy_io.INPUT_PREFIX: prefix,
            policy_io.INPUT_PREFIX_LEN: zeros,
            policy_io.INPUT_DELAY: zeros + 4,
        },
    )[0]
    np.testing.assert_array_equal(rtc_out, _session(plain).run(None, feeds)[0])


def test_guidance_pulls_the_soft_region_towards_the_prefix(policy):
    agent, state, _, _ = policy
    feeds = _inputs(4, seed=7)
    unguided = _act(agent, state, feeds)
    # The previous chunk: a different plan for the same steps (another noise draw, shifted).
    other = {
        **feeds,
        policy_io.INPUT_NOISE: np.random.default_rng(8).normal(size=(4, H, J)).astype(np.float32),
    }
    prefix = _act(agent, state, other) + 0.3
    prefix_len, delay = np.full(4, 24), np.full(4, 5)
    prefix[:, 24:] = 0.0
    guided = _act(agent, state, feeds, prefix=prefix, prefix_len=prefix_len, delay=delay)

    def err(chunk, rows):
        return np.abs(chunk[:, rows] - prefix[:, rows]).mean()

    # The soft region's weights decay from ~0.9 after the frozen rows to ~0 at prefix_len: the rows
    # right after the frozen ones follow the prefix closely, the whole region more than unguided.
    assert err(guided, slice(5, 12)) < 0.3 * err(unguided, slice(5, 12))
    assert err(guided, slice(5, 24)) < 0.75 * err(unguided, slice(5, 24))
    assert err(guided, slice(5, 10)) < err(guided, slice(19, 24))


def test_rtc_export_is_flagged_in_the_signature_and_metadata(policy):
    _, _, rtc, plain = policy
    sig = policy_io.read_signature(onnx.load_from_string(rtc.SerializeToString()))
    assert sig.rtc and sig.horizon == H
    meta = {p.key: p.value for p in rtc.metadata_props}
    assert meta[policy_io.META_RTC_MAX_GUIDANCE] == "5"
    assert not policy_io.read_signature(plain).rtc
    assert policy_io.META_RTC_MAX_GUIDANCE not in {p.key for p in plain.metadata_props}


_W1 = np.random.default_rng(9).normal(size=(9, 5)).astype(np.float32)
_W2 = np.random.default_rng(10).normal(size=(5, 4)).astype(np.float32)


def _vjp_of_dense_on_concat(x):
    """The cotangent of x through silu(concat(x, constant, tanh x) @ W1) @ W2: the primitives a VJP
    through the flow head brings (add_any, split of a dense layer's transpose, transposed dots)."""

    def f(y):
        h = jax.nn.silu(jnp.concatenate([y, jnp.full((y.shape[0], 1), 0.5), jnp.tanh(y)], axis=-1) @ _W1)
        return h @ _W2

    out, pullback = jax.vjp(f, x)
    return pullback(jnp.sin(out))[0]


@pytest.mark.parametrize("batch", [1, 5])
def test_converter_matches_jax_on_a_vjp_for_any_batch(batch):
    from lwd_learner.jaxpr_onnx import GraphInput, jax_to_onnx

    model = jax_to_onnx(_vjp_of_dense_on_concat, [GraphInput("x", ("B", 4), np.float32)], ["g"])
    onnx.checker.check_model(model)
    x = np.random.default_rng(batch).normal(size=(batch, 4)).astype(np.float32)
    got = _session(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, np.asarray(_vjp_of_dense_on_concat(x)), rtol=1e-5, atol=1e-5)
