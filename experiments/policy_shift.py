"""How far each RL policy's actions moved from its SFT reference: same observations, same noise.

    python experiments/policy_shift.py --work runs/results2 [--seeds 0 1 2] [--extra NAME=RUN_DIR ...]

For every seed of a results work directory (experiments/sim_results.py), samples one
action chunk from the SFT policy and from each RL policy on the initial observations of
4 held-out episodes per task (the same noise for all) and prints mean and max |delta a|
in radians. A policy that RL did not move scores near 0, whatever its success rate says.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lwd_sim.env import LwdSimEnv
from lwd_sim.evaluate_policy import OnnxChunkPolicy

RL_POLICIES = {
    "LWD offline": "offline0/policy.onnx",
    "Expectile + QAM": "offline1/policy.onnx",
    "Constant tau + QAM": "offline2/policy.onnx",
    "LWD online": "online_policy.onnx",
}


def initial_observations(tasks: list[str], per_task: int, image_size: int) -> dict[str, np.ndarray]:
    obs = []
    for task in tasks:
        env = LwdSimEnv(task, image_size, seed=0)
        obs += [env.reset(seed=900 + k)[0] for k in range(per_task)]
        env.close()
    return {k: np.stack([o[k] for o in obs]) for k in obs[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tasks", nargs="+", default=["can_to_bin", "drawer_restock"])
    ap.add_argument(
        "--extra",
        nargs="*",
        default=[],
        metavar="NAME=RUN_DIR",
        help="more runs (with policy.onnx) compared against the first seed's SFT policy",
    )
    args = ap.parse_args(argv)
    for seed in args.seeds:
        w = args.work / f"seed{seed}"
        sft = OnnxChunkPolicy(w / "sft" / "policy.onnx", seed=7)
        batch = initial_observations(args.tasks, 4, sft.image_size[0])
        ref = sft(batch)
        runs = {name: w / rel for name, rel in RL_POLICIES.items()}
        if seed == args.seeds[0]:
            runs.update({k: Path(v) / "policy.onnx" for k, v in (e.split("=", 1) for e in args.extra)})
        for name, path in runs.items():
            if not path.exists():
                print(f"seed {seed} {name:20s} missing: {path}")
                continue
            d = np.abs(OnnxChunkPolicy(path, seed=7)(batch) - ref)
            print(f"seed {seed} {name:20s} mean |da| {d.mean():.5f} rad   max |da| {d.max():.4f} rad")
    return 0


if __name__ == "__main__":
    sys.exit(main())
