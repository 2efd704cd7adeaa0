"""Learning test: on a sparse-reward task with mixed-quality offline data (successes, failures,
play), DIVL + QAM improves on behaviour cloning.

The toy task (toytask.py) goes through the real path: episodes in an EpisodeStore snapshot,
replay, `run_offline`, checkpoints. The BC reference clones the *whole* mixed buffer
(bc_data='all', ~1/3 successes) — the SFT baseline here is exactly that reference, read
from the checkpoint at the end of the BC phase; training then resumes from the checkpoint
for DIVL + QAM.

lambda = 0.01, chosen by measurement (seed 1, 400 QAM steps from the same BC checkpoint): the critic
ranks the goal's chunks above the decoy's at matched states 98% of the time (Q 0.68 vs -0.01), but
its action gradient is small, |dQ/da| ~3e-3 per element of the normalised chunk, so the adjoint
dQ/da / lambda sets how far QAM moves the policy: lambda 0.05 (this test's earlier value, with a
margin that moved with the CPU's floating-point paths: BC 0.31 -> 0.34 on one AMD EPYC) gave
0.30 -> 0.40, lambda 0.01 gave 0.30 -> 0.58, lambda 0.005 overshoots (0.30 -> 0.29). With 0.01,
seeds 0-3 went 0.23 -> 0.51, 0.30 -> 0.58, 0.23 -> 0.65, 0.18 -> 0.70 (2-core AMD EPYC): the test
asks for +0.15, half the smallest gain measured. The paper's lambda = 2 tilts by at most e^0.5 here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import toytask

from lwd_common.store import EpisodeStore
from lwd_learner.config import (
    CriticConfig,
    EncoderConfig,
    LearnerConfig,
    ModelConfig,
    PolicyConfig,
    QAMConfig,
    TrainConfig,
)
from lwd_learner.train import restore_session, run_offline

BC_STEPS, RL_STEPS = 2000, 400


def small_config(seed: int) -> LearnerConfig:
    return LearnerConfig(
        model=ModelConfig(
            encoder=EncoderConfig(
                image_size=(8, 8), conv_channels=(4,), out_dim=32, joint_hidden=32, task_dim=8
            ),
            # noise 1: the test measures the tilt of the sampled distribution, not its mode
            policy=PolicyConfig(hidden=(512, 512), noise_scale=1.0),
            critic=CriticConfig(hidden=(64, 64), action_dim=32),
        ),
        qam=QAMConfig(lam=0.01, lr=1e-3, bc_lr=3e-3),
        train=TrainConfig(
            batch_size=128,
            bc_steps=BC_STEPS,
            rl_steps=RL_STEPS,
            bc_data="all",
            log_every=50,
            ckpt_every=10_000,
            seed=seed,
        ),
    )


def success_rate(session, seed: int, n: int = 200) -> float:
    rng = np.random.default_rng(1000 + seed)
    joints = np.stack([toytask.trajectory(rng, toytask.GOAL)[0][0] for _ in range(n)])
    images = np.full((n, 3, 8, 8, 3), 128, np.uint8)
    task = np.full((n,), session.vocab.index(toytask.INSTRUCTION, add=False), np.int32)
    noise = rng.standard_normal((n, 30, 16)).astype(np.float32)
    actions = session.agent.act(session.state, images, joints, task, noise)
    return float(np.mean([toytask.success_of(a) for a in actions]))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_divl_qam_beats_behaviour_cloning_on_mixed_data(tmp_path, seed):
    store = EpisodeStore(tmp_path / "store")
    for ep in toytask.mixed_dataset(seed):
        store.put(ep)
    store.commit_snapshot()
    cfg = small_config(seed)
    run_offline(tmp_path / "store", tmp_path / "run", cfg, progress=False, max_new_steps=BC_STEPS)
    bc = restore_session(tmp_path / "run" / "checkpoints")  # also checks resume from a checkpoint
    assert bc.phase == "bc" and int(bc.state.step) == BC_STEPS
    bc_rate = success_rate(bc, seed)
    lwd = run_offline(tmp_path / "store", tmp_path / "run", cfg, progress=False)
    assert int(lwd.state.step) == BC_STEPS + RL_STEPS
    lwd_rate = success_rate(lwd, seed)
    print(f"seed {seed}: BC {bc_rate:.2f} -> DIVL+QAM {lwd_rate:.2f}")
    assert 0.1 < bc_rate < 0.5  # BC reproduces the data's mix of successes and failures
    assert lwd_rate > bc_rate + 0.15  # QAM follows the critic: well above the BC reference


def test_config_round_trips_through_checkpoint_meta():
    cfg = small_config(0)
    from lwd_learner.config import from_dict, to_dict

    assert from_dict(to_dict(cfg)) == cfg
    assert dataclasses.replace(cfg.train, bc_data="demos") != cfg.train
