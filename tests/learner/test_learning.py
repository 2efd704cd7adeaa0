"""Learning test: on a sparse-reward task with mixed-quality offline data (successes, failures,
play), DIVL + QAM improves on behaviour cloning.

The toy task (toytask.py) goes through the real path: episodes in an EpisodeStore snapshot,
replay, `run_offline`, checkpoints. The BC reference clones the *whole* mixed buffer
(bc_data='all', ~1/3 successes) — the SFT baseline here is exactly that reference, read
from the checkpoint at the end of the BC phase; training then resumes from the checkpoint
for DIVL + QAM.

The temperature is in units of the critic's action gradient (qam.lam_scale "grad_rms", lambda 5:
the terminal adjoint has RMS 1/5 whatever the critic's scale). An absolute lambda made the outcome a
matter of the critic's scale on that seed and CPU: with lambda 0.01 (chosen when the critic's
gradient was ~3e-3) seed 1 went BC 0.32 -> 0.29 after the critic started learning from the whole
buffer during BC (policy loss growing 40x, samples spreading past the goal: Q's slope extrapolated
beyond the data); lambda 0.02 gave +0.20 there, 0.005 +0.01, and seed 0 +0.26..+0.33. With
"grad_rms" lambda 5, 400 QAM steps, 1000 evaluation samples (2-core AMD EPYC), seeds 0-5 went
0.17 -> 0.53, 0.26 -> 0.48, 0.24 -> 0.59, 0.20 -> 0.54, 0.21 -> 0.52, 0.14 -> 0.51 (+0.22 at the
least); at 800 steps seed 1 reached 0.50 and seed 4 0.55 (absolute lambda 0.01 with the heads'
mean had collapsed seed 1 to 0.10 by then). The test asks for +0.15.
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
        qam=QAMConfig(lam=5.0, lam_scale="grad_rms", lr=1e-3, bc_lr=3e-3),
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


def success_rate(session, seed: int, n: int = 1000) -> float:
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
