"""One process of a 2-process jax.distributed CPU run (started by test_multihost.py):
draw this process's first host batch the way the training loop does, then train a few
offline steps into a shared run directory; print a JSON line with what happened."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")

import toytask  # noqa: E402
from test_online_and_cli import _store, tiny_config  # noqa: E402

from lwd_learner import train  # noqa: E402
from lwd_learner.agents import make_agent  # noqa: E402
from lwd_learner.batches import Batches  # noqa: E402
from lwd_learner.replay import StoreReader, Vocab  # noqa: E402
from lwd_learner.sharding import data_mesh, initialize_distributed  # noqa: E402


def main() -> None:
    port, pid, work = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    initialize_distributed(f"127.0.0.1:{port}", 2, pid)
    store = work / "store"
    if pid == 0:
        _store(store, toytask.mixed_dataset(0, n_demo=2, n_rollout=3, n_play=1))
    cfg = tiny_config()
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, bc_steps=3, rl_steps=2, ckpt_every=100)
    )
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("store written")
    episodes = StoreReader(store).poll()
    agent_batches = Batches(cfg, make_agent(cfg), data_mesh())
    agent_batches.add(train.decode_episodes(episodes, Vocab([e.meta.instruction for e in episodes]), cfg))
    first = agent_batches._host_sample(bc=False)
    digest = hashlib.sha256(first["joint_pos"].tobytes() + first["actions"].tobytes()).hexdigest()
    session = train.run_offline(store, work / "run", cfg, progress=False)
    print(
        json.dumps(
            {
                "process": jax.process_index(),
                "processes": jax.process_count(),
                "on_device": agent_batches.on_device,
                "local_rows": len(first["joint_pos"]),
                "batch_digest": digest,
                "step": int(session.state.step),
            }
        )
    )


if __name__ == "__main__":
    main()
