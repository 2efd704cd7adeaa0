"""The networks every agent shares and how a batch reaches them: the flow policy and the critic
(lwd_learner.networks), the value support, and the normalisation of observations and action chunks
by the data's NormStats (`AgentState.norm`). Static: the losses are functions of it and of
(params, batch, rng)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from lwd_learner import divl
from lwd_learner.config import ModelConfig, relative_action_mask
from lwd_learner.networks import CriticValue, FlowPolicy


@dataclass(frozen=True, eq=False)
class Nets:
    """The policy and critic modules, the action-chunk shape [H, J], the relative-action mask [J]
    and the categorical value's support [K]."""

    policy: FlowPolicy
    critic: CriticValue
    action_shape: tuple[int, int]
    rel_mask: jax.Array
    support: jax.Array

    @classmethod
    def build(cls, m: ModelConfig) -> Nets:
        return cls(
            policy=FlowPolicy(m),
            critic=CriticValue(m),
            action_shape=(m.horizon, m.num_joints),
            rel_mask=jnp.asarray(relative_action_mask(m)),
            support=divl.atoms(m.critic.num_atoms, m.critic.v_min, m.critic.v_max),
        )

    @staticmethod
    def obs(norm, batch, prefix=""):
        """(images or cached backbone features (None: no cameras), the normalised state vector =
        joints then extra state vectors, task ids) of a batch."""
        q = (batch[prefix + "joint_pos"] - norm["joint_mean"]) / norm["joint_std"]
        if "extra_mean" in norm:  # extra state vectors (ModelConfig.state_names)
            x = (batch[prefix + "extra"] - norm["extra_mean"]) / norm["extra_std"]
            q = jnp.concatenate([q, x], axis=-1)
        return batch.get(prefix + "images"), q, batch[prefix + "task_id"]

    def policy_obs(self, norm, batch):
        """What the policy is conditioned on: as `obs`, with the policy's task id (RECAP's labels)."""
        images, q, task = self.obs(norm, batch)
        return images, q, batch.get("policy_task_id", task)

    def norm_actions(self, norm, a, joint_pos):
        """Executed chunk [B, H, J] -> what the flow models: normalised, relative where configured."""
        return (a - self.rel_mask * joint_pos[:, None] - norm["action_mean"]) / norm["action_std"]

    def denorm_actions(self, norm, a, joint_pos):
        return a * norm["action_std"] + norm["action_mean"] + self.rel_mask * joint_pos[:, None]

    def field(self, params, z, a, w):
        """The policy's vector field f(z, a^w, w) on an encoded observation z."""
        return self.policy.apply(params, z, a, w, method=FlowPolicy.field)
