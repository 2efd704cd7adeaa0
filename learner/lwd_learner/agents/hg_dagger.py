"""HG-DAgger: behaviour cloning on the demonstrations, the operator's intervention segments and the
successful autonomous episodes (replay.bc_frames' "hg_dagger" rule, whatever train.bc_data says);
no critic, no RL phase."""

from __future__ import annotations

from lwd_learner.agents.sft import SFTAgent


class HGDaggerAgent(SFTAgent):
    """SFT on HG-DAgger's data selection."""

    name = "hg_dagger"
    # Its BC pool, replay.bc_frames' "hg_dagger" rule, is what config.bc_rule gives this method
    # (BaseAgent.bc_rule; the replay buffers are built from the config).
