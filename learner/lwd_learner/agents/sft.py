"""SFT: behaviour cloning only (train.bc_data's selection); no critic, no RL phase. The shared BC
step is the whole method (base.BaseAgent)."""

from __future__ import annotations

from lwd_learner.agents.base import BaseAgent


class SFTAgent(BaseAgent):
    """Flow-matching behaviour cloning; `bc_update` / `bc_update_on_device` are its updates."""

    name = "sft"
    trains_critic = False
