"""Gym-style env, vectorised env and chunk-policy evaluation."""

import numpy as np
import pytest

from lwd_sim.env import LwdSimEnv, VecEnv, evaluate, expert_chunk_policy, succeeded_alone_rate
from lwd_sim.tasks import ALL_INSTRUCTIONS


@pytest.fixture
def env():
    e = LwdSimEnv("can_to_bin", image_size=24, seed=0)
    yield e
    e.close()


def test_reset_returns_images_joints_and_instruction(env):
    obs, info = env.reset()
    assert obs["images"].shape == (3, 24, 24, 3) and obs["images"].dtype == np.uint8
    assert obs["joint_pos"].shape == (16,) and obs["joint_pos"].dtype == np.float32
    assert ALL_INSTRUCTIONS[int(obs["task_id"])] == info["instruction"] == "put the red can in the left bin"
    assert info["subtasks_total"] == 4 and not info["success"]


def test_step_before_reset_is_an_error(env):
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(16))


def test_holding_still_truncates_at_the_time_limit_without_reward(env):
    obs, info = env.reset()
    rewards, truncated, terminated = [], False, False
    while not (truncated or terminated):
        obs, r, terminated, truncated, info = env.step(obs["joint_pos"])
        rewards.append(r)
    assert truncated and not terminated and sum(rewards) == 0
    assert info["step"] == info["time_limit_steps"] == 240


def test_holding_still_is_where_the_fleets_operator_would_take_over(env):
    obs, info = env.reset()
    assert info["takeover_step"] is None
    while info["takeover_step"] is None and info["step"] < 100:
        obs, _, _, _, info = env.step(obs["joint_pos"])
    # the operator's startup grace and stall window are 1 s each: 30 ticks
    assert info["takeover_step"] == 30 and info["takeover_reason"] == "stall"


def test_an_expert_that_keeps_progressing_is_not_taken_over(env):
    obs, info = env.reset()
    expert = env.expert()
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(expert.act())
        done = terminated or truncated
    assert info["success"] and info["takeover_step"] is None


def test_succeeded_alone_counts_successes_the_operator_would_not_have_taken_over():
    episodes = [
        {"success": True, "takeover_step": None},
        {"success": True, "takeover_step": 52},
        {"success": False, "takeover_step": None},
        {"success": False, "takeover_step": 30},
    ]
    assert succeeded_alone_rate(episodes) == 0.25


def test_a_time_limit_override_truncates_earlier_and_cycle_time_is_clipped_to_it():
    vec = VecEnv("drawer_restock", num_envs=1, image_size=16, seed=0, time_limit_s=2.0)
    try:
        r = evaluate(vec, lambda obs, **rtc: np.repeat(obs["joint_pos"][:, None, :], 30, axis=1))
    finally:
        vec.close()
    assert r.per_episode[0]["step"] == r.per_episode[0]["time_limit_steps"] == 60
    assert r.success_rate == 0 and r.mean_cycle_time_s == pytest.approx(2.0)


def test_a_non_positive_time_limit_is_refused():
    with pytest.raises(ValueError, match="time_limit_s"):
        LwdSimEnv("can_to_bin", image_size=16, time_limit_s=0.0)


def test_expert_chunk_policy_succeeds_and_a_still_policy_fails():
    vec = VecEnv("grocery_pick_place", num_envs=2, image_size=16, seed=3)
    try:
        policy, on_reset = expert_chunk_policy(vec)
        good = evaluate(vec, policy, episodes_per_env=2, on_reset=on_reset, execution="whole_chunks")
        still = evaluate(
            vec, lambda obs, **rtc: np.repeat(obs["joint_pos"][:, None, :], 30, axis=1), episodes_per_env=1
        )
    finally:
        vec.close()
    assert good.episodes == 4 and good.success_rate >= 0.75
    assert still.episodes == 2 and still.success_rate == 0.0 and still.mean_score == 0.0


def test_vec_env_rejects_wrongly_shaped_actions():
    vec = VecEnv("can_to_bin", num_envs=2, image_size=16, render=False)
    try:
        vec.reset()
        with pytest.raises(ValueError, match="shape"):
            vec.step(np.zeros((3, 16)))
    finally:
        vec.close()
