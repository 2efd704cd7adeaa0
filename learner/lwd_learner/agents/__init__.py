"""The learner's methods, one agent per module over shared networks and pure losses (as the
FQL / QAM reference agents are organised): `base` (state, networks, normalisation, the BC and
critic steps, sampling), `losses` (pure loss functions), `lwd` (DIVL + QAM), `sft` (BC only),
`hg_dagger` (BC on HG-DAgger's selection), `recap` (advantage-conditioned BC). TrainConfig.method
names the agent (`make_agent`)."""

from __future__ import annotations

from lwd_learner.agents.base import AgentState, BaseAgent
from lwd_learner.agents.hg_dagger import HGDaggerAgent
from lwd_learner.agents.lwd import LWDAgent
from lwd_learner.agents.recap import RecapAgent
from lwd_learner.agents.sft import SFTAgent
from lwd_learner.config import LearnerConfig

AGENTS: dict[str, type[BaseAgent]] = {a.name: a for a in (LWDAgent, SFTAgent, HGDaggerAgent, RecapAgent)}
"""Method name (TrainConfig.method) -> its agent class."""


def agent_class(method: str) -> type[BaseAgent]:
    """The agent class of a method name; a ValueError listing the methods for an unknown one."""
    if method not in AGENTS:
        raise ValueError(f"unknown method {method!r}; methods: {', '.join(AGENTS)}")
    return AGENTS[method]


def make_agent(cfg: LearnerConfig) -> BaseAgent:
    """The agent of cfg.train.method, built for cfg."""
    return agent_class(cfg.train.method)(cfg)


__all__ = [
    "AGENTS",
    "AgentState",
    "BaseAgent",
    "HGDaggerAgent",
    "LWDAgent",
    "RecapAgent",
    "SFTAgent",
    "agent_class",
    "make_agent",
]
