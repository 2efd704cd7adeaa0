"""DIVL + QAM update throughput and peak memory at the default model sizes.

    .venv/bin/python benchmarks/learner_step.py [--batch-size 64] [--steps 20]

Prints the device kind; runs unchanged on GPU (peak memory from the device's memory
stats there, process max RSS on CPU). Synthetic uint8 images and random actions: the
cost of an update does not depend on the data.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

import jax
import numpy as np

from lwd_learner.agent import Agent
from lwd_learner.config import LearnerConfig
from lwd_learner.replay import NormStats
from lwd_learner.sharding import data_mesh, replicate, shard_batch


def synthetic_batch(cfg: LearnerConfig, n: int, rng: np.random.Generator) -> dict:
    m = cfg.model
    h, w = m.encoder.image_size
    img = lambda: rng.integers(0, 256, (n, m.num_cameras, h, w, 3), dtype=np.uint8)  # noqa: E731
    return {
        "images": img(), "next_images": img(),
        "joint_pos": rng.normal(size=(n, m.num_joints)).astype(np.float32),
        "next_joint_pos": rng.normal(size=(n, m.num_joints)).astype(np.float32),
        "task_id": np.zeros(n, np.int32), "next_task_id": np.zeros(n, np.int32),
        "actions": rng.normal(size=(n, m.horizon, m.num_joints)).astype(np.float32),
        "ret": (rng.random(n) < 0.1).astype(np.float32), "done": (rng.random(n) < 0.05).astype(np.float32),
        "discount": np.full(n, cfg.divl.gamma ** m.horizon, np.float32),
        "success": np.zeros(n, np.float32), "intervention": np.zeros(n, np.float32),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=LearnerConfig().train.batch_size)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    cfg = LearnerConfig()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=args.batch_size))
    dev = jax.devices()[0]
    print(f"device: {dev.platform} {dev.device_kind} x{jax.device_count()}  batch {args.batch_size}  "
          f"image {cfg.model.encoder.image_size}  flow steps {cfg.qam.flow_steps}")
    agent = Agent(cfg)
    z = np.zeros(16, np.float32)
    state = agent.start_rl(agent.init(NormStats(z, z + 1, z, z + 1)))
    n_params = sum(x.size for x in jax.tree.leaves((state.policy, state.critic)))
    print(f"parameters: policy+critic {n_params / 1e6:.2f} M")
    mesh = data_mesh()
    state = replicate(state, mesh)
    rng = np.random.default_rng(0)
    batches = [shard_batch(synthetic_batch(cfg, args.batch_size, rng), mesh) for _ in range(4)]
    t0 = time.perf_counter()
    state, m = agent.rl_update(state, batches[0])
    jax.block_until_ready(m)
    print(f"compile + first step: {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    for i in range(args.steps):
        state, m = agent.rl_update(state, batches[i % len(batches)])
    jax.block_until_ready(m)
    dt = time.perf_counter() - t0
    print(f"DIVL+QAM updates/s: {args.steps / dt:.2f}  ({1000 * dt / args.steps:.0f} ms/update, "
          f"{args.batch_size * args.steps / dt:.0f} samples/s)")
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        print(f"peak device memory: {stats['peak_bytes_in_use'] / 2**20:.0f} MiB")
    print(f"peak host RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
