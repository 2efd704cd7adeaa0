"""RECAP (advantage-conditioned policy, as in pi*0.6; lwd_learner.recap holds the labelling): BC
with the DIVL critic learning alongside, then BC (+ critic) on *all* replay with each step's policy
task id carrying its advantage label (`Batches.relabel` rewrites them every
train.recap_relabel_every steps); the exported policy answers each plain instruction with its
positive variant."""

from __future__ import annotations

import jax

from lwd_learner import recap
from lwd_learner.agents.base import AgentState, BaseAgent, Draw, Update
from lwd_learner.config import LearnerConfig


class RecapAgent(BaseAgent):
    """The RL phase's update is the BC(+critic) update on all replay: `recap_update_on_device`."""

    name = "recap"
    trains_critic = True

    def __init__(self, cfg: LearnerConfig):
        super().__init__(cfg)
        self.recap_update_on_device = jax.jit(
            lambda s, d: self._sampled(self._bc_update, False, s, d), donate_argnums=0
        )

    def update_kind(self, phase: str) -> str:
        return "bc" if phase == "bc" else "recap"

    def device_update(self, kind: str) -> Update:
        return self.recap_update_on_device if kind == "recap" else super().device_update(kind)

    def host_update(self, kind: str, state: AgentState, draw: Draw) -> tuple[AgentState, dict]:
        if kind != "recap":
            return super().host_update(kind, state, draw)
        return self.bc_update(state, draw(False))

    def deployed_instructions(self, items: list[str]) -> list[str]:
        return recap.deployed_instructions(items)
