"""DIVL: distributional implicit value learning (METHOD.md, "DIVL").

Pure functions over arrays so that each equation can be tested on its own:
C51 two-atom projection, categorical cross-entropy value loss, tau-quantile
read-out, normalised entropy, adaptive tau, n-step chunk TD targets, and the
expectile (scalar IQL) baseline loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def atoms(num_atoms: int, v_min: float, v_max: float) -> jnp.ndarray:
    """Support of the categorical value distribution."""
    return jnp.linspace(v_min, v_max, num_atoms)


def c51_project(values: jnp.ndarray, support: jnp.ndarray) -> jnp.ndarray:
    """Project scalar targets onto their two neighbouring atoms (C51).

    values [...]; support [K] evenly spaced. Returns [..., K] probabilities with
    total mass 1 and mean equal to the value clipped to the support.
    """
    k = support.shape[0]
    v_min, v_max = support[0], support[-1]
    dz = (v_max - v_min) / (k - 1)
    b = (jnp.clip(values, v_min, v_max) - v_min) / dz
    lower = jnp.clip(jnp.floor(b), 0, k - 1)
    upper = jnp.clip(lower + 1, 0, k - 1)
    w_upper = b - lower  # 0 when b sits on an atom (incl. the last one)
    w_lower = 1.0 - w_upper
    onehot_l = jax.nn.one_hot(lower.astype(jnp.int32), k)
    onehot_u = jax.nn.one_hot(upper.astype(jnp.int32), k)
    return w_lower[..., None] * onehot_l + w_upper[..., None] * onehot_u


def categorical_value_loss(
    logits: jnp.ndarray, target_values: jnp.ndarray, support: jnp.ndarray
) -> jnp.ndarray:
    """Cross-entropy of the value logits [B, K] against the projected targets [B] (eq. 12, 21)."""
    m = jax.lax.stop_gradient(c51_project(target_values, support))
    return -jnp.sum(m * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def quantile(probs: jnp.ndarray, support: jnp.ndarray, tau: jnp.ndarray) -> jnp.ndarray:
    """tau-quantile read-out: the first atom whose CDF reaches tau (eq. 13, 23)."""
    cdf = jnp.cumsum(probs, axis=-1)
    tau = jnp.asarray(tau)[..., None]
    # A tiny tolerance keeps float round-off in the CDF from skipping an atom.
    idx = jnp.argmax(cdf >= tau - 1e-6, axis=-1)
    return support[idx]


def normalised_entropy(probs: jnp.ndarray) -> jnp.ndarray:
    """H(s) = -(1/log K) sum p log p, in [0, 1] (eq. 17)."""
    k = probs.shape[-1]
    plogp = jnp.where(probs > 0, probs * jnp.log(jnp.where(probs > 0, probs, 1.0)), 0.0)
    return -jnp.sum(plogp, axis=-1) / np.log(k)


def adaptive_tau(
    probs: jnp.ndarray, tau_base: float, alpha: float, tau_min: float, tau_max: float
) -> jnp.ndarray:
    """tau(s) = clip(tau_base - alpha H(s), tau_min, tau_max), no gradient (eq. 18, 24)."""
    h = normalised_entropy(jax.lax.stop_gradient(probs))
    return jax.lax.stop_gradient(jnp.clip(tau_base - alpha * h, tau_min, tau_max))


def nstep_target(
    nstep_return: jnp.ndarray, bootstrap: jnp.ndarray, done: jnp.ndarray, discount_n: jnp.ndarray | float
) -> jnp.ndarray:
    """y = R_n + gamma^{nH} V_boot, with the bootstrap dropped when the episode ended (eq. 19).

    nstep_return is sum_{j<min(nH, T-t)} gamma^j r_{t+j}, computed by the replay.
    """
    return nstep_return + discount_n * (1.0 - done) * bootstrap


def nstep_return_np(rewards: np.ndarray, t: int, horizon: int, n: int, gamma: float) -> tuple[float, bool]:
    """Reference n-step chunk return from step t of one episode's per-step rewards.

    Returns (sum_{j=t}^{min(t+nH, T)-1} gamma^{j-t} r_j, done), done when the episode
    ends inside the window so no state s_{t+nH} exists to bootstrap from.
    """
    end = min(t + n * horizon, len(rewards))
    g = gamma ** np.arange(end - t)
    return float(np.sum(g * rewards[t:end])), t + n * horizon >= len(rewards)


def expectile_loss(diff: jnp.ndarray, expectile: float) -> jnp.ndarray:
    """IQL's asymmetric squared loss on diff = target - prediction (the p = 2 case of Prop. 1)."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


def pinball_loss(diff: jnp.ndarray, tau: float) -> jnp.ndarray:
    """Quantile (p = 1) loss on diff = target - prediction; used to check Proposition 1."""
    return jnp.where(diff > 0, tau * diff, (tau - 1.0) * diff)
