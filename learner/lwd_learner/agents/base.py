"""What every agent shares: the state pytree (`AgentState`, one layout for every method, so any
checkpoint restores into any agent), the networks and normalisation (`Nets`), initialisation, the
frozen-encoder path, the BC step (with the DIVL critic step for methods that train one), the value
read-outs and the deployed sampler. A method is a subclass in its own module (agents/lwd.py,
sft.py, hg_dagger.py, recap.py) that adds its updates; losses are pure functions (agents/losses.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.typing import VariableDict
from jax.sharding import Sharding

from lwd_learner.agents import losses
from lwd_learner.agents.nets import Nets
from lwd_learner.config import LearnerConfig, bc_rule
from lwd_learner.device_replay import ReplayArrays, sample_batch
from lwd_learner.flow import euler_sample, rtc_sample, rtc_weights
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


# A jitted update: (state, batch, optional second batch) -> (state, metrics).
Update = Callable[..., tuple[AgentState, dict]]
# Draws one host minibatch: from the BC pool (True) or from all replay (False).
Draw = Callable[[bool], dict]


def _norm_dict(stats: NormStats) -> dict:
    return {k: jnp.asarray(v, jnp.float32) for k, v in stats.to_dict().items()}


class BaseAgent:
    """Holds the static parts (networks, optimisers, config) and the jitted functions every method
    has: the BC update (`bc_update`, and `bc_update_on_device` drawing its minibatch from a
    device-resident replay), `state_values`, `q_and_action_grad`, `sample_actions` / `act`."""

    name: ClassVar[str] = ""
    """The method's name (TrainConfig.method; the registry's key, agents.AGENTS)."""
    trains_critic: ClassVar[bool] = False
    """Learns a value model (DIVL) alongside behaviour cloning (config.trains_critic)."""

    def __init__(self, cfg: LearnerConfig):
        self.cfg = cfg
        self.nets = Nets.build(cfg.model)
        self.policy, self.critic = self.nets.policy, self.nets.critic
        self.action_shape = self.nets.action_shape
        self.support = self.nets.support
        t = cfg.train
        self.bc_tx = optax.adam(optax.cosine_decay_schedule(cfg.qam.bc_lr, t.decay_steps))
        self.critic_tx = optax.adam(optax.cosine_decay_schedule(cfg.divl.lr, t.decay_steps))
        # During BC the critic learns from a batch of all replay beside the BC batch where the BC
        # pool is a selection of it (config.critic_needs_own_batch).
        self.critic_needs_own_batch = self.trains_critic and self.bc_rule != "all"
        self.bc_update = jax.jit(self._bc_update, donate_argnums=0)
        self.batch_sharding: Sharding | None = (
            None  # set by a multi-device run: how a device-drawn batch is split
        )
        self.bc_update_on_device = jax.jit(
            lambda s, d: self._sampled(
                self._bc_update, True, s, d, second_from_bc=False if self.critic_needs_own_batch else None
            ),
            donate_argnums=0,
        )
        self.state_values = jax.jit(self._state_values)
        self.q_and_action_grad = jax.jit(self._q_and_action_grad)
        self.sample_actions = jax.jit(self._sample_actions, static_argnames="steps")

    @property
    def bc_rule(self) -> str:
        """What BC clones (replay.bc_frames; the replay takes it from config.bc_rule): train.bc_data,
        HG-DAgger's selection for that method."""
        return bc_rule(self.cfg.train)

    # ---- the training loop's view of the method ------------------------------------------------
    def update_kind(self, phase: str) -> str:
        """The update one step of `phase` ("bc" or "rl") runs: `device_update`'s and `host_update`'s kind."""
        if phase == "bc":
            return "bc"
        raise ValueError(
            f"method {self.name!r} has no RL phase; the state is in phase {phase!r} "
            "(continue it with a method that has one: lwd, recap)"
        )

    def device_update(self, kind: str) -> Update:
        """The jitted update of `kind` on a device-resident replay: (state, ReplayArrays) -> (state, metrics)."""
        if kind == "bc":
            return self.bc_update_on_device
        raise ValueError(f"method {self.name!r} has no {kind!r} update")

    def host_update(self, kind: str, state: AgentState, draw: Draw) -> tuple[AgentState, dict]:
        """One update of `kind` on minibatches drawn on the host by `draw`."""
        if kind != "bc":
            raise ValueError(f"method {self.name!r} has no {kind!r} update")
        batch = draw(True)
        if self.critic_needs_own_batch:  # the critic learns from all replay
            return self.bc_update(state, batch, draw(False))
        return self.bc_update(state, batch)

    def start_rl(self, state: AgentState) -> AgentState:
        """The state at the switch from BC to the RL phase (methods with one); unchanged here."""
        return state

    def with_reference_training(self, state: AgentState) -> AgentState:
        """A restored RL state completed with what this method's RL phase needs; unchanged here."""
        return state

    def uses_policy_tx(self, phase: str) -> bool:
        """The policy trains with an optimiser other than BC's in `phase` (LWD's QAM)."""
        return False

    def policy_optimiser(self, phase: str) -> optax.GradientTransformation:
        """The policy's optimiser in `phase` (a restored state of another method gets its fresh state)."""
        return self.bc_tx

    def deployed_instructions(self, items: list[str]) -> list[str]:
        """The instruction list the exported policy carries (RECAP maps its labelled variants)."""
        return items

    # ---- construction ---------------------------------------------------------------------------
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

    # ---- helpers --------------------------------------------------------------------------------
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

    # ---- behaviour cloning (+ the critic alongside) -----------------------------------------------
    def bc_loss(self, params, norm, batch, rng):
        return losses.bc_loss(self.nets, params, norm, batch, rng)

    def _bc_update(self, state: AgentState, batch, critic_batch=None):
        """BC step; for methods that train a critic also a DIVL step: value learning is in-sample
        (dataset actions only), so the critic trains alongside BC and QAM starts from a useful
        critic. The critic learns from `critic_batch` (the callers pass a batch of the whole buffer
        where the BC pool is a part of it, `critic_needs_own_batch`; None: from `batch`): BC on
        demonstrations alone would show it only successes, and it would learn that every state and
        chunk is worth 1 (docs/results/diagnostics.md)."""
        rng, k = jax.random.split(state.rng)
        batch = self._augment(batch, k)
        loss, grads = jax.value_and_grad(self.bc_loss)(state.policy, state.norm, batch, k)
        updates, opt = self.bc_tx.update(grads, state.policy_opt, state.policy)
        policy = frozen_aware(optax.apply_updates(state.policy, updates), state.policy, batch)
        state = state.replace(step=state.step + 1, policy=policy, policy_opt=opt, rng=rng)
        metrics = {"bc_loss": loss}
        if self.trains_critic:
            critic_batch = (
                batch if critic_batch is None else self._augment(critic_batch, jax.random.fold_in(k, 3))
            )
            state, cm = self._critic_step(state, critic_batch)
            metrics.update(cm)
        return state, metrics

    # ---- DIVL -----------------------------------------------------------------------------------
    def critic_loss(self, params, target, norm, batch):
        return losses.critic_loss(self.nets, self.cfg.divl, params, target, norm, batch)

    def _critic_step(self, state: AgentState, batch):
        (_, cm), cg = jax.value_and_grad(self.critic_loss, has_aux=True)(
            state.critic, state.target_critic, state.norm, batch
        )
        cu, copt = self.critic_tx.update(cg, state.critic_opt, state.critic)
        critic = frozen_aware(optax.apply_updates(state.critic, cu), state.critic, batch)
        ema = self.cfg.divl.ema
        target = jax.tree.map(lambda t, p: (1 - ema) * t + ema * p, state.target_critic, critic)
        return state.replace(critic=critic, target_critic=target, critic_opt=copt), cm

    def _state_values(self, critic, norm, images, joint_pos, task_id, extra=None):
        """V(s) of the value model: the mean of the categorical value (DIVL) or the scalar head."""
        obs = {"images": images, "joint_pos": joint_pos, "task_id": task_id, "extra": extra}
        z = self.critic.apply(critic, *self.nets.obs(norm, obs), method=CriticValue.encode)
        if self.cfg.divl.value_kind == "divl":
            p = jax.nn.softmax(self.critic.apply(critic, z, method=CriticValue.value_logits))
            return jnp.sum(p * self.support, axis=-1)
        return self.critic.apply(critic, z, method=CriticValue.value_scalar)

    def _q_and_action_grad(self, critic, norm, images, joint_pos, task_id, actions):
        """Q(s, a) of absolute chunks `actions` [B, H, J] (the min of the heads, as QAM's adjoint
        uses it) [B], and dQ/da with respect to the normalised chunk [B, H, J]: what QAM's terminal
        adjoint is before the division by lambda (diagnostics read both)."""
        batch = {"images": images, "joint_pos": joint_pos, "task_id": task_id}
        z = self.critic.apply(critic, *self.nets.obs(norm, batch), method=CriticValue.encode)

        def qmin(a):
            return jnp.min(self.critic.apply(critic, z, a, method=CriticValue.q_from_z), 0)

        q, vjp = jax.vjp(qmin, self.nets.norm_actions(norm, actions, joint_pos))
        return q, vjp(jnp.ones_like(q))[0]

    # ---- inference ------------------------------------------------------------------------------
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
        nets = self.nets
        obs = nets.obs(norm, {"images": images, "joint_pos": joint_pos, "task_id": task_id, "extra": extra})
        z = self.policy.apply(params, *obs, method=FlowPolicy.encode)
        noise = noise * self.cfg.model.policy.noise_scale
        field = lambda p, o, x, w: nets.field(p, o, x, w)  # noqa: E731
        if prefix is None:
            return nets.denorm_actions(norm, euler_sample(field, params, z, noise, steps), joint_pos)
        horizon = self.action_shape[0]
        prefix_len = jnp.asarray(prefix_len, jnp.int32).reshape(-1)
        delay = jnp.clip(jnp.asarray(delay, jnp.int32).reshape(-1), 0, jnp.clip(prefix_len, 0, horizon))
        weights = rtc_weights(horizon, prefix_len, delay)
        target = nets.norm_actions(norm, prefix, joint_pos)
        a = rtc_sample(
            field, params, z, noise, steps, target, weights, self.cfg.model.policy.rtc_max_guidance
        )
        actions = nets.denorm_actions(norm, a, joint_pos)
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


def frozen_aware(new, old, batch):
    """On cached features the backbone gets no gradient, but optimiser momentum and weight decay would
    still move it: keep it exactly as it was."""
    return _with_backbone(new, old) if uses_cached_features(batch) else new
