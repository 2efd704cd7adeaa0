"""The actor's ONNX runtime with real-time-chunking policies (prefix / prefix_len / delay inputs)
and with older policies that lack them."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_obs

from lwd_actor.core.policy_runtime import OnnxPolicy
from lwd_common import policy_io
from lwd_learner.config import EncoderConfig, LearnerConfig, ModelConfig, PolicyConfig
from lwd_learner.export_onnx import export_policy
from lwd_testing.models import build_policy, random_flow_params

H, J = 30, 16


@pytest.fixture(scope="module")
def rtc_policy(tmp_path_factory):
    """A tiny learner policy of the G1 exported as the learner exports (RTC by default), noise scale
    0 so that a chunk is a function of its inputs."""
    cfg = LearnerConfig(
        model=ModelConfig(
            encoder=EncoderConfig(image_size=(8, 8), conv_channels=(4, 4), out_dim=16),
            relative_actions=True,
            policy=PolicyConfig(hidden=(32,), time_features=4),
        )
    )
    params = random_flow_params(cfg.model)
    z = np.zeros(J, np.float32)
    norm = {"joint_mean": z, "joint_std": z + 1, "action_mean": z, "action_std": z + 1}
    model = export_policy(params, norm, cfg.model, ["<unknown>", "pick up the cube"], 4, "rtc-v1")
    path = tmp_path_factory.mktemp("rtc") / "policy.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _prefix(rows: int = H) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (rows, J)).astype(np.float32)


def test_an_rtc_policy_passes_the_load_checks_and_says_it_takes_a_prefix(rtc_policy):
    p = OnnxPolicy(rtc_policy)  # contract, deployment fit, trial inferences without and with a prefix
    assert p.rtc and p.signature.rtc and p.metadata[policy_io.META_RTC_MAX_GUIDANCE] == "5"


def test_an_rtc_policy_chunk_starts_with_the_frozen_prefix_rows(rtc_policy):
    p = OnnxPolicy(rtc_policy)
    prefix = _prefix(20)  # the old chunk's 20 remaining rows: fewer than the horizon
    chunk = p.infer(make_obs(0.0, np.full(J, 0.1)), "pick up the cube", prefix=prefix, prefix_len=20, delay=3)
    assert chunk.shape == (H, J)
    np.testing.assert_array_equal(chunk[:3], prefix[:3])
    assert not np.allclose(chunk[3:20], prefix[3:20], atol=1e-3)  # guided, not copied


def test_an_rtc_policy_without_a_prefix_gives_the_plain_chunk(rtc_policy):
    p = OnnxPolicy(rtc_policy)
    obs = make_obs(0.0, np.full(J, 0.1))
    plain = p.infer(obs, "pick up the cube")
    np.testing.assert_array_equal(
        p.infer(obs, "pick up the cube", prefix=_prefix(), prefix_len=0, delay=2), plain
    )
    assert not np.array_equal(
        p.infer(obs, "pick up the cube", prefix=_prefix(), prefix_len=H, delay=2), plain
    )


def test_a_policy_without_rtc_inputs_still_loads_and_ignores_a_prefix(tmp_path):
    p = OnnxPolicy(build_policy(tmp_path / "old.onnx"))  # the plain sampler's graph (no RTC inputs)
    assert not p.rtc
    obs = make_obs(0.0, np.full(J, 0.1))
    chunk = p.infer(obs, "pick up the cube", prefix=_prefix(), prefix_len=H, delay=5)
    np.testing.assert_array_equal(chunk, p.infer(obs, "pick up the cube"))
    assert chunk.shape == (H, J) and chunk[0, 0] == pytest.approx(0.1 + 0.001, abs=1e-3)


def test_rtc_feeds_pad_the_prefix_to_the_horizon_and_clip_its_lengths():
    feeds = policy_io.rtc_feeds(H, J, 1, _prefix(12), prefix_len=40, delay=20)
    assert feeds[policy_io.INPUT_PREFIX].shape == (1, H, J)
    assert feeds[policy_io.INPUT_PREFIX_LEN].tolist() == [12] and feeds[policy_io.INPUT_DELAY].tolist() == [
        12
    ]
    assert not feeds[policy_io.INPUT_PREFIX][0, 12:].any()
    short = policy_io.rtc_feeds(H, J, 1, _prefix(), prefix_len=5)
    assert not short[policy_io.INPUT_PREFIX][0, 5:].any()  # zero rows from prefix_len on (the contract)
    assert short[policy_io.INPUT_DELAY].tolist() == [0]
    none = policy_io.rtc_feeds(H, J, 2)
    assert none[policy_io.INPUT_PREFIX_LEN].tolist() == [0, 0] and none[policy_io.INPUT_PREFIX].shape == (
        2,
        H,
        J,
    )
    with pytest.raises(ValueError, match="prefix must be"):
        policy_io.rtc_feeds(H, J, 1, np.zeros((H, 7)))
