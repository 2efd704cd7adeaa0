"""Run in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=N (set before jax import):
one BC and one DIVL+QAM update on the same batch, on one device and sharded over all devices; print JSON."""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
import toytask
from test_online_and_cli import tiny_config

from lwd_description.robot import CAMERA_NAMES
from lwd_learner.agents import LWDAgent
from lwd_learner.replay import NormStats, ReplayBuffer, Vocab, episode_arrays
from lwd_learner.sharding import data_mesh, replicate, shard_batch


def main() -> None:
    eps = toytask.mixed_dataset(0, n_demo=2, n_rollout=4, n_play=2)
    cfg = tiny_config()
    vocab = Vocab([e.meta.instruction for e in eps])
    buf = ReplayBuffer(30, 1, 0.9999)
    for e in eps:
        buf.add(episode_arrays(e, vocab, (8, 8), CAMERA_NAMES))
    batch = buf.sample(np.random.default_rng(0), 16)
    agent = LWDAgent(cfg)
    stats = NormStats.from_episodes(eps)
    results = {}
    for name, mesh in (("single", data_mesh(jax.devices()[:1])), ("sharded", data_mesh())):
        state = replicate(agent.init(stats, 0), mesh)
        b = shard_batch(batch, mesh)
        state, bc = agent.bc_update(state, b)
        state, rl = agent.rl_update(agent.start_rl(state), b)
        leaves = [np.asarray(x) for x in jax.tree.leaves((state.policy, state.critic))]
        results[name] = {
            "devices": len(b["actions"].sharding.device_set),
            "metrics": {k: float(v) for k, v in {**bc, **rl}.items()},
            "param_sum": float(sum(np.abs(x).sum() for x in leaves)),
            "param_first": [float(x.ravel()[0]) for x in leaves[:20]],
        }
    json.dump({"device_count": jax.device_count(), **results}, sys.stdout)


if __name__ == "__main__":
    main()
