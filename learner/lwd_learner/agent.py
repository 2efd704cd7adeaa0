"""The LWD agent: BC pretraining, then one jitted update of DIVL (critic + value) and QAM (policy).

State is one pytree (`AgentState`); losses are pure functions of (params, batch, rng).
Everything the networks see is normalised: joints and actions by the data's NormStats.
Method switches (TrainConfig.method, DIVLConfig.value_kind / adaptive_tau) select the
baselines: SFT (BC only), expectile value (scalar IQL), constant tau.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.typing import VariableDict
from jax.sharding import Sharding

from lwd_learner import divl
from lwd_learner.config import LearnerConfig, critic_needs_own_batch, relative_action_mask, trains_critic
from lwd_learner.device_replay import ReplayArrays, sample_batch
from lwd_learner.flow import euler_sample, flow_matching_loss, qam_loss, rtc_sample, rtc_weights
from lwd_learner.networks import CriticValue, FlowPolicy
from lwd_learner.replay import NormStats


@flax.struct.dataclass
class AgentState:
    step: jnp.ndarray
    policy: VariableDict
    ref_policy: VariableDict
    critic: VariableDict
    target_critic: VariableDict
    policy_opt: optax.OptState
    critic_opt: optax.OptState
    norm: dict  # joint_mean, joint_std, action_mean, action_std
    rng: jnp.ndarray
    # qam.reference "bc_ema" only (None otherwise, so checkpoints of the frozen reference keep their
    # layout): the flow that keeps behaviour cloning during RL, and its optimiser; ref_policy is its EMA.
    bc_policy: VariableDict | None = None
    bc_opt: optax.OptState | None = None

    if TYPE_CHECKING:  # added by flax.struct.dataclass at runtime, where type checkers do not see it

        def replace(self, **updates: Any) -> AgentState: ...


def _norm_dict(stats: NormStats) -> dict:
    return {k: jnp.asarray(v, jnp.float32) for k, v in stats.to_dict().items()}


class Agent:
    """Holds the static parts (modules, optimisers, config) and the jitted update functions."""

    def __init__(self, cfg: LearnerConfig):
        self.cfg = cfg
        m = cfg.model
        self.policy = FlowPolicy(m)
        self.critic = CriticValue(m)
        self.action_shape = (m.horizon, m.num_joints)
        self._rel_mask = jnp.asarray(relative_action_mask(m))
        self.support = divl.atoms(m.critic.num_atoms, m.critic.v_min, m.critic.v_max)
        t = cfg.train
        self.bc_tx = optax.adam(optax.cosine_decay_schedule(cfg.qam.bc_lr, t.decay_steps))
        self.policy_tx = optax.adamw(
            optax.cosine_decay_schedule(cfg.qam.lr, t.decay_steps), weight_decay=cfg.qam.weight_decay
        )
        self.critic_tx = optax.adam(optax.cosine_decay_schedule(cfg.divl.lr, t.decay_steps))
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
        self.bc_update = jax.jit(self._bc_update, donate_argnums=0)
        self.rl_update = jax.jit(self._rl_update, donate_argnums=0)
        self.batch_sharding: Sharding | None = (
            None  # set by a multi-device run: how a device-drawn batch is split
        )
        # The same updates drawing their minibatch from a device-resident replay (device_replay).
        self.bc_update_on_device = jax.jit(
            lambda s, d: self._sampled(
                self._bc_update, True, s, d, second_from_bc=False if critic_needs_own_batch(t) else None
            ),
            donate_argnums=0,
        )
        self.rl_update_on_device = jax.jit(
            lambda s, d: self._sampled(
                self._rl_update, False, s, d, second_from_bc=True if s.bc_policy is not None else None
            ),
            donate_argnums=0,
        )
        # RECAP: the BC(+critic) update on all replay (its advantage-labelled policy task ids).
        self.recap_update_on_device = jax.jit(
            lambda s, d: self._sampled(self._bc_update, False, s, d), donate_argnums=0
        )
        self.state_values = jax.jit(self._state_values)
        self.q_and_action_grad = jax.jit(self._q_and_action_grad)
        self.sample_actions = jax.jit(self._sample_actions, static_argnames="steps")

    # ---- construction -------------------------------------------------------------------
    def dummy_obs(self, batch: int = 1):
        e = self.cfg.model.encoder
        return (
            jnp.zeros((batch, self.cfg.model.num_cameras, *e.image_size, 3), jnp.uint8),
            jnp.zeros((batch, self.cfg.model.num_joints + self.cfg.model.state_dim)),
            jnp.zeros((batch,), jnp.int32),
        )

    def init(self, stats: NormStats, seed: int = 0) -> AgentState:
        m = self.cfg.model
        if np.size(stats.joint_mean) != m.num_joints or np.size(stats.extra_mean) != m.state_dim:
            raise ValueError(
                f"normalisation statistics for {np.size(stats.joint_mean)} joints and "
                f"{np.size(stats.extra_mean)} extra state dims; the model has {m.num_joints} and {m.state_dim}"
            )
        rng = jax.random.PRNGKey(seed)
        k_pol, k_crit, rng = jax.random.split(rng, 3)
        obs = self.dummy_obs()
        a = jnp.zeros((1, *self.action_shape))
        policy = self.policy.init(k_pol, *obs, a, jnp.zeros((1,)))
        critic = self.critic.init(k_crit, *obs, a)
        return AgentState(
            step=jnp.zeros((), jnp.int32),
            policy=policy,
            ref_policy=jax.tree.map(jnp.copy, policy),
            critic=critic,
            target_critic=jax.tree.map(jnp.copy, critic),
            policy_opt=self.bc_tx.init(policy),
            critic_opt=self.critic_tx.init(critic),
            norm=_norm_dict(stats),
            rng=rng,
        )

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

    def freeze_encoder(self, state: AgentState) -> AgentState:
        """Frozen-encoder path: the policy's image backbone becomes the one backbone of every network
        (reference, critic, target); updates on cached features then leave it untouched."""
        src = state.policy
        copy = lambda: jax.tree.map(jnp.copy, src)  # noqa: E731  (own buffers: the update donates its state)
        return state.replace(
            ref_policy=_with_backbone(state.ref_policy, copy()),
            critic=_with_backbone(state.critic, copy()),
            target_critic=_with_backbone(state.target_critic, copy()),
            bc_policy=None if state.bc_policy is None else _with_backbone(state.bc_policy, copy()),
        )

    def image_features(self, params, images):
        """Backbone features of uint8 frames [B, cams, H, W, 3] -> [B, cams * image_feature_dim]."""
        return self.policy.apply(params, images, method=FlowPolicy.image_features)

    # ---- helpers ------------------------------------------------------------------------
    @staticmethod
    def _obs(norm, batch, prefix=""):
        """(images or cached backbone features (None: no cameras), the normalised state vector =
        joints then extra state vectors, task ids) of a batch."""
        q = (batch[prefix + "joint_pos"] - norm["joint_mean"]) / norm["joint_std"]
        if "extra_mean" in norm:  # extra state vectors (ModelConfig.state_names)
            x = (batch[prefix + "extra"] - norm["extra_mean"]) / norm["extra_std"]
            q = jnp.concatenate([q, x], axis=-1)
        return batch.get(prefix + "images"), q, batch[prefix + "task_id"]

    def _policy_obs(self, norm, batch):
        """What the policy is conditioned on: as `_obs`, with the policy's task id (RECAP's labels)."""
        images, q, task = self._obs(norm, batch)
        return images, q, batch.get("policy_task_id", task)

    def _norm_actions(self, norm, a, joint_pos):
        """Executed chunk [B, H, J] -> what the flow models: normalised, relative where configured."""
        return (a - self._rel_mask * joint_pos[:, None] - norm["action_mean"]) / norm["action_std"]

    def _denorm_actions(self, norm, a, joint_pos):
        return a * norm["action_std"] + norm["action_mean"] + self._rel_mask * joint_pos[:, None]

    def _field(self, params, z, a, w):
        return self.policy.apply(params, z, a, w, method=FlowPolicy.field)

    def _sampled(
        self, update, bc: bool, state: AgentState, data: ReplayArrays, second_from_bc: bool | None = None
    ):
        """`update` on a minibatch drawn on the device (from the BC pool if `bc`), and with
        `second_from_bc` not None on a second one, from the BC pool (True: the bc_ema reference's
        cloning batch) or from all replay (False: the critic's batch during BC)."""
        rng, k = jax.random.split(state.rng)
        t = self.cfg.train

        def draw(key, from_bc: bool):
            batch = sample_batch(data, key, t.batch_size, from_bc, t.online_ratio)
            if self.batch_sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, self.batch_sharding)
            return batch

        batches = [draw(k, bc)]
        if second_from_bc is not None:
            batches.append(draw(jax.random.fold_in(k, 1), second_from_bc))
        return update(state.replace(rng=rng), *batches)

    # ---- behaviour cloning --------------------------------------------------------------
    def bc_loss(self, params, norm, batch, rng):
        z = self.policy.apply(params, *self._policy_obs(norm, batch), method=FlowPolicy.encode)
        a = self._norm_actions(norm, batch["actions"], batch["joint_pos"])
        field = lambda p, obs, x, w: self._field(p, obs, x, w)  # noqa: E731
        return jnp.mean(flow_matching_loss(field, params, z, a, rng))

    def _augment(self, batch, rng):
        """Random-shift augmentation of the frames (TrainConfig.aug_shift; not of cached features)."""
        shift = self.cfg.train.aug_shift
        if not shift or uses_cached_features(batch):
            return batch
        k1, k2 = jax.random.split(jax.random.fold_in(rng, 1))
        return {
            **batch,
            "images": random_shift(k1, batch["images"], shift),
            "next_images": random_shift(k2, batch["next_images"], shift),
        }

    def _bc_update(self, state: AgentState, batch, critic_batch=None):
        """BC step; with method 'lwd' also a DIVL step: value learning is in-sample (dataset actions
        only), so the critic trains alongside BC and QAM starts from a useful critic. The critic
        learns from `critic_batch` (the callers pass a batch of the whole buffer where the BC pool is
        a part of it, `critic_needs_own_batch`; None: from `batch`): BC on demonstrations alone would
        show it only successes, and it would learn that every state and chunk is worth 1
        (docs/results/diagnostics.md)."""
        rng, k = jax.random.split(state.rng)
        batch = self._augment(batch, k)
        loss, grads = jax.value_and_grad(self.bc_loss)(state.policy, state.norm, batch, k)
        updates, opt = self.bc_tx.update(grads, state.policy_opt, state.policy)
        policy = _frozen_aware(optax.apply_updates(state.policy, updates), state.policy, batch)
        state = state.replace(step=state.step + 1, policy=policy, policy_opt=opt, rng=rng)
        metrics = {"bc_loss": loss}
        if trains_critic(self.cfg.train):
            critic_batch = (
                batch if critic_batch is None else self._augment(critic_batch, jax.random.fold_in(k, 3))
            )
            state, cm = self._critic_step(state, critic_batch)
            metrics.update(cm)
        return state, metrics

    def _critic_step(self, state: AgentState, batch):
        (_, cm), cg = jax.value_and_grad(self.critic_loss, has_aux=True)(
            state.critic, state.target_critic, state.norm, batch
        )
        cu, copt = self.critic_tx.update(cg, state.critic_opt, state.critic)
        critic = _frozen_aware(optax.apply_updates(state.critic, cu), state.critic, batch)
        ema = self.cfg.divl.ema
        target = jax.tree.map(lambda t, p: (1 - ema) * t + ema * p, state.target_critic, critic)
        return state.replace(critic=critic, target_critic=target, critic_opt=copt), cm

    # ---- DIVL ---------------------------------------------------------------------------
    def critic_loss(self, params, target, norm, batch):
        d = self.cfg.divl
        c = self.critic
        obs = self._obs(norm, batch)
        a = self._norm_actions(norm, batch["actions"], batch["joint_pos"])
        z = c.apply(params, *obs, method=CriticValue.encode)
        q = c.apply(params, z, a, method=CriticValue.q_from_z)  # [2, B]
        z_next = jax.lax.stop_gradient(
            c.apply(params, *self._obs(norm, batch, "next_"), method=CriticValue.encode)
        )
        metrics = {}
        if d.value_kind == "divl":
            p_next = jax.nn.softmax(c.apply(params, z_next, method=CriticValue.value_logits))
            if d.adaptive_tau:
                tau = divl.adaptive_tau(p_next, d.tau_base, d.alpha, d.tau_min, d.tau_max)
            else:
                tau = jnp.full(p_next.shape[:1], d.constant_tau)
            boot = divl.quantile(p_next, self.support, tau)
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
            value_l = jnp.mean(divl.categorical_value_loss(logits, qbar, self.support))
            metrics["v_mean"] = jnp.mean(jnp.sum(jax.nn.softmax(logits) * self.support, -1))
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

    # ---- QAM ----------------------------------------------------------------------------
    def policy_loss(self, params, ref, critic, norm, batch, rng):
        q = self.cfg.qam
        pobs = self._policy_obs(norm, batch)
        z = self.policy.apply(params, *pobs, method=FlowPolicy.encode)
        z_ref = jax.lax.stop_gradient(self.policy.apply(ref, *pobs, method=FlowPolicy.encode))
        zc = jax.lax.stop_gradient(
            self.critic.apply(critic, *self._obs(norm, batch), method=CriticValue.encode)
        )

        def q_grad(a):
            def qmin(x):
                return jnp.sum(jnp.min(self.critic.apply(critic, zc, x, method=CriticValue.q_from_z), 0))

            return jax.grad(qmin)(a)

        lam: float | jax.Array = q.lam
        if q.lam_scale == "q_std":  # temperature in units of the critic's spread over the batch's data chunks
            a_data = self._norm_actions(norm, batch["actions"], batch["joint_pos"])
            q_data = jnp.min(self.critic.apply(critic, zc, a_data, method=CriticValue.q_from_z), 0)
            lam = q.lam * jax.lax.stop_gradient(jnp.std(q_data) + 1e-4)
        field = lambda p, o, a, w: self._field(p, o[0], a, w)  # noqa: E731
        ref_field = lambda p, o, a, w: self._field(p, o[1], a, w)  # noqa: E731
        per, stats = qam_loss(
            field,
            params,
            ref_field,
            ref,
            (z, z_ref),
            self.action_shape,
            z.shape[0],
            q_grad,
            lam,
            q.flow_steps,
            rng,
            q.rollout == "reference",
            lam_per_grad_rms=q.lam_scale == "grad_rms",
        )
        return jnp.mean(per), stats

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
        policy = _frozen_aware(optax.apply_updates(state.policy, pu), state.policy, batch)
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
        bc = _frozen_aware(optax.apply_updates(state.bc_policy, updates), state.bc_policy, bc_batch)
        rate = self.cfg.qam.reference_ema
        ref = jax.tree.map(lambda r, b: (1 - rate) * r + rate * b, state.ref_policy, bc)
        return state.replace(bc_policy=bc, bc_opt=opt, ref_policy=ref), {"reference_bc_loss": loss}

    def _state_values(self, critic, norm, images, joint_pos, task_id, extra=None):
        """V(s) of the value model: the mean of the categorical value (DIVL) or the scalar head."""
        obs = {"images": images, "joint_pos": joint_pos, "task_id": task_id, "extra": extra}
        z = self.critic.apply(
            critic,
            *self._obs(norm, obs),
            method=CriticValue.encode,
        )
        if self.cfg.divl.value_kind == "divl":
            p = jax.nn.softmax(self.critic.apply(critic, z, method=CriticValue.value_logits))
            return jnp.sum(p * self.support, axis=-1)
        return self.critic.apply(critic, z, method=CriticValue.value_scalar)

    def _q_and_action_grad(self, critic, norm, images, joint_pos, task_id, actions):
        """Q(s, a) of absolute chunks `actions` [B, H, J] (the min of the heads, as QAM's adjoint
        uses it) [B], and dQ/da with respect to the normalised chunk [B, H, J]: what QAM's terminal
        adjoint is before the division by lambda (diagnostics read both)."""
        batch = {"images": images, "joint_pos": joint_pos, "task_id": task_id}
        z = self.critic.apply(critic, *self._obs(norm, batch), method=CriticValue.encode)

        def qmin(a):
            return jnp.min(self.critic.apply(critic, z, a, method=CriticValue.q_from_z), 0)

        q, vjp = jax.vjp(qmin, self._norm_actions(norm, actions, joint_pos))
        return q, vjp(jnp.ones_like(q))[0]

    # ---- inference ----------------------------------------------------------------------
    def _sample_actions(
        self,
        params,
        norm,
        images,
        joint_pos,
        task_id,
        noise,
        steps: int,
        extra=None,
        prefix=None,
        prefix_len=None,
        delay=None,
    ):
        """The deployed sampler: Euler flow from `noise` [B, H, J] to absolute joint targets
        (`images` None without cameras; `extra` [B, S] the extra state vectors, if the model has any).

        With `prefix` [B, H, J] (absolute joint targets already planned for the chunk's steps, rows
        from `prefix_len` [B] on ignored) and `delay` [B], real-time chunking (`flow.rtc_sample`):
        the flow is guided onto the prefix, and the first min(delay, prefix_len) rows of the result
        are the prefix's exactly (they execute before this chunk arrives). prefix_len 0 is the
        plain sampler."""
        obs = self._obs(norm, {"images": images, "joint_pos": joint_pos, "task_id": task_id, "extra": extra})
        z = self.policy.apply(params, *obs, method=FlowPolicy.encode)
        noise = noise * self.cfg.model.policy.noise_scale
        field = lambda p, o, x, w: self._field(p, o, x, w)  # noqa: E731
        if prefix is None:
            return self._denorm_actions(norm, euler_sample(field, params, z, noise, steps), joint_pos)
        horizon = self.action_shape[0]
        prefix_len = jnp.asarray(prefix_len, jnp.int32).reshape(-1)
        delay = jnp.clip(jnp.asarray(delay, jnp.int32).reshape(-1), 0, jnp.clip(prefix_len, 0, horizon))
        weights = rtc_weights(horizon, prefix_len, delay)
        target = self._norm_actions(norm, prefix, joint_pos)
        a = rtc_sample(
            field, params, z, noise, steps, target, weights, self.cfg.model.policy.rtc_max_guidance
        )
        actions = self._denorm_actions(norm, a, joint_pos)
        frozen = jnp.arange(horizon)[None, :] < delay[:, None]  # [B, H]
        return jnp.where(frozen[..., None], prefix, actions)

    def act(
        self,
        state: AgentState,
        images,
        joint_pos,
        task_id,
        noise,
        steps: int | None = None,
        extra=None,
        prefix=None,
        prefix_len=None,
        delay=None,
    ) -> np.ndarray:
        """Action chunks [B, H, J] for observations: images uint8 [B, cams, H, W, 3] (None without
        cameras), joint_pos [B, J], task_id [B], noise [B, H, J], extra [B, S] (extra state vectors).
        Real-time chunking (see `_sample_actions`): `prefix` [B, H, J] absolute joint targets already
        planned for this chunk's steps, `prefix_len` [B] (default H) and `delay` [B] (default 0)."""
        steps = steps or self.cfg.qam.flow_steps
        rtc = {}
        if prefix is not None:
            b, horizon = np.shape(prefix)[:2]
            rtc = {
                "prefix": prefix,
                "prefix_len": np.full((b,), horizon, np.int32) if prefix_len is None else prefix_len,
                "delay": np.zeros((b,), np.int32) if delay is None else delay,
            }
        return np.asarray(
            self.sample_actions(
                state.policy, state.norm, images, joint_pos, task_id, noise, steps=steps, extra=extra, **rtc
            )
        )


def random_shift(key, images, pad: int):
    """DrQ random shift: pad each frame [B, cams, H, W, 3] by replicating its edge, crop back at a
    random offset (one offset per sample and camera)."""
    b, c, h, w, ch = images.shape
    if c == 0:  # no cameras
        return images
    flat = images.reshape(b * c, h, w, ch)
    padded = jnp.pad(flat, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offs = jax.random.randint(key, (b * c, 2), 0, 2 * pad + 1)
    crop = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, ch)))(padded, offs)
    return crop.reshape(images.shape)


def uses_cached_features(batch) -> bool:
    """A batch carries cached backbone features (float) instead of uint8 frames: the frozen path."""
    return batch["images"].dtype != jnp.uint8


def _with_backbone(params, source):
    """`params` with its image backbone (the encoder's conv layers) taken from `source`."""
    enc = dict(params["params"]["encoder"])
    enc.update({k: v for k, v in source["params"]["encoder"].items() if k.startswith("conv")})
    return {**params, "params": {**params["params"], "encoder": enc}}


def _frozen_aware(new, old, batch):
    """On cached features the backbone gets no gradient, but optimiser momentum and weight decay would
    still move it: keep it exactly as it was."""
    return _with_backbone(new, old) if uses_cached_features(batch) else new
