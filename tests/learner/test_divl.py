"""DIVL equations against hand-computed values (METHOD.md, DIVL 1-4, Proposition 1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lwd_learner import divl

SUPPORT = divl.atoms(201, -0.1, 1.1)


def test_c51_projection_preserves_mass_and_mean_in_support():
    v = jnp.array([0.0, 0.3337, 0.5, 0.99999, -0.1, 1.1, 0.123456])
    m = divl.c51_project(v, SUPPORT)
    np.testing.assert_allclose(m.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(m @ SUPPORT, v, atol=1e-6)
    assert int((m[1] > 0).sum()) == 2  # split over the two neighbours only


def test_c51_projection_clips_targets_outside_support():
    m = divl.c51_project(jnp.array([-3.0, 7.0]), SUPPORT)
    np.testing.assert_allclose(m[0], jax.nn.one_hot(0, 201), atol=1e-6)
    np.testing.assert_allclose(m[1], jax.nn.one_hot(200, 201), atol=1e-6)


def test_quantile_reads_first_atom_whose_cdf_reaches_tau():
    support = jnp.array([0.0, 1.0, 2.0, 3.0])
    p = jnp.array([0.1, 0.4, 0.3, 0.2])  # cdf 0.1, 0.5, 0.8, 1.0
    assert float(divl.quantile(p, support, 0.05)) == 0.0
    assert float(divl.quantile(p, support, 0.5)) == 1.0
    assert float(divl.quantile(p, support, 0.51)) == 2.0
    assert float(divl.quantile(p, support, 0.95)) == 3.0


def test_normalised_entropy_is_zero_for_point_mass_and_one_for_uniform():
    assert float(divl.normalised_entropy(jax.nn.one_hot(3, 8))) == pytest.approx(0.0, abs=1e-7)
    assert float(divl.normalised_entropy(jnp.full((8,), 1 / 8))) == pytest.approx(1.0, abs=1e-6)
    p = jnp.array([0.5, 0.5, 0.0, 0.0])
    assert float(divl.normalised_entropy(p)) == pytest.approx(np.log(2) / np.log(4), abs=1e-6)


def test_adaptive_tau_follows_entropy_and_is_clipped():
    uniform = jnp.full((4,), 0.25)
    half = jnp.array([0.5, 0.5, 0.0, 0.0])
    assert float(divl.adaptive_tau(half, 0.6, 0.3, 0.05, 0.99)) == pytest.approx(0.45, abs=1e-6)
    assert float(divl.adaptive_tau(uniform, 0.6, 0.3, 0.4, 0.99)) == pytest.approx(0.4)  # 0.3 clipped up
    assert float(divl.adaptive_tau(jax.nn.one_hot(0, 4), 0.9, 0.3, 0.05, 0.8)) == pytest.approx(0.8)


def test_adaptive_tau_has_no_gradient():
    g = jax.grad(lambda logits: divl.adaptive_tau(jax.nn.softmax(logits), 0.6, 0.3, 0.0, 1.0))(
        jnp.ones(4) * 0.3
    )
    np.testing.assert_array_equal(g, 0.0)


def test_nstep_target_drops_bootstrap_when_done():
    y = divl.nstep_target(jnp.array([0.5, 0.5]), jnp.array([0.8, 0.8]), jnp.array([0.0, 1.0]), 0.9)
    np.testing.assert_allclose(y, [0.5 + 0.9 * 0.8, 0.5])


def test_categorical_loss_is_minimised_by_the_projected_target():
    logits = jnp.log(divl.c51_project(jnp.array([0.42]), SUPPORT) + 1e-9)
    other = jnp.zeros_like(logits)
    assert float(divl.categorical_value_loss(logits, jnp.array([0.42]), SUPPORT)[0]) < float(
        divl.categorical_value_loss(other, jnp.array([0.42]), SUPPORT)[0]
    )


@pytest.mark.parametrize("tau", [0.3, 0.5, 0.75, 0.9])
def test_proposition_1_fitted_quantile_equals_pinball_minimiser(tau):
    """Fit the categorical by the value loss on samples; its tau-quantile equals the minimiser of
    the pinball loss on the same samples within one atom spacing."""
    rng = np.random.default_rng(0)
    samples = np.concatenate([rng.normal(0.3, 0.08, 3000), rng.normal(0.8, 0.05, 2000)]).astype(np.float32)
    x = jnp.asarray(samples)
    logits = jnp.zeros(201)
    opt = optax.adam(0.1)
    state = opt.init(logits)

    @jax.jit
    def step(logits, state):
        loss, g = jax.value_and_grad(
            lambda lg: jnp.mean(
                divl.categorical_value_loss(jnp.broadcast_to(lg, (x.shape[0], 201)), x, SUPPORT)
            )
        )(logits)
        u, state = opt.update(g, state)
        return optax.apply_updates(logits, u), state

    for _ in range(400):
        logits, state = step(logits, state)
    q_fit = float(divl.quantile(jax.nn.softmax(logits), SUPPORT, tau))
    grid = np.linspace(-0.1, 1.1, 2401)
    pinball = [float(jnp.mean(divl.pinball_loss(x - g, tau))) for g in grid]
    q_direct = grid[int(np.argmin(pinball))]
    assert abs(q_fit - q_direct) <= float(SUPPORT[1] - SUPPORT[0]) + 1e-6


def test_expectile_loss_weights_positive_errors_by_expectile():
    d = jnp.array([1.0, -1.0])
    np.testing.assert_allclose(divl.expectile_loss(d, 0.7), [0.7, 0.3])
