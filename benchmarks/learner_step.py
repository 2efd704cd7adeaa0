"""Learner throughput: the update alone (microbenchmark) and, with --store, the real training
loop's data path beside it at the same batch size, plus the frozen-encoder path.

    .venv/bin/python benchmarks/learner_step.py [--batch-size 64] [--steps 20]
    .venv/bin/python benchmarks/learner_step.py --store runs/store_can --replay device host --frozen

Rows (updates/s):
- micro BC / micro DIVL+QAM: pre-sharded synthetic batches, nothing but the jitted update;
- real <replay> BC / DIVL+QAM: `lwd_learner.batches.Batches.update` on the store's episodes,
  exactly what the training loop calls each step (device: replay resident on the accelerator and
  sampled inside the jit; host: numpy gather + transfer per step);
- frozen BC / DIVL+QAM: the same real loop after the image backbone is frozen (heads on cached
  features, `--encoder-steps` in the CLI).
Prints the device kind; on a GPU also peak device memory and the mean GPU utilisation over the
timed real-loop runs (nvidia-smi, when present).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import subprocess
import time

import jax
import numpy as np

from lwd_learner.agents import BaseAgent, make_agent
from lwd_learner.batches import Batches
from lwd_learner.config import LearnerConfig
from lwd_learner.replay import NormStats, StoreReader, Vocab
from lwd_learner.sharding import data_mesh, replicate, shard_batch
from lwd_learner.train import decode_episodes


def synthetic_batch(cfg: LearnerConfig, n: int, rng: np.random.Generator) -> dict:
    m = cfg.model
    h, w = m.encoder.image_size
    img = lambda: rng.integers(0, 256, (n, m.num_cameras, h, w, 3), dtype=np.uint8)  # noqa: E731
    return {
        "images": img(),
        "next_images": img(),
        "joint_pos": rng.normal(size=(n, m.num_joints)).astype(np.float32),
        "next_joint_pos": rng.normal(size=(n, m.num_joints)).astype(np.float32),
        "task_id": np.zeros(n, np.int32),
        "next_task_id": np.zeros(n, np.int32),
        "actions": rng.normal(size=(n, m.horizon, m.num_joints)).astype(np.float32),
        "ret": (rng.random(n) < 0.1).astype(np.float32),
        "done": (rng.random(n) < 0.05).astype(np.float32),
        "discount": np.full(n, cfg.divl.gamma**m.horizon, np.float32),
        "success": np.zeros(n, np.float32),
        "intervention": np.zeros(n, np.float32),
    }


def timed(step, steps: int) -> tuple[float, float]:
    """(seconds for the first call incl. compile, updates/s over `steps` further calls)."""
    t0 = time.perf_counter()
    jax.block_until_ready(step())
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = None
    for _ in range(steps):
        out = step()
    jax.block_until_ready(out)
    return first, steps / (time.perf_counter() - t0)


class GpuUtilisation:
    """Mean utilisation.gpu from `nvidia-smi -lms 200` while the context is open (None without it)."""

    def __enter__(self):
        self.proc = None
        if shutil.which("nvidia-smi") and jax.devices()[0].platform == "gpu":
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE,
                text=True,
            )
        return self

    def __exit__(self, *exc):
        self.mean = None
        if self.proc is not None:
            self.proc.terminate()
            vals = [float(v) for v in self.proc.communicate()[0].split() if v.replace(".", "").isdigit()]
            self.mean = float(np.mean(vals)) if vals else None


def report(
    name: str, first: float, rate: float, batch: int, ref: float | None = None, util: float | None = None
):
    extra = f"  {rate / ref:.2f}x micro" if ref else ""
    extra += f"  GPU util {util:.0f}%" if util is not None else ""
    print(
        f"{name:28s} {rate:8.2f} updates/s  {1000 / rate:7.1f} ms  {batch * rate:8.0f} samples/s  "
        f"(first call {first:.1f} s){extra}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=LearnerConfig().train.batch_size)
    ap.add_argument("--steps", type=int, default=20, help="timed updates per row")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--pool", choices=["mean", "spatial"], default=LearnerConfig().model.encoder.pool)
    ap.add_argument("--store", help="episode store: also time the real loop's data path on it")
    ap.add_argument("--replay", nargs="+", choices=["device", "host"], default=["device"])
    ap.add_argument("--frozen", action="store_true", help="also time the frozen-encoder path (needs --store)")
    args = ap.parse_args()
    cfg = LearnerConfig()
    enc = dataclasses.replace(
        cfg.model.encoder, image_size=(args.image_size, args.image_size), pool=args.pool
    )
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, encoder=enc),
        train=dataclasses.replace(cfg.train, batch_size=args.batch_size),
    )
    dev = jax.devices()[0]
    print(
        f"device: {dev.platform} {dev.device_kind} x{jax.device_count()}  batch {args.batch_size}  "
        f"image {cfg.model.encoder.image_size}  pool {args.pool}  flow steps {cfg.qam.flow_steps}"
    )
    agent = make_agent(cfg)
    z = np.zeros(16, np.float32)
    stats = NormStats(z, z + 1, z, z + 1)
    state = agent.init(stats)
    n_params = sum(x.size for x in jax.tree.leaves((state.policy, state.critic)))
    print(f"parameters: policy+critic {n_params / 1e6:.2f} M")
    mesh = data_mesh()

    def fresh(a: BaseAgent, bc: bool):  # BC updates start from init, DIVL+QAM from a BC-finished state
        s = a.init(stats)
        return replicate(s if bc else a.start_rl(s), mesh)

    holder = {}
    rng = np.random.default_rng(0)
    batches = [shard_batch(synthetic_batch(cfg, args.batch_size, rng), mesh) for _ in range(4)]
    micro = {}
    for name, fn in (("BC", agent.bc_update), ("DIVL+QAM", agent.rl_update)):
        i = iter(range(10**9))
        holder["state"] = fresh(agent, name == "BC")

        def step(fn=fn, i=i):
            holder["state"], m = fn(holder["state"], batches[next(i) % len(batches)])
            return m

        first, micro[name] = timed(step, args.steps)
        report(f"micro {name}", first, micro[name], args.batch_size)

    if args.store:
        episodes = StoreReader(args.store).poll()
        if not episodes:
            raise SystemExit(f"no episodes in a snapshot of {args.store}")
        vocab = Vocab([e.meta.instruction for e in episodes])
        arrays = decode_episodes(episodes, vocab, cfg)
        print(f"store: {len(arrays)} episodes, {sum(len(a.actions) for a in arrays)} steps")
        runs = [(r, False) for r in args.replay] + ([(args.replay[0], True)] if args.frozen else [])
        for replay, frozen in runs:
            rcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, replay=replay))
            ragent = make_agent(rcfg)
            src = Batches(rcfg, ragent, mesh)
            src.add(decode_episodes(episodes, vocab, rcfg))
            label = "frozen" if frozen else f"real {replay}"
            for name, bc in (("BC", True), ("DIVL+QAM", False)):
                holder["state"] = fresh(ragent, bc)
                if frozen:
                    holder["state"] = src.freeze(holder["state"])

                def step(bc=bc, src=src):
                    holder["state"], m = src.update(holder["state"], "bc" if bc else "rl")
                    return m

                jax.block_until_ready(step())  # compile outside the utilisation window
                with GpuUtilisation() as util:
                    first, rate = timed(step, args.steps)
                report(f"{label} {name}", first, rate, args.batch_size, micro[name], util.mean)
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        print(f"peak device memory: {stats['peak_bytes_in_use'] / 2**20:.0f} MiB")
    print(f"peak host RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
