"""Re-evaluate some methods of a finished results run with more episodes, paired by seed.

    python experiments/paired_eval.py --work runs/results3 --seeds 0 1 2 --episodes 96 \
        --methods "SFT (BC reference)" "LWD online, BC-trained reference" "HG-DAgger (fleet + interventions)"

The results table's 24 episodes per seed leave an evaluation noise of about ±0.2 on each seed's
rate, which hides any gain below that. This evaluates the policies `sim_results.py` left in `--work`
on more held-out episodes (the same evaluation seed, so the first 24 are the table's), and reports
per method: the rate per seed, the mean over seeds with its 95% t-interval, all episodes pooled
with a 95% Wilson interval, and, against the first method, the per-seed difference (the same seed
shares its offline data and SFT checkpoint) with its 95% t-interval. Chunks are executed as the
robot's actor does (`--execution actor`, default, `--delay-ticks`) or whole (`--execution
whole-chunks`, `--execute-steps` rows, no delay); the table names which. Evaluations are cached next
to each policy (`<policy>.eval-<task>-<N>ep-<actor-dD|Rrows>.json`, shared with `sim_results.py`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sim_results import evaluate_task, mean_ci, stage_policies, wilson

from lwd_sim.env import execution_label
from lwd_sim.evaluate_policy import add_execution_args


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="sim_results.py's --work directory")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--methods", nargs="+", required=True, help="method names as in results.md; the first is the baseline"
    )
    ap.add_argument("--task", default="can_to_bin")
    ap.add_argument("--episodes", type=int, default=96)
    add_execution_args(ap)
    args = ap.parse_args(argv)
    execution = args.execution.replace("-", "_")
    label = execution_label(execution, args.execute_steps, args.delay_ticks)
    rates: dict[str, list[float]] = {}
    for method in args.methods:
        rates[method] = []
        for seed in args.seeds:
            policy = stage_policies(args.work, seed).get(method)
            if policy is None or not policy.exists():
                ap.error(
                    f"no policy for {method!r} of seed {seed} in {args.work} (known: {list(stage_policies(args.work, seed))})"
                )
            rate = evaluate_task(
                policy, args.task, args.episodes, args.execute_steps, None, execution, args.delay_ticks
            )["success"]
            rates[method].append(rate)
            print(f"seed {seed} {method}: {rate:.3f} ({label})", flush=True)
    base = np.asarray(rates[args.methods[0]])
    print(f"\n{args.task}, {args.episodes} episodes per policy and seed, seeds {args.seeds}, {label}\n")
    print(
        "| method | per seed | mean over seeds (95% t) | pooled episodes (95% Wilson) | minus the first, paired by seed (95% t) |"
    )
    print("|---|---|---|---|---|")
    for method, r in rates.items():
        mean, half = mean_ci(r)
        k = round(sum(r) * args.episodes)
        lo, hi = wilson(k, args.episodes * len(r))
        diff = (
            ""
            if method == args.methods[0]
            else "{:+.2f} ± {:.2f}".format(*mean_ci(list(np.asarray(r) - base)))
        )
        per_seed = " / ".join(f"{x:.2f}" for x in r)
        print(
            f"| {method} | {per_seed} | {mean:.2f} ± {half:.2f} | {k / (args.episodes * len(r)):.2f} [{lo:.2f}, {hi:.2f}] | {diff} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
