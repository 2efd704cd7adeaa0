"""One process of a 2-process jax.distributed CPU run (started by test_snapshot_barrier.py): poll the
online learner's store reader three times while process 0 commits a new snapshot right after each
of its own polls and process 1 polls a second later; print the versions and episodes each process got.

    snapshot_barrier_run.py PORT PROCESS_ID WORK_DIR agree|own
`own` is the reader without the agreement (each host reads HEAD itself): what the test must tell apart."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")

import toytask  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from lwd_common.store import EpisodeStore  # noqa: E402
from lwd_learner.replay import StoreReader  # noqa: E402
from lwd_learner.sharding import agree_with_process_zero, initialize_distributed  # noqa: E402


def main() -> None:
    port, pid, work, mode = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    initialize_distributed(f"127.0.0.1:{port}", 2, pid)
    episodes = toytask.mixed_dataset(0, n_demo=4, n_rollout=6, n_play=0)
    store = EpisodeStore(work / "store")
    if pid == 0:
        for e in episodes[:4]:
            store.put(e)
        store.commit_snapshot()
    multihost_utils.sync_global_devices("store written")
    reader = StoreReader(
        work / "store", shard=(pid, 2), agree=agree_with_process_zero if mode == "agree" else None
    )
    rounds = []
    for r in range(3):
        if pid == 1:
            time.sleep(1.0)  # the slower host
        got = reader.poll()
        rounds.append({"version": reader.snapshot_version, "ids": [e.meta.episode_id for e in got]})
        if pid == 0:  # the fleet commits while the slower host has not looked yet
            for e in episodes[4 + 2 * r : 6 + 2 * r]:
                store.put(e)
            store.commit_snapshot()
        multihost_utils.sync_global_devices(f"round {r}")
    print(json.dumps({"process": pid, "rounds": rounds}))


if __name__ == "__main__":
    main()
