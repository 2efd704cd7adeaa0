"""Train the learner on plain arrays: a state-only 2-D reach task whose best action is known."""

import tempfile

import numpy as np

from lwd_learner.arrays import predict_chunks, train_arrays
from lwd_learner.config import (
    CriticConfig,
    EncoderConfig,
    LearnerConfig,
    ModelConfig,
    PolicyConfig,
    QAMConfig,
    TrainConfig,
)

# 100 episodes of 10 steps: a point at `pos` moves by the action; the expert steps 30% of the way
# to `goal` (success, reward 1 on the last step), a bad actor steps away from it (failure).
rng = np.random.default_rng(0)
pos, goal, actions, rewards, ends = [], [], [], [], []
for i in range(100):
    p, g = rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2)
    for t in range(10):
        a = 0.3 * ((g if i % 2 == 0 else -g) - p)
        pos.append(p), goal.append(g), actions.append(a)
        rewards.append(float(t == 9 and i % 2 == 0)), ends.append(t == 9)
        p = p + a
observations = {"pos": np.array(pos, np.float32), "goal": np.array(goal, np.float32)}

cfg = LearnerConfig(  # a tiny model: 4-step chunks, no cameras (the arrays have none)
    model=ModelConfig(
        horizon=4,
        encoder=EncoderConfig(joint_hidden=32, task_dim=4, out_dim=32),
        policy=PolicyConfig(hidden=(64, 64)),
        critic=CriticConfig(hidden=(32,), action_dim=16),
    ),
    qam=QAMConfig(flow_steps=3, bc_lr=3e-3),
    train=TrainConfig(batch_size=32, bc_steps=300, rl_steps=20, log_every=50),
)
with tempfile.TemporaryDirectory() as out:
    session = train_arrays(
        observations,
        np.array(actions, np.float32),
        np.array(rewards, np.float32),
        np.array(ends),
        out,  # checkpoints and metrics.jsonl
        cfg,
        demos=np.repeat(np.arange(100) % 2 == 0, 10),  # BC clones the expert's episodes
    )

# The expert's first action from a new state is 0.3 (goal - pos); the policy's chunk starts with it.
p, g = rng.uniform(-1, 1, (50, 2)).astype(np.float32), rng.uniform(-1, 1, (50, 2)).astype(np.float32)
chunks = predict_chunks(session, {"pos": p, "goal": g})  # [50, 4, 2]
error = np.abs(chunks[:, 0] - 0.3 * (g - p)).mean()
print(
    f"model {session.cfg.model.state_names} {session.cfg.model.state_dims}, cameras {session.cfg.model.cameras}"
)
print(f"mean |first action - expert's| = {error:.3f} (actions are ~{np.abs(0.3 * (g - p)).mean():.2f})")
