"""Data parallelism with jax.sharding: a 1-D 'data' mesh over all devices (all hosts after
`jax.distributed.initialize`); the batch is split along it, the agent state is replicated,
and jit (GSPMD) turns the batch means of the losses into all-reduces."""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def initialize_distributed(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Multi-host: join the JAX cluster (no-op for one process). Arguments or the standard
    JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment variables."""
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if coordinator is None:
        return
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes or int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=process_id if process_id is not None else int(os.environ["JAX_PROCESS_ID"]),
    )


def data_mesh(devices=None) -> Mesh:
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def replicate(tree, mesh: Mesh):
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Build global arrays split along 'data' from this process's part of the batch."""
    sharding = NamedSharding(mesh, P("data"))
    n = mesh.devices.size // jax.process_count()
    out = {}
    for k, v in local_batch.items():
        if v.shape[0] % n:
            raise ValueError(f"local batch {v.shape[0]} not divisible by {n} local devices")
        out[k] = jax.make_array_from_process_local_data(sharding, v)
    return out


def agree_with_process_zero(value: int) -> int:
    """Every process gets process 0's `value` (a collective: all processes must call it at the same point).

    The online learner's hosts agree this way on the snapshot version to read before a step; a
    file or a clock would let a host that looks a moment later see a newer snapshot."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int64(value)))
