"""The value distribution along recorded episodes (the paper's Fig. 6/9), from a checkpoint.

For every step of an episode the DIVL value head gives a categorical
distribution over the return atoms; plotted as a heat map over (step, value)
with its mode, one panel per episode. Along a success the mode should rise
towards 1; along a failure it should stay lower.

    python -m lwd_learner.cli value-plot --run RUN --store STORE --episodes ID [ID ...] --out fig.png
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from lwd_common.store import EpisodeStore
from lwd_learner.networks import CriticValue
from lwd_learner.replay import episode_arrays


def value_distributions(session, episode, batch: int = 64) -> np.ndarray:
    """[T, K] probabilities of the value head at every step of `episode`."""
    agent, state, cfg = session.agent, session.state, session.cfg
    if cfg.divl.value_kind != "divl":
        raise ValueError("value-plot needs a DIVL (categorical) value head")
    m = cfg.model
    arr = episode_arrays(episode, session.vocab, m.encoder.image_size, m.cameras, m.joint_names)

    @jax.jit
    def probs(images, joint_pos, task_id):
        obs = agent.nets.obs(state.norm, {"images": images, "joint_pos": joint_pos, "task_id": task_id})
        z = agent.critic.apply(state.critic, *obs, method=CriticValue.encode)
        return jax.nn.softmax(agent.critic.apply(state.critic, z, method=CriticValue.value_logits))

    out = []
    for s in range(0, len(arr.actions), batch):
        sl = slice(s, s + batch)
        n = len(arr.actions[sl])
        out.append(np.asarray(probs(arr.images[sl], arr.joint_pos[sl], np.full(n, arr.task_id, np.int32))))
    return np.concatenate(out)


def plot(run: str | Path, store: str | Path, episode_ids: list[str], out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lwd_learner.train import restore_session

    run = Path(run)
    session = restore_session(run / "checkpoints" if (run / "checkpoints").exists() else run)
    st = EpisodeStore(store)
    m = session.cfg.model.critic
    support = np.linspace(m.v_min, m.v_max, m.num_atoms)
    fig, axes = plt.subplots(1, len(episode_ids), figsize=(5 * len(episode_ids), 3.6), squeeze=False)
    for ax, eid in zip(axes[0], episode_ids, strict=True):
        ep = st.get(eid)
        p = value_distributions(session, ep)
        ax.imshow(
            p.T, origin="lower", aspect="auto", cmap="viridis", extent=(0, len(p), support[0], support[-1])
        )
        ax.plot(np.arange(len(p)) + 0.5, support[p.argmax(1)], "w-", lw=1, label="mode")
        ax.set_title(
            f"{'success' if ep.success else 'failure'}: {ep.meta.task} ({ep.num_steps} steps)", fontsize=9
        )
        ax.set_xlabel("control step")
        ax.set_ylabel("value atoms")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
