"""Flow matching and QAM (Q-learning with Adjoint Matching), generic over action shape.

A *vector field* here is any callable `field(params, obs, a, w) -> velocity` with
`a` of shape [B, *action_shape] and `w` of shape [B] (flow time: 0 = noise,
1 = action; `a^w = (1 - w) a^0 + w a^1`). The same functions train the robot
policy (action chunks [30, 16]) and the 1-D / 2-D flows of the closed-form tests.

Noise schedule (why this one). Adjoint Matching needs the *memoryless* SDE whose
marginals equal the flow's: for the linear interpolant the score is
`(w f - a) / (1 - w)`, and `sigma(w)^2 = 2 (1 - w) / w` turns the base drift into
`b = 2 f - a / w`; only then is the fine-tuned SDE's terminal law the tilted
`pi_beta exp(Q / lambda)`. METHOD.md's printed `sqrt(2 (1 - w) w)` is not memoryless
(and vanishes at w = 0, where eq. 9 divides by sigma); it was not run. The closed-form
tests in tests/learner/test_qam_closed_form.py pin the choice below: they pass with it
and fail with sigma^2 = 2 (1 - w) / (w + h) under the same drift (the Gaussian mean shift
then reaches only ~75%). The schedule is singular at w = 0, so, like the public QAM code, the
singular terms are evaluated one step late, at `w + h`:
`sigma_i^2 = 2 (1 - w_i + h) / (w_i + h)`, drift `2 f(a, w_i) - a / (w_i + h)`.
With w_0 = 0 the first step then erases a^0 (memoryless), as it should.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

VectorField = Callable[[Any, Any, jnp.ndarray, jnp.ndarray], jnp.ndarray]


def _bcast(w: jnp.ndarray, a: jnp.ndarray) -> jnp.ndarray:
    return w.reshape(w.shape + (1,) * (a.ndim - w.ndim))


def flow_matching_loss(field: VectorField, params, obs, actions: jnp.ndarray, rng) -> jnp.ndarray:
    """Behaviour-cloning flow-matching loss (eq. 34): regress f(a^w, w) onto a^1 - a^0. Per-sample [B]."""
    k0, k1 = jax.random.split(rng)
    a0 = jax.random.normal(k0, actions.shape, actions.dtype)
    w = jax.random.uniform(k1, actions.shape[:1])
    aw = (1.0 - _bcast(w, actions)) * a0 + _bcast(w, actions) * actions
    pred = field(params, obs, aw, w)
    err = (pred - (actions - a0)) ** 2
    return jnp.mean(err.reshape(err.shape[0], -1), axis=-1)


def euler_sample(field: VectorField, params, obs, noise: jnp.ndarray, steps: int) -> jnp.ndarray:
    """Deterministic sampler: integrate da/dw = f from w = 0 to 1 in `steps` Euler steps."""
    h = 1.0 / steps
    a = noise
    for i in range(steps):
        w = jnp.full(noise.shape[:1], i * h)
        a = a + h * field(params, obs, a, w)
    return a


def rtc_weights(horizon: int, prefix_len: jnp.ndarray, delay: jnp.ndarray) -> jnp.ndarray:
    """Real-time chunking's per-row guidance weights [B, horizon] (Black et al. 2025, eq. 5).

    Row i of the new chunk: 1 for i < delay (it executes before the new chunk arrives, frozen),
    `c (e^c - 1) / (e - 1)` with `c = (prefix_len - i) / (prefix_len - delay + 1)` for
    delay <= i < prefix_len (a soft mask, decaying towards the end of the old chunk), 0 beyond.
    `delay` is clipped to [0, prefix_len]: only planned rows can be frozen."""
    prefix_len = jnp.clip(prefix_len, 0, horizon).astype(jnp.float32)[:, None]
    delay = jnp.clip(delay.astype(jnp.float32)[:, None], 0.0, prefix_len)
    i = jnp.asarray(np.arange(horizon, dtype=np.float32))[None, :]
    c = (prefix_len - i) / (prefix_len - delay + 1.0)
    soft = c * (jnp.exp(c) - 1.0) / (np.e - 1.0)
    return jnp.where(i < delay, 1.0, jnp.where(i < prefix_len, soft, 0.0))


def rtc_guidance_scale(w: float, max_guidance: float) -> float:
    """min(beta, (1 - w) / (w r^2)) with r^2 = (1 - w)^2 / (w^2 + (1 - w)^2): beta at w = 0."""
    if w <= 0.0:
        return float(max_guidance)
    r2 = (1.0 - w) ** 2 / (w**2 + (1.0 - w) ** 2)
    return float(min(max_guidance, (1.0 - w) / (w * r2)))


def rtc_sample(
    field: VectorField,
    params,
    obs,
    noise: jnp.ndarray,
    steps: int,
    prefix: jnp.ndarray,
    weights: jnp.ndarray,
    max_guidance: float,
) -> jnp.ndarray:
    """`euler_sample` inpainting a prefix: real-time chunking (Black et al. 2025), no retraining.

    At each Euler step, with v = f(A_w, w), the predicted final chunk is A^ = A_w + (1 - w) v; the
    weighted error e = W (Y - A^) against the prefix Y (in the flow's action space) is pulled back
    through A^ (one VJP of the field) to g = (dA^/dA_w)^T e, and the step uses
    v + min(beta, (1 - w) / (w r^2)) g. `weights` [B, H] (`rtc_weights`) are per chunk row; all
    zero gives exactly the plain sampler (g is then exactly 0, whatever the prefix holds there)."""
    h = 1.0 / steps
    a = noise
    wmat = weights.reshape(weights.shape + (1,) * (noise.ndim - weights.ndim))  # [B, H, 1, ...]
    for i in range(steps):
        t = i * h
        w = jnp.full(noise.shape[:1], t)

        def predicted_final(x, w=w, t=t):
            v = field(params, obs, x, w)
            return x + (1.0 - t) * v, v

        final, pullback, v = jax.vjp(predicted_final, a, has_aux=True)
        (g,) = pullback(jnp.where(wmat > 0, wmat * (prefix - final), 0.0))  # unplanned rows: exactly 0
        a = a + h * (v + rtc_guidance_scale(t, max_guidance) * g)
    return a


def schedule(steps: int) -> tuple[jnp.ndarray, jnp.ndarray, float]:
    """Rollout times w_i = i h and the memoryless sigma_i (see module docstring)."""
    h = 1.0 / steps
    w = jnp.arange(steps) * h
    sigma = jnp.sqrt(2.0 * (1.0 - w + h) / (w + h))
    return w, sigma, h


def memoryless_rollout(field: VectorField, params, obs, a0: jnp.ndarray, steps: int, rng) -> jnp.ndarray:
    """Roll out the memoryless SDE (last step a plain ODE step). Returns states [K+1, B, ...], no grad."""
    w, sigma, h = schedule(steps)
    keys = jax.random.split(rng, steps)
    xs = [a0]
    a = a0
    for i in range(steps):
        wi = jnp.full(a0.shape[:1], w[i])
        f = field(params, obs, a, wi)
        if i < steps - 1:
            eps = jax.random.normal(keys[i], a.shape, a.dtype)
            a = a + h * (2.0 * f - a / (w[i] + h)) + jnp.sqrt(h) * sigma[i] * eps
        else:
            a = a + h * f
        xs.append(a)
    return jax.lax.stop_gradient(jnp.stack(xs))


def lean_adjoint(ref_field: VectorField, ref_params, obs, xs: jnp.ndarray, g1: jnp.ndarray, steps: int):
    """Integrate the lean adjoint backward with the reference drift b = 2 f_beta - a / w.

    g_i = g_{i+1} + h (d b_beta / d a)(x_i)^T g_{i+1} = g_{i+1} + h (2 J_f^T g_{i+1} - g_{i+1} / w),
    one VJP of f_beta per step, no backprop through the rollout. Returns ([K, B, ...] adjoints
    paired with the states xs[:K], [K, B, ...] reference fields f_beta(x_i)), the latter reused
    by the regression so the reference is evaluated once per step.
    """
    w, _, h = schedule(steps)
    g = g1
    out, refs = [], []
    for i in reversed(range(steps)):
        wi = jnp.full(xs.shape[1:2], w[i])
        f_ref, vjp = jax.vjp(lambda a, wi=wi: ref_field(ref_params, obs, a, wi), xs[i])
        g = g + h * (2.0 * vjp(g)[0] - g / (w[i] + h))
        out.append(g)
        refs.append(f_ref)
    return jax.lax.stop_gradient(jnp.stack(out[::-1])), jax.lax.stop_gradient(jnp.stack(refs[::-1]))


def qam_loss(
    field: VectorField,
    params,
    ref_field: VectorField,
    ref_params,
    obs,
    action_shape: tuple[int, ...],
    batch_size: int,
    q_grad: Callable[[jnp.ndarray], jnp.ndarray],
    lam: float | jnp.ndarray,
    steps: int,
    rng,
    rollout_with_reference: bool = False,
    lam_per_grad_rms: bool = False,
) -> tuple[jnp.ndarray, dict]:
    """Adjoint-matching loss (eq. 9) for pi* ∝ pi_beta exp(Q / lambda). Per-sample [B] and stats.

    q_grad(a1) must return dQ/da at the final actions (the min of the critic heads).
    `lam_per_grad_rms`: lambda is in units of the RMS of that gradient over the batch, so the
    terminal adjoint has RMS 1 / lambda whatever the critic's scale (QAMConfig.lam_scale "grad_rms").
    """
    k0, k1 = jax.random.split(rng)
    a0 = jax.random.normal(k0, (batch_size, *action_shape))
    roll_field, roll_params = (ref_field, ref_params) if rollout_with_reference else (field, params)
    xs = memoryless_rollout(roll_field, jax.lax.stop_gradient(roll_params), obs, a0, steps, k1)
    grad = jax.lax.stop_gradient(q_grad(xs[-1]))
    if lam_per_grad_rms:
        lam = lam * (jnp.sqrt(jnp.mean(grad**2)) + 1e-8)
    g1 = -grad / lam
    gs, ref_fields = lean_adjoint(ref_field, ref_params, obs, xs, g1, steps)
    w, sigma, _ = schedule(steps)
    # The K regression terms are independent: one field call on all K x B states (bigger matmuls).
    n = steps * batch_size
    flat = lambda x: x.reshape(n, *x.shape[2:])  # noqa: E731
    obs_k = jax.tree.map(lambda o: jnp.concatenate([o] * steps), obs)
    f_all = field(params, obs_k, flat(xs[:steps]), jnp.repeat(w, batch_size)).reshape(xs[:steps].shape)
    sig = sigma.reshape((steps,) + (1,) * (xs.ndim - 1))
    resid = 2.0 * (f_all - ref_fields) / sig + sig * gs
    total = jnp.sum(resid.reshape(steps, batch_size, -1) ** 2, axis=(0, 2))
    stats = {
        "adjoint_norm": jnp.mean(jnp.abs(g1)),
        "final_action_abs": jnp.mean(jnp.abs(xs[-1])),
        "lam_effective": jnp.asarray(lam),
    }
    return total, stats
