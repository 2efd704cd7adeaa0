"""Latency of one action-chunk inference (batch 1) of the default policy: ONNX Runtime vs JAX jit.

    .venv/bin/python benchmarks/policy_inference.py [--runs 50]

Same parameters and noise for both; prints median / p90 milliseconds and the max difference.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import onnxruntime as ort

from lwd_learner.agent import Agent
from lwd_learner.config import LearnerConfig
from lwd_learner.export_onnx import export_policy
from lwd_learner.replay import NormStats


def timeit(fn, runs: int) -> np.ndarray:
    fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t0))
    return np.asarray(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0 = default)")
    args = ap.parse_args()
    cfg = LearnerConfig()
    agent = Agent(cfg)
    z = np.zeros(16, np.float32)
    state = agent.init(NormStats(z, z + 1, z, z + 1))
    policy = jax.tree.map(
        lambda x: x + 0.02 * np.asarray(jax.random.normal(jax.random.PRNGKey(1), x.shape)), state.policy
    )
    model = export_policy(policy, state.norm, cfg.model, ["<unknown>", "task"], cfg.qam.flow_steps)
    so = ort.SessionOptions()
    if args.threads:
        so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    h, w = cfg.model.encoder.image_size
    rng = np.random.default_rng(0)
    feeds = {
        "images": rng.integers(0, 256, (1, 3, h, w, 3), dtype=np.uint8),
        "joint_pos": rng.normal(size=(1, 16)).astype(np.float32),
        "task_id": np.array([1], np.int64),
        "noise": rng.normal(size=(1, 30, 16)).astype(np.float32),
    }
    print(
        f"default policy: image {h}x{w}x3 cameras, {cfg.qam.flow_steps} flow steps, "
        f"hidden {cfg.model.policy.hidden}; "
        f"JAX on {jax.devices()[0].device_kind}"
    )
    ort_ms = timeit(lambda: sess.run(None, feeds), args.runs)
    jfeeds = (feeds["images"], feeds["joint_pos"], feeds["task_id"].astype(np.int32), feeds["noise"])

    def jax_run():
        return jax.block_until_ready(
            agent.sample_actions(policy, state.norm, *jfeeds, steps=cfg.qam.flow_steps)
        )

    jax_ms = timeit(jax_run, args.runs)
    diff = np.abs(sess.run(None, feeds)[0] - np.asarray(jax_run())).max()
    for name, ms in (("onnxruntime", ort_ms), ("jax jit", jax_ms)):
        print(f"{name:12s} median {np.median(ms):7.2f} ms   p90 {np.percentile(ms, 90):7.2f} ms")
    print(f"max |onnx - jax| = {diff:.2e}")


if __name__ == "__main__":
    main()
