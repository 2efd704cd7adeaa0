"""Latency of one action-chunk inference (batch 1) of the default policy: ONNX Runtime vs JAX jit,
each as the plain sampler and with real-time chunking (a prefix: one extra VJP of the flow head per
Euler step).

    .venv/bin/python benchmarks/policy_inference.py [--runs 50] [--threads 1]

Same parameters, noise and prefix for all, the variants alternated run by run; prints min / median /
p90 wall milliseconds and the median process CPU time (all threads), and the max differences
between ONNX and JAX.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import onnxruntime as ort

from lwd_common import policy_io
from lwd_learner.agents import make_agent
from lwd_learner.config import LearnerConfig
from lwd_learner.export_onnx import export_policy
from lwd_learner.replay import NormStats


def timeit(fns: dict, runs: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Wall and process-CPU milliseconds per call of each function, the functions alternated run by
    run (a change in the machine's load shifts them alike; CPU time leaves out time spent preempted)."""
    for fn in fns.values():
        fn()
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            out[name][0].append(1000 * (time.perf_counter() - t0))
            out[name][1].append(1000 * (time.process_time() - c0))
    return {name: (np.asarray(wall), np.asarray(cpu)) for name, (wall, cpu) in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0 = default)")
    args = ap.parse_args()
    cfg = LearnerConfig()
    agent = make_agent(cfg)
    z = np.zeros(16, np.float32)
    state = agent.init(NormStats(z, z + 1, z, z + 1))
    policy = jax.tree.map(
        lambda x: x + 0.02 * np.asarray(jax.random.normal(jax.random.PRNGKey(1), x.shape)), state.policy
    )
    export = lambda rtc: export_policy(  # noqa: E731
        policy, state.norm, cfg.model, ["<unknown>", "task"], cfg.qam.flow_steps, rtc=rtc
    )
    so = ort.SessionOptions()
    if args.threads:
        so.intra_op_num_threads = args.threads
    plain_sess, rtc_sess = (
        ort.InferenceSession(export(rtc).SerializeToString(), so, providers=["CPUExecutionProvider"])
        for rtc in (False, True)
    )
    h, w = cfg.model.encoder.image_size
    rng = np.random.default_rng(0)
    feeds = {
        "images": rng.integers(0, 256, (1, 3, h, w, 3), dtype=np.uint8),
        "joint_pos": rng.normal(size=(1, 16)).astype(np.float32),
        "task_id": np.array([1], np.int64),
        "noise": rng.normal(size=(1, 30, 16)).astype(np.float32),
    }
    # A prefix as the actor feeds it: the old chunk's 20 remaining rows, 3 of them executed before
    # the new chunk arrives.
    prefix = rng.normal(size=(20, 16)).astype(np.float32)
    prefix_feeds = {**feeds, **policy_io.rtc_feeds(30, 16, 1, prefix, 20, 3)}
    no_prefix_feeds = {**feeds, **policy_io.rtc_feeds(30, 16, 1)}  # prefix_len 0: the same cost
    print(
        f"default policy: image {h}x{w}x3 cameras, {cfg.qam.flow_steps} flow steps, "
        f"hidden {cfg.model.policy.hidden}; ORT threads {args.threads or 'default'}; "
        f"JAX on {jax.devices()[0].device_kind}"
    )
    jfeeds = (feeds["images"], feeds["joint_pos"], feeds["task_id"].astype(np.int32), feeds["noise"])
    jrtc = {
        "prefix": prefix_feeds["prefix"],
        "prefix_len": prefix_feeds["prefix_len"].astype(np.int32),
        "delay": prefix_feeds["delay"].astype(np.int32),
    }

    def jax_run(rtc: bool):
        return jax.block_until_ready(
            agent.sample_actions(
                policy, state.norm, *jfeeds, steps=cfg.qam.flow_steps, **(jrtc if rtc else {})
            )
        )

    rows = {
        "onnxruntime plain graph": lambda: plain_sess.run(None, feeds),
        "onnxruntime RTC graph, no prefix": lambda: rtc_sess.run(None, no_prefix_feeds),
        "onnxruntime RTC graph, prefix": lambda: rtc_sess.run(None, prefix_feeds),
        "jax jit plain": lambda: jax_run(False),
        "jax jit RTC, prefix": lambda: jax_run(True),
    }
    for name, (ms, cpu) in timeit(rows, args.runs).items():
        print(
            f"{name:34s} wall: min {ms.min():6.2f} median {np.median(ms):6.2f} p90 "
            f"{np.percentile(ms, 90):6.2f} ms; CPU median {np.median(cpu):6.2f} ms"
        )
    plain_diff = np.abs(plain_sess.run(None, feeds)[0] - np.asarray(jax_run(False))).max()
    rtc_diff = np.abs(rtc_sess.run(None, prefix_feeds)[0] - np.asarray(jax_run(True))).max()
    print(f"max |onnx - jax|: plain {plain_diff:.2e}, RTC {rtc_diff:.2e}")


if __name__ == "__main__":
    main()
