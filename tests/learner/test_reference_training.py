"""qam.reference "bc_ema": during RL the QAM reference is an EMA of a flow that keeps cloning a
batch of the BC pool (train.bc_data's selection); "frozen" (the paper's) never moves."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import toytask
from test_baselines_and_paths import _agent_and_batch
from test_online_and_cli import _store, tiny_config

from lwd_learner.train import run_offline


def _config(reference: str):
    cfg = tiny_config()
    return dataclasses.replace(
        cfg, qam=dataclasses.replace(cfg.qam, reference=reference, reference_ema=0.5, reference_warmup=1)
    )


def _max_change(a, b) -> float:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in pairs)


def _rl_steps(reference: str, bc_seed: int | None = 1, rl_seed: int = 0, steps: int = 3):
    """`steps` RL updates from the same start; the BC batch (bc_ema) is another draw of frames."""
    agent, state, _ = _agent_and_batch(_config(reference))
    _, _, batch = _agent_and_batch(_config(reference), seed=rl_seed)
    bc_batch = None if bc_seed is None else _agent_and_batch(_config(reference), seed=bc_seed)[2]
    state = agent.start_rl(state)
    before = jax.device_get(state.ref_policy)
    for _ in range(steps):
        state, _ = (
            agent.rl_update(state, batch) if bc_batch is None else agent.rl_update(state, batch, bc_batch)
        )
    return before, state


def test_frozen_reference_never_moves_during_rl():
    before, state = _rl_steps("frozen", bc_seed=None)
    assert state.bc_policy is None
    assert _max_change(before, state.ref_policy) == 0.0


def test_bc_ema_reference_moves_toward_its_cloning_flow():
    before, state = _rl_steps("bc_ema")
    assert _max_change(before, state.ref_policy) > 1e-4
    assert _max_change(before, state.bc_policy) > _max_change(before, state.ref_policy)  # the EMA lags


def test_bc_ema_cloning_flow_learns_from_the_bc_batch_alone():
    _, a = _rl_steps("bc_ema", bc_seed=1, rl_seed=0)
    _, same_bc = _rl_steps("bc_ema", bc_seed=1, rl_seed=2)  # another RL batch: the cloning flow is the same
    _, other_bc = _rl_steps("bc_ema", bc_seed=3, rl_seed=0)
    assert _max_change(a.bc_policy, same_bc.bc_policy) == 0.0
    assert _max_change(a.bc_policy, other_bc.bc_policy) > 1e-4


def test_bc_ema_cloning_flow_rate_warms_up_from_zero():
    def first_step_change(warmup: int) -> float:
        cfg = _config("bc_ema")
        cfg = dataclasses.replace(cfg, qam=dataclasses.replace(cfg.qam, reference_warmup=warmup))
        agent, state, batch = _agent_and_batch(cfg)
        state = agent.start_rl(state)
        before = jax.device_get(state.bc_policy)
        state, _ = agent.rl_update(state, batch, _agent_and_batch(cfg, seed=1)[2])
        state, _ = agent.rl_update(state, batch, _agent_and_batch(cfg, seed=1)[2])
        return _max_change(before, state.bc_policy)

    # Adam's first steps move every weight by ~lr; at step 1 of a 100-step warm-up the rate is 1% of it.
    assert first_step_change(100) < 0.05 * first_step_change(1)


def test_bc_ema_update_without_a_bc_batch_is_refused():
    with pytest.raises(ValueError, match="needs a BC batch"):
        _rl_steps("bc_ema", bc_seed=None, steps=1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    _store(root / "store", toytask.mixed_dataset(0, n_demo=2, n_rollout=3, n_play=1))
    return root / "store"


def test_a_frozen_reference_rl_checkpoint_continues_with_a_bc_ema_reference_and_resumes(store, tmp_path):
    frozen, ema = _config("frozen"), _config("bc_ema")
    run = tmp_path / "run"
    first = run_offline(store, run, frozen, progress=False, max_new_steps=frozen.train.bc_steps + 1)
    assert first.phase == "rl" and first.state.bc_policy is None
    more = lambda c, n: dataclasses.replace(c, train=dataclasses.replace(c.train, rl_steps=n))  # noqa: E731
    second = run_offline(store, run, more(ema, 3), progress=False)  # read in its saved layout, then extended
    assert second.state.bc_policy is not None and int(second.state.step) == ema.train.bc_steps + 3
    third = run_offline(store, run, more(ema, 5), progress=False)  # its own bc_ema checkpoint resumes
    assert third.state.bc_policy is not None and int(third.state.step) == ema.train.bc_steps + 5
