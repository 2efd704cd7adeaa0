"""A state-only agent (no cameras, no joints: two named state vectors) trained through the array
API on a toy task whose answer is known (reach2d.py): behaviour cloning of the expert reproduces
its closed-form chunks, and the critic ranks the expert's chunks over the failing actor's."""

from __future__ import annotations

import numpy as np
import pytest
import reach2d

from lwd_learner.arrays import predict_chunks, q_values, train_arrays


def _states(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return tuple(rng.uniform(-1, 1, (n, 2)).astype(np.float32) for _ in range(2))  # type: ignore[return-value]


def _train(data: dict, out, cfg, **kw):
    return train_arrays(
        data["observations"], data["actions"], data["rewards"], data["episode_ends"], out, cfg, **kw
    )


@pytest.fixture(scope="module")
def bc_session(tmp_path_factory):
    """SFT (BC only) on the expert's episodes alone."""
    data = reach2d.dataset(0, 200)
    return _train(data, tmp_path_factory.mktemp("bc"), reach2d.config(1000, method="sft"))


@pytest.fixture(scope="module")
def critic_session(tmp_path_factory):
    """BC + in-sample DIVL on half expert, half failing episodes (the critic sees all of them)."""
    data = reach2d.dataset(1, 200, good_every=2)
    return _train(data, tmp_path_factory.mktemp("critic"), reach2d.config(1200, method="lwd", bc_data="all"))


def test_state_only_model_is_named_by_the_arrays_and_has_no_image_backbone(bc_session):
    m = bc_session.cfg.model
    assert (m.cameras, m.state_names, m.state_dims, m.num_joints) == ((), ("pos", "goal"), (2, 2), 2)
    encoder = bc_session.state.policy["params"]["encoder"]
    assert not [k for k in encoder if k.startswith("conv")] and encoder["joint"]["kernel"].shape[0] == 2 + 4


def test_bc_on_expert_arrays_predicts_the_known_optimal_chunk(bc_session):
    pos, goal = _states(10)
    want = reach2d.expert_chunks(pos, goal)
    got = predict_chunks(bc_session, {"pos": pos, "goal": goal})
    assert got.shape == (200, reach2d.H, 2)
    error = np.abs(got - want).mean()
    baseline = np.abs(want - want.mean(0)).mean()  # the best state-blind answer is ~0.13
    assert error < 0.15 * baseline, (error, baseline)


def test_critic_ranks_the_experts_chunks_over_the_failing_actors(critic_session):
    pos, goal = _states(11)
    obs = {"pos": pos, "goal": goal}
    q_good = q_values(critic_session, obs, reach2d.expert_chunks(pos, goal))
    q_bad = q_values(critic_session, obs, reach2d.expert_chunks(pos, goal, sign=-1.0))
    assert np.mean(q_good > q_bad) > 0.9 and q_good.mean() - q_bad.mean() > 0.4, (q_good.mean(), q_bad.mean())
