"""A state-only toy task whose answer is known, for the array API (lwd_learner.arrays).

A point at `pos` in the plane moves by the action each step; `goal` is drawn per episode. The
expert steps GAIN of the way to the goal, so from any state its H-step chunk is known in closed
form: GAIN (goal - pos) (1 - GAIN)^k, k < H. It reaches the goal (success, reward 1 on the last
step); the bad actor steps towards -goal instead and fails (reward 0). No cameras, no joints: the
observation is two named state vectors, "pos" and "goal".
"""

from __future__ import annotations

import numpy as np

from lwd_learner.config import (
    CriticConfig,
    DIVLConfig,
    EncoderConfig,
    LearnerConfig,
    ModelConfig,
    PolicyConfig,
    QAMConfig,
    TrainConfig,
)

GAIN = 0.3
H = 4
STEPS = 12


def dataset(seed: int, episodes: int, good_every: int = 1) -> dict:
    """Arrays of `episodes` episodes; every `good_every`-th one is the expert's (1: all)."""
    rng = np.random.default_rng(seed)
    pos, goal, actions, rewards, ends, good = [], [], [], [], [], []
    for i in range(episodes):
        ok = i % good_every == 0
        p, g = rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2)
        for t in range(STEPS):
            a = GAIN * ((g if ok else -g) - p)
            pos.append(p)
            goal.append(g)
            actions.append(a)
            p = p + a
            ends.append(t == STEPS - 1)
            rewards.append(float(t == STEPS - 1 and np.linalg.norm(p - g) < 0.1))
            good.append(ok)
    return {
        "observations": {"pos": np.array(pos, np.float32), "goal": np.array(goal, np.float32)},
        "actions": np.array(actions, np.float32),
        "rewards": np.array(rewards, np.float32),
        "episode_ends": np.array(ends),
        "good": np.array(good),
    }


def expert_chunks(pos: np.ndarray, goal: np.ndarray, sign: float = 1.0) -> np.ndarray:
    """[B, H, 2]: the chunk the expert (sign 1) or the bad actor (sign -1) executes from (pos, goal)."""
    return np.stack([GAIN * (sign * goal - pos) * (1 - GAIN) ** k for k in range(H)], axis=1)


def config(steps: int, **train) -> LearnerConfig:
    return LearnerConfig(
        model=ModelConfig(
            horizon=H,
            encoder=EncoderConfig(joint_hidden=64, task_dim=4, out_dim=64),
            policy=PolicyConfig(hidden=(128, 128)),
            critic=CriticConfig(hidden=(64, 64), action_dim=32),
        ),
        divl=DIVLConfig(gamma=0.99),
        qam=QAMConfig(bc_lr=3e-3, flow_steps=5),
        train=TrainConfig(
            batch_size=64, bc_steps=steps, rl_steps=0, log_every=100, ckpt_every=100_000, **train
        ),
    )
