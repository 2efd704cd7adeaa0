"""Evaluate an exported ONNX policy (or the scripted expert) on the simulator, without ROS.

    python -m lwd_sim.evaluate_policy --policy run/policy.onnx --task can_to_bin --episodes 20 [--num-envs 4]
    python -m lwd_sim.evaluate_policy --policy expert --task grocery_pick_place --episodes 20

Chunks are executed as the robot's actor executes them (`--execution actor`, the default: the
actor's own scheduler, `lwd_common.execution.chunk_execution`, each chunk arriving `--delay-ticks` late)
or, as a diagnostic, whole (`--execution whole-chunks`: the first `--execute-steps` rows of each
chunk, no inference delay; the scripted expert always runs so). Every result names its execution.

The ONNX model follows `lwd_common.policy_io` (images [B,3,H,W,3] uint8, joint_pos, task_id,
noise -> actions [B,30,16]); camera frames are rendered at the model's H x W and prepared by
`lwd_common.preprocessing` (JPEG round trip at the recording quality), so the policy sees the
pixels it was trained on. Prints one line per task and a final JSON line {success_rate, mean_score, episodes, ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from lwd_common.policy_io import (
    INPUT_IMAGES,
    INPUT_JOINT_POS,
    INPUT_NOISE,
    INPUT_TASK_ID,
    OUTPUT_ACTIONS,
    PolicySignature,
    read_signature,
    rtc_feeds,
)
from lwd_common.preprocessing import JPEG_QUALITY, policy_batch
from lwd_description.robot import CHUNK_HORIZON, NUM_JOINTS
from lwd_sim.env import (
    DEFAULT_DELAY_TICKS,
    EXECUTION_ACTOR,
    EXECUTION_WHOLE_CHUNKS,
    EXECUTIONS,
    EvalResult,
    VecEnv,
    evaluate,
    expert_chunk_policy,
)
from lwd_sim.expert import DEMO, HISTORICAL
from lwd_sim.tasks import ALL_INSTRUCTIONS, TASKS


class OnnxChunkPolicy:
    """An lwd ONNX policy as a chunk policy over `VecEnv` observations (CPU execution provider).

    `jpeg_quality` is that of the frames the policy is trained on (what a recorder would store)."""

    def __init__(self, path: str | Path, seed: int = 0, threads: int = 1, jpeg_quality: int = JPEG_QUALITY):
        import onnx
        import onnxruntime as ort

        self.signature: PolicySignature = read_signature(onnx.load(str(path), load_external_data=False))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.rng = np.random.default_rng(seed)
        self.jpeg_quality = jpeg_quality

    @property
    def image_size(self) -> tuple[int, int]:
        return self.signature.image_height, self.signature.image_width

    @property
    def rtc(self) -> bool:
        """The policy takes a prefix (real-time chunking)."""
        return self.signature.rtc

    def __call__(self, obs: dict[str, np.ndarray], prefix=None, prefix_len=None, delay=None) -> np.ndarray:
        """Chunks [B, H, J] for a batch of observations. A real-time-chunking policy (`rtc`) also
        takes `prefix` [B, n, J] (absolute targets already planned for the chunks' first n steps),
        `prefix_len` and `delay` (scalars or [B]; `lwd_common.policy_io.rtc_feeds`); others ignore them."""
        images = obs["images"]
        if images.shape[2:4] != self.image_size:
            raise ValueError(f"images are {images.shape[2:4]}, the policy wants {self.image_size}")
        batch = images.shape[0]
        task_ids = np.array(
            [self.signature.task_id(ALL_INSTRUCTIONS[int(t)]) for t in obs["task_id"]], np.int64
        )
        feeds = {
            INPUT_IMAGES: policy_batch(images, self.image_size, self.jpeg_quality),
            INPUT_JOINT_POS: obs["joint_pos"].astype(np.float32),
            INPUT_TASK_ID: task_ids,
            INPUT_NOISE: self.rng.standard_normal((batch, CHUNK_HORIZON, NUM_JOINTS)).astype(np.float32),
        }
        if self.rtc:
            feeds.update(rtc_feeds(CHUNK_HORIZON, NUM_JOINTS, batch, prefix, prefix_len, delay))
        (actions,) = self.session.run([OUTPUT_ACTIONS], feeds)
        if not np.isfinite(actions).all():
            raise ValueError("policy produced NaN/inf actions")
        return actions


def evaluate_policy(
    policy: str | OnnxChunkPolicy,
    task: str,
    episodes: int,
    num_envs: int = 4,
    image_size: int = 64,
    execute_steps: int = CHUNK_HORIZON,
    seed: int = 0,
    time_limit_s: float | None = None,
    execution: str = EXECUTION_ACTOR,
    delay_ticks: int = DEFAULT_DELAY_TICKS,
) -> EvalResult:
    """`policy` is an ONNX path, 'expert', 'expert-historical' or a loaded (possibly wrapped)
    OnnxChunkPolicy; `time_limit_s` overrides the task's limit. `execution` (`env.EXECUTIONS`):
    'actor' with `delay_ticks`, or 'whole_chunks' with `execute_steps`; the scripted expert runs
    whole chunks whatever is asked (its result says so)."""
    if execution not in EXECUTIONS:
        raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    num_envs = max(1, min(num_envs, episodes))
    per_env = -(-episodes // num_envs)
    if policy in ("expert", "expert-historical"):
        vec = VecEnv(task, num_envs, image_size, seed=seed, render=False, time_limit_s=time_limit_s)
        try:
            fn, on_reset = expert_chunk_policy(
                vec, DEMO if policy == "expert" else HISTORICAL, seed=seed, execute_steps=execute_steps
            )
            return evaluate(vec, fn, per_env, execute_steps, on_reset, EXECUTION_WHOLE_CHUNKS)
        finally:
            vec.close()
    onnx_policy = policy if isinstance(policy, OnnxChunkPolicy) else OnnxChunkPolicy(policy, seed)
    vec = VecEnv(task, num_envs, onnx_policy.image_size, seed=seed, time_limit_s=time_limit_s)
    try:
        return evaluate(vec, onnx_policy, per_env, execute_steps, None, execution, delay_ticks)
    finally:
        vec.close()


def execution_fields(r: EvalResult) -> dict:
    """How a result's chunks were executed, for written results."""
    fields: dict = {"execution": r.execution, "execution_label": r.label}
    if r.execution == EXECUTION_ACTOR:
        fields.update(delay_ticks=r.delay_ticks, dry_ticks=r.dry_ticks)
    else:
        fields.update(execute_steps=r.execute_steps)
    return fields


def add_execution_args(
    ap: argparse.ArgumentParser, execute_steps_default: int | None = CHUNK_HORIZON
) -> None:
    """--execution / --delay-ticks / --execute-steps: how held-out chunks are executed (`env.evaluate`),
    the same flags in every script that evaluates; parse `args.execution` with `.replace("-", "_")`."""
    ap.add_argument(
        "--execution",
        choices=[e.replace("_", "-") for e in EXECUTIONS],
        default=EXECUTION_ACTOR,
        help="actor: the actor's scheduler with --delay-ticks (default); whole-chunks: --execute-steps "
        "rows of each chunk, no delay (a diagnostic; the expert always runs so)",
    )
    ap.add_argument(
        "--delay-ticks",
        type=int,
        default=DEFAULT_DELAY_TICKS,
        help=f"actor execution: control ticks each chunk arrives late for its row 0 (default {DEFAULT_DELAY_TICKS}: "
        "inference within one tick)",
    )
    ap.add_argument(
        "--execute-steps",
        type=int,
        default=execute_steps_default,
        help=f"whole-chunks execution: rows of each chunk executed (default {execute_steps_default or CHUNK_HORIZON})",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Evaluate an lwd ONNX policy (or the expert) on the simulator.")
    ap.add_argument("--policy", required=True, help="policy.onnx, 'expert' or 'expert-historical'")
    ap.add_argument("--task", nargs="+", default=["can_to_bin"], choices=sorted(TASKS))
    ap.add_argument("--episodes", type=int, default=20, help="per task")
    ap.add_argument("--num-envs", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=64, help="expert only; ONNX policies set their own")
    add_execution_args(ap)
    ap.add_argument(
        "--seed", type=int, default=12345, help="evaluation seed (keep it apart from training seeds)"
    )
    ap.add_argument(
        "--time-limit-s", type=float, default=None, help="episode limit (default: each task's own)"
    )
    args = ap.parse_args(argv)
    if args.episodes < 1 or not 1 <= args.execute_steps <= CHUNK_HORIZON:
        ap.error("--episodes must be >= 1 and --execute-steps in 1..30")
    if args.time_limit_s is not None and args.time_limit_s <= 0:
        ap.error("--time-limit-s must be > 0")
    if args.delay_ticks < 0:
        ap.error("--delay-ticks must be >= 0")
    execution = args.execution.replace("-", "_")
    if args.policy not in ("expert", "expert-historical") and not Path(args.policy).is_file():
        ap.error(f"no policy file {args.policy}")
    summary = {"policy": args.policy, "tasks": {}}
    successes, scores, total = 0.0, 0.0, 0
    for task in args.task:
        t0 = time.perf_counter()
        r = evaluate_policy(
            args.policy,
            task,
            args.episodes,
            args.num_envs,
            args.image_size,
            args.execute_steps,
            args.seed,
            args.time_limit_s,
            execution,
            args.delay_ticks,
        )
        print(
            f"{task:20s} success {r.success_rate:.2f}  score {r.mean_score:.2f}  cycle {r.mean_cycle_time_s:5.1f} s  "
            f"episodes {r.episodes}  dry ticks {r.dry_ticks}  [{r.label}]  ({time.perf_counter() - t0:.1f} s)"
        )
        summary["tasks"][task] = {
            "success_rate": r.success_rate,
            "mean_score": r.mean_score,
            "episodes": r.episodes,
            "mean_steps": r.mean_steps,
            "mean_cycle_time_s": r.mean_cycle_time_s,
            **execution_fields(r),
        }
        successes += r.success_rate * r.episodes
        scores += r.mean_score * r.episodes
        total += r.episodes
    summary.update(success_rate=successes / total, mean_score=scores / total, episodes=total)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
