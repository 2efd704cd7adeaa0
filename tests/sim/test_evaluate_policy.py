"""An exported ONNX policy (lwd_common.policy_io contract) is evaluated on the simulator at its own image size."""

import json

import numpy as np
import pytest

from lwd_sim.evaluate_policy import OnnxChunkPolicy, evaluate_policy, main
from lwd_testing.models import build_policy


@pytest.fixture
def still_policy(tmp_path):
    return build_policy(
        tmp_path / "p.onnx",
        image_size=24,
        drift=0.0,
        instructions=("<unknown>", "put the red can in the left bin"),
    )


def test_onnx_policy_runs_on_env_observations_at_its_image_size(still_policy):
    policy = OnnxChunkPolicy(still_policy)
    obs = {
        "images": np.zeros((2, 3, 24, 24, 3), np.uint8),
        "joint_pos": np.zeros((2, 16), np.float32),
        "task_id": np.array([0, 1]),
    }
    assert policy(obs).shape == (2, 30, 16)
    with pytest.raises(ValueError, match="policy wants"):
        policy({**obs, "images": np.zeros((2, 3, 16, 16, 3), np.uint8)})


def test_a_still_policy_scores_zero_and_the_expert_scores_high(still_policy):
    still = evaluate_policy(str(still_policy), "can_to_bin", episodes=2, num_envs=2)
    assert still.episodes == 2 and still.success_rate == 0.0
    expert = evaluate_policy("expert", "can_to_bin", episodes=4, num_envs=2, execute_steps=10)
    assert expert.success_rate >= 0.75


def test_a_loaded_policy_is_evaluated_as_given(still_policy):
    class Counting(OnnxChunkPolicy):  # a wrapper (e.g. blinded frames) must be the policy that runs
        calls = 0

        def __call__(self, obs, prefix=None, prefix_len=None, delay=None):
            Counting.calls += 1
            return super().__call__(obs, prefix, prefix_len, delay)

    result = evaluate_policy(Counting(still_policy), "can_to_bin", episodes=2, num_envs=2)
    assert result.episodes == 2 and Counting.calls > 0


def test_cli_prints_a_json_summary(capsys):
    assert (
        main(["--policy", "expert", "--task", "grocery_pick_place", "--episodes", "2", "--num-envs", "2"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["episodes"] == 2 and 0.0 <= summary["success_rate"] <= 1.0


def test_cli_refuses_a_missing_policy_file(tmp_path):
    with pytest.raises(SystemExit):
        main(["--policy", str(tmp_path / "none.onnx")])
