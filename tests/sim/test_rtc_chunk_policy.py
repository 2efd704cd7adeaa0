"""OnnxChunkPolicy (simulator evaluation) feeds real-time-chunking inputs to policies that take
them and runs older policies without them."""

from __future__ import annotations

import numpy as np
import pytest

from lwd_learner.config import EncoderConfig, LearnerConfig, ModelConfig, PolicyConfig
from lwd_learner.export_onnx import export_policy
from lwd_sim.evaluate_policy import OnnxChunkPolicy
from lwd_testing.models import build_policy, random_flow_params

H, J = 30, 16


def _obs(batch: int, size: int) -> dict[str, np.ndarray]:
    return {
        "images": np.zeros((batch, 3, size, size, 3), np.uint8),
        "joint_pos": np.full((batch, J), 0.1, np.float32),
        "task_id": np.zeros(batch, np.int64),
    }


@pytest.fixture(scope="module")
def rtc_policy(tmp_path_factory):
    cfg = LearnerConfig(
        model=ModelConfig(
            encoder=EncoderConfig(image_size=(8, 8), conv_channels=(4, 4), out_dim=16),
            policy=PolicyConfig(hidden=(32,), time_features=4),
        )
    )
    params = random_flow_params(cfg.model)
    z = np.zeros(J, np.float32)
    norm = {"joint_mean": z, "joint_std": z + 1, "action_mean": z, "action_std": z + 1}
    path = tmp_path_factory.mktemp("rtc") / "policy.onnx"
    path.write_bytes(export_policy(params, norm, cfg.model, ["<unknown>"], 4).SerializeToString())
    return path


def test_an_rtc_policy_gets_the_prefix_and_keeps_its_frozen_rows(rtc_policy):
    policy = OnnxChunkPolicy(rtc_policy)
    assert policy.rtc
    prefix = np.random.default_rng(0).uniform(-1, 1, (2, 18, J)).astype(np.float32)
    chunks = policy(_obs(2, 8), prefix=prefix, prefix_len=np.array([18, 10]), delay=np.array([4, 2]))
    assert chunks.shape == (2, H, J)
    np.testing.assert_array_equal(chunks[0, :4], prefix[0, :4])
    np.testing.assert_array_equal(chunks[1, :2], prefix[1, :2])
    np.testing.assert_array_equal(
        policy(_obs(2, 8)), policy(_obs(2, 8), prefix=prefix, prefix_len=0, delay=3)
    )


def test_a_policy_without_rtc_inputs_runs_and_ignores_a_prefix(tmp_path):
    policy = OnnxChunkPolicy(build_policy(tmp_path / "old.onnx", image_size=24))
    assert not policy.rtc
    prefix = np.zeros((2, H, J), np.float32)
    chunks = policy(_obs(2, 24), prefix=prefix, prefix_len=H, delay=5)
    np.testing.assert_array_equal(chunks, policy(_obs(2, 24)))
