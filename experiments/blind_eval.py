"""Does a policy use its cameras? Held-out success with the real frames against the same episodes
with every frame replaced by one fixed frame.

    ./lwd py experiments/blind_eval.py runs/results3/seed0/sft/policy.onnx --episodes 96

The fixed frame is each environment's first observation of the run (a real scene, so the encoder
sees in-distribution pixels that say nothing about the current episode). If success does not drop
when the policy is blinded this way, it acts on joint positions and the instruction alone: its
ceiling is then set by what those determine, not by data or training steps. Chunks are executed
whole (`--execute-steps` rows, no delay): the fixed frames are per environment, and only whole-chunk
execution asks every environment at once (actor execution asks for a subset).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lwd_sim.env import EXECUTION_WHOLE_CHUNKS, execution_label
from lwd_sim.evaluate_policy import OnnxChunkPolicy, evaluate_policy


class BlindedPolicy(OnnxChunkPolicy):
    """The policy fed the first frames it ever saw, for every later observation."""

    def __init__(self, path: Path, seed: int):
        super().__init__(path, seed)
        self.fixed: np.ndarray | None = None

    def __call__(self, obs: dict[str, np.ndarray], prefix=None, prefix_len=None, delay=None) -> np.ndarray:
        if self.fixed is None:
            self.fixed = obs["images"].copy()
        return super().__call__({**obs, "images": self.fixed}, prefix, prefix_len, delay)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("policy", type=Path)
    ap.add_argument("--task", default="can_to_bin")
    ap.add_argument("--episodes", type=int, default=96)
    ap.add_argument("--execute-steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=12345, help="evaluation seed (12345: the results table's)")
    args = ap.parse_args(argv)
    if not args.policy.exists():
        ap.error(f"no policy at {args.policy}")

    def success(policy: OnnxChunkPolicy) -> float:
        return evaluate_policy(
            policy,
            args.task,
            args.episodes,
            execute_steps=args.execute_steps,
            seed=args.seed,
            execution=EXECUTION_WHOLE_CHUNKS,
        ).success_rate

    seeing = success(OnnxChunkPolicy(args.policy, args.seed))
    blind = success(BlindedPolicy(args.policy, args.seed))
    print(
        f"{args.policy}: {args.task}, {args.episodes} episodes "
        f"({execution_label(EXECUTION_WHOLE_CHUNKS, args.execute_steps, 0)}): "
        f"success {seeing:.2f} seeing, {blind:.2f} blinded"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
