"""The agents' losses as pure functions of (params, batch, rng), given the static networks (`Nets`)
and their config section: behaviour cloning (flow matching), DIVL (twin Q + the categorical or
expectile value) and QAM (adjoint matching toward pi_beta exp(Q / lambda)). The equations are in
divl.py and flow.py; this module wires the networks and the normalisation into them."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lwd_learner import divl
from lwd_learner.agents.nets import Nets
from lwd_learner.config import DIVLConfig, QAMConfig
from lwd_learner.flow import flow_matching_loss, qam_loss
from lwd_learner.networks import CriticValue, FlowPolicy


def bc_loss(nets: Nets, params, norm, batch, rng):
    """Flow-matching behaviour cloning of the batch's chunks (mean over the batch)."""
    z = nets.policy.apply(params, *nets.policy_obs(norm, batch), method=FlowPolicy.encode)
    a = nets.norm_actions(norm, batch["actions"], batch["joint_pos"])
    field = lambda p, obs, x, w: nets.field(p, obs, x, w)  # noqa: E731
    return jnp.mean(flow_matching_loss(field, params, z, a, rng))


def critic_loss(nets: Nets, d: DIVLConfig, params, target, norm, batch):
    """DIVL: the twin Q heads regress the n-step chunk target bootstrapped from the value read at
    tau (or the scalar expectile value); the value learns from the target critic's min Q.
    Returns (loss, metrics)."""
    c = nets.critic
    obs = nets.obs(norm, batch)
    a = nets.norm_actions(norm, batch["actions"], batch["joint_pos"])
    z = c.apply(params, *obs, method=CriticValue.encode)
    q = c.apply(params, z, a, method=CriticValue.q_from_z)  # [2, B]
    z_next = jax.lax.stop_gradient(
        c.apply(params, *nets.obs(norm, batch, "next_"), method=CriticValue.encode)
    )
    metrics = {}
    if d.value_kind == "divl":
        p_next = jax.nn.softmax(c.apply(params, z_next, method=CriticValue.value_logits))
        if d.adaptive_tau:
            tau = divl.adaptive_tau(p_next, d.tau_base, d.alpha, d.tau_min, d.tau_max)
        else:
            tau = jnp.full(p_next.shape[:1], d.constant_tau)
        boot = divl.quantile(p_next, nets.support, tau)
        metrics["tau_mean"] = jnp.mean(tau)
        metrics["value_entropy"] = jnp.mean(divl.normalised_entropy(p_next))
    else:
        boot = c.apply(params, z_next, method=CriticValue.value_scalar)
    boot = jax.lax.stop_gradient(boot)
    y = divl.nstep_target(batch["ret"], boot, batch["done"], batch["discount"])
    critic_l = jnp.mean(jnp.sum((q - y[None]) ** 2, axis=0))
    zt = c.apply(target, *obs, method=CriticValue.encode)
    qbar = jax.lax.stop_gradient(jnp.min(c.apply(target, zt, a, method=CriticValue.q_from_z), axis=0))
    if d.value_kind == "divl":
        logits = c.apply(params, z, method=CriticValue.value_logits)
        value_l = jnp.mean(divl.categorical_value_loss(logits, qbar, nets.support))
        metrics["v_mean"] = jnp.mean(jnp.sum(jax.nn.softmax(logits) * nets.support, -1))
    else:
        v = c.apply(params, z, method=CriticValue.value_scalar)
        value_l = jnp.mean(divl.expectile_loss(qbar - v, d.expectile))
        metrics["v_mean"] = jnp.mean(v)
    metrics.update(
        critic_loss=critic_l,
        value_loss=value_l,
        q_mean=jnp.mean(q),
        q_min=jnp.min(q),
        q_max=jnp.max(q),
        target_mean=jnp.mean(y),
    )
    return critic_l + value_l, metrics


def policy_loss(nets: Nets, q: QAMConfig, params, ref, critic, norm, batch, rng):
    """QAM: adjoint matching of the policy's flow toward the reference's tilted by exp(Q / lambda),
    Q the min of the critic's heads. Returns (loss, stats)."""
    pobs = nets.policy_obs(norm, batch)
    z = nets.policy.apply(params, *pobs, method=FlowPolicy.encode)
    z_ref = jax.lax.stop_gradient(nets.policy.apply(ref, *pobs, method=FlowPolicy.encode))
    zc = jax.lax.stop_gradient(nets.critic.apply(critic, *nets.obs(norm, batch), method=CriticValue.encode))

    def q_grad(a):
        def qmin(x):
            return jnp.sum(jnp.min(nets.critic.apply(critic, zc, x, method=CriticValue.q_from_z), 0))

        return jax.grad(qmin)(a)

    lam: float | jax.Array = q.lam
    if q.lam_scale == "q_std":  # temperature in units of the critic's spread over the batch's data chunks
        a_data = nets.norm_actions(norm, batch["actions"], batch["joint_pos"])
        q_data = jnp.min(nets.critic.apply(critic, zc, a_data, method=CriticValue.q_from_z), 0)
        lam = q.lam * jax.lax.stop_gradient(jnp.std(q_data) + 1e-4)
    field = lambda p, o, a, w: nets.field(p, o[0], a, w)  # noqa: E731
    ref_field = lambda p, o, a, w: nets.field(p, o[1], a, w)  # noqa: E731
    per, stats = qam_loss(
        field,
        params,
        ref_field,
        ref,
        (z, z_ref),
        nets.action_shape,
        z.shape[0],
        q_grad,
        lam,
        q.flow_steps,
        rng,
        q.rollout == "reference",
        lam_per_grad_rms=q.lam_scale == "grad_rms",
    )
    return jnp.mean(per), stats
