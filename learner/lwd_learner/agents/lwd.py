"""LWD: behaviour cloning with the DIVL critic learning alongside, then DIVL + QAM.

BC phase: the shared BC step (base.BaseAgent._bc_update) with the critic step. RL phase
(`start_rl`): the behaviour-cloned policy is frozen as QAM's reference f_beta and also initialises
f_theta; each update is one DIVL step (losses.critic_loss) and one QAM step (losses.policy_loss),
and with qam.reference "bc_ema" one BC step of a flow whose EMA is the reference. The DIVL
variants are config switches of the same agent: divl.value_kind "expectile" (scalar IQL),
divl.adaptive_tau False (constant tau); qam.lam_scale and qam.rollout choose QAM's temperature
scale and rollout flow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lwd_learner.agents import losses
from lwd_learner.agents.base import AgentState, BaseAgent, Draw, Update, frozen_aware
from lwd_learner.config import LearnerConfig


class LWDAgent(BaseAgent):
    """DIVL + QAM; `rl_update` (and `rl_update_on_device`) is the RL phase's jitted update."""

    name = "lwd"
    trains_critic = True

    def __init__(self, cfg: LearnerConfig):
        super().__init__(cfg)
        t = cfg.train
        self.policy_tx = optax.adamw(
            optax.cosine_decay_schedule(cfg.qam.lr, t.decay_steps), weight_decay=cfg.qam.weight_decay
        )
        # The bc_ema reference's cloning flow starts from a trained policy with a fresh Adam state, whose
        # first steps move every weight by ~lr: the rate warms up from 0 instead.
        self.reference_tx = optax.adam(
            optax.warmup_cosine_decay_schedule(
                0.0,
                cfg.qam.bc_lr,
                max(cfg.qam.reference_warmup, 1),
                max(t.decay_steps, cfg.qam.reference_warmup + 1),
            )
        )
        self.rl_update = jax.jit(self._rl_update, donate_argnums=0)
        self.rl_update_on_device = jax.jit(
            lambda s, d: self._sampled(
                self._rl_update, False, s, d, second_from_bc=True if s.bc_policy is not None else None
            ),
            donate_argnums=0,
        )

    # ---- the training loop's view ---------------------------------------------------------------
    def update_kind(self, phase: str) -> str:
        return "bc" if phase == "bc" else "rl"

    def device_update(self, kind: str) -> Update:
        return self.rl_update_on_device if kind == "rl" else super().device_update(kind)

    def host_update(self, kind: str, state: AgentState, draw: Draw) -> tuple[AgentState, dict]:
        if kind != "rl":
            return super().host_update(kind, state, draw)
        batch = draw(False)
        if state.bc_policy is not None:  # the bc_ema reference clones a BC-pool batch
            return self.rl_update(state, batch, draw(True))
        return self.rl_update(state, batch)

    def uses_policy_tx(self, phase: str) -> bool:
        return phase == "rl"

    def policy_optimiser(self, phase: str) -> optax.GradientTransformation:
        return self.policy_tx if self.uses_policy_tx(phase) else self.bc_tx

    def start_rl(self, state: AgentState) -> AgentState:
        """Freeze the behaviour-cloned policy as the QAM reference f_beta; it also initialises f_theta
        (and, with qam.reference "bc_ema", the flow that keeps cloning)."""
        ref = jax.tree.map(jnp.copy, state.policy)
        state = state.replace(ref_policy=ref, policy_opt=self.policy_tx.init(state.policy))
        return self.with_reference_training(state)

    def with_reference_training(self, state: AgentState) -> AgentState:
        """With qam.reference "bc_ema", a state without its BC-trained flow (a checkpoint of the
        frozen reference, e.g. an offline run continued online) gets one, started from the reference."""
        if self.cfg.qam.reference != "bc_ema" or state.bc_policy is not None:
            return state
        bc = jax.tree.map(jnp.copy, state.ref_policy)
        return state.replace(bc_policy=bc, bc_opt=self.reference_tx.init(bc))

    # ---- QAM ------------------------------------------------------------------------------------
    def policy_loss(self, params, ref, critic, norm, batch, rng):
        return losses.policy_loss(self.nets, self.cfg.qam, params, ref, critic, norm, batch, rng)

    def _rl_update(self, state: AgentState, batch, bc_batch=None):
        """DIVL + QAM on a mixed-replay batch; with the bc_ema reference also one BC step of its flow
        on `bc_batch`, drawn from the BC pool (train.bc_data's selection)."""
        rng, k = jax.random.split(state.rng)
        batch = self._augment(batch, k)
        state, cm = self._critic_step(state, batch)
        (pl, pm), pg = jax.value_and_grad(self.policy_loss, has_aux=True)(
            state.policy, state.ref_policy, state.critic, state.norm, batch, k
        )
        pu, popt = self.policy_tx.update(pg, state.policy_opt, state.policy)
        policy = frozen_aware(optax.apply_updates(state.policy, pu), state.policy, batch)
        metrics = {**cm, **pm, "policy_loss": pl}
        if state.bc_policy is not None:
            if bc_batch is None:
                raise ValueError('qam.reference "bc_ema" needs a BC batch beside the RL batch')
            state, bm = self._reference_step(state, self._augment(bc_batch, k), jax.random.fold_in(k, 2))
            metrics.update(bm)
        return state.replace(step=state.step + 1, policy=policy, policy_opt=popt, rng=rng), metrics

    def _reference_step(self, state: AgentState, bc_batch, rng):
        """qam.reference "bc_ema": one BC step of the cloning flow on a batch of the BC pool
        (train.bc_data: online runs use "hg_dagger", the demonstrations, the corrections and the
        autonomous successes), then the reference moves toward it by qam.reference_ema."""
        loss, grads = jax.value_and_grad(self.bc_loss)(state.bc_policy, state.norm, bc_batch, rng)
        updates, opt = self.reference_tx.update(grads, state.bc_opt, state.bc_policy)
        bc = frozen_aware(optax.apply_updates(state.bc_policy, updates), state.bc_policy, bc_batch)
        rate = self.cfg.qam.reference_ema
        ref = jax.tree.map(lambda r, b: (1 - rate) * r + rate * b, state.ref_policy, bc)
        return state.replace(bc_policy=bc, bc_opt=opt, ref_policy=ref), {"reference_bc_loss": loss}
