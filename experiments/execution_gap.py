"""Issue 27's acceptance check: held-out success through the actor's execution path (its default
scheduler, an inference delay) against whole chunks, for the same policies, paired by training seed.

    nice -n 10 ./lwd py experiments/execution_gap.py --policies runs/r27/s0/sft/policy.onnx \\
        runs/r27/s1/sft/policy.onnx runs/r27/s2/sft/policy.onnx --episodes 96 --delays 0 3 \\
        --out docs/results/execution_gap.jsonl

Each `--policies` graph is one training seed's policy, evaluated as the learner exports it (with
real-time-chunking inputs when it has them, which the actor then feeds): whole chunks with no delay
(the diagnostic the results table used to report), and the actor's execution with the actor's
default `SchedulerConfig` (merge, request_threshold) at each `--delays` value (ticks a chunk arrives
late). Every configuration of a policy sees the same held-out episodes (evaluation seed 12345) and
the same policy noise stream. The table gives per configuration the rate per seed, the mean over
seeds with a 95% t-interval, all episodes pooled (95% Wilson), and the difference to whole chunks
paired by seed (95% t-interval); "succeeded alone", success before the fleet's operator would have
taken over (`lwd_sim.env`); and the chunk-boundary jump (`chunk_stitching.py` defines it).
One JSON line per (policy, configuration) goes to `--out` as soon as it is done; a rerun skips what
is there, `--table` only prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from lwd_common.execution.scheduler import SchedulerConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chunk_stitching import evaluate_config  # noqa: E402
from sim_results import mean_ci, wilson  # noqa: E402

ACTOR_DEFAULT = SchedulerConfig()


def config_name(delay: int | None) -> str:
    return "whole chunks, no delay" if delay is None else f"actor defaults, delay {delay}"


def row_key(policy: Path, delay: int | None) -> str:
    return f"{policy}|{'whole' if delay is None else f'd{delay}'}"


def table(rows: dict[str, dict], policies: list[Path], delays: list[int | None]) -> str:
    lines = [
        f"{len(policies)} policies (one per training seed), {rows[next(iter(rows))]['episodes']} held-out episodes each; "
        f"actor defaults: merge {ACTOR_DEFAULT.merge.value}, request_threshold {ACTOR_DEFAULT.request_threshold}",
        "",
        "| execution | per seed | mean over seeds (95% t) | pooled (95% Wilson) | minus whole chunks, paired by seed (95% t) "
        "| succeeded alone, pooled | boundary jump mean / max (rad/s) | dry ticks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    whole = [rows[row_key(p, None)]["success_rate"] for p in policies if row_key(p, None) in rows]
    for d in delays:
        got = [rows[row_key(p, d)] for p in policies if row_key(p, d) in rows]
        if not got:
            continue
        rates = [r["success_rate"] for r in got]
        k, n = sum(r["successes"] for r in got), sum(r["episodes"] for r in got)
        lo, hi = wilson(k, n)
        mean, half = mean_ci(rates)
        diff = ""
        if d is not None and len(whole) == len(rates):
            dm, dh = mean_ci(list(np.asarray(rates) - np.asarray(whole)))
            diff = f"{dm:+.3f} ± {dh:.3f} (per seed {' / '.join(f'{x:+.2f}' for x in np.asarray(rates) - whole)})"
        jumps = sum(r["jump_mean"] * r["boundaries"] for r in got) / max(1, sum(r["boundaries"] for r in got))
        lines.append(
            f"| {config_name(d)} | {' / '.join(f'{x:.2f}' for x in rates)} | {mean:.3f} ± {half:.3f} "
            f"| {k / n:.3f} [{lo:.2f}, {hi:.2f}] ({k}/{n}) | {diff} "
            f"| {sum(r['alone_rate'] * r['episodes'] for r in got) / n:.3f} "
            f"| {jumps:.2f} / {max(r['jump_max'] for r in got):.2f} | {sum(r['dry_ticks'] for r in got)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--policies", type=Path, nargs="+", required=True, help="one ONNX policy per training seed"
    )
    ap.add_argument("--task", default="can_to_bin")
    ap.add_argument("--episodes", type=int, default=96)
    ap.add_argument("--num-envs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=12345, help="evaluation seed (the held-out episodes)")
    ap.add_argument("--delays", nargs="+", type=int, default=[0, 3], help="inference delays to check, ticks")
    ap.add_argument(
        "--whole",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also evaluate whole chunks (the reference; --no-whole when another run of the same parameters has it)",
    )
    ap.add_argument(
        "--out", type=Path, required=True, help="JSON lines, one per policy and execution (resumable)"
    )
    ap.add_argument("--table", action="store_true", help="only print the table of what --out holds")
    args = ap.parse_args(argv)
    if any(d < 0 for d in args.delays):
        ap.error("--delays must be >= 0")
    missing = [str(p) for p in args.policies if not p.is_file()]
    if missing and not args.table:
        ap.error(f"no policy file: {', '.join(missing)}")
    rows: dict[str, dict] = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows[r["row_key"]] = r
    delays: list[int | None] = [None, *args.delays] if args.whole else list(args.delays)
    todo = [(p, d) for d in delays for p in args.policies]  # whole chunks for every seed first
    if not args.table:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        merge = ACTOR_DEFAULT.merge.value  # chunk_stitching names its methods by merge mode
        t0 = time.monotonic()
        for n, (policy, d) in enumerate(todo, 1):
            k = row_key(policy, d)
            if k in rows:
                print(f"[{n}/{len(todo)}] {k}: already in {args.out}", flush=True)
                continue
            r = evaluate_config(
                policy,
                "whole" if d is None else merge,
                0 if d is None else d,
                ACTOR_DEFAULT.request_threshold,
                args.task,
                args.episodes,
                args.num_envs,
                args.seed,
                require_rtc=False,
            )
            r["row_key"] = k
            rows[k] = r
            with args.out.open("a") as f:
                f.write(json.dumps(r) + "\n")
            print(
                f"[{n}/{len(todo)}] {k}: success {r['success_rate']:.2f} ({r['successes']}/{r['episodes']}), "
                f"boundary jump mean {r['jump_mean']:.2f} rad/s ({r['wall_s']:.0f} s, {time.monotonic() - t0:.0f} s total)",
                flush=True,
            )
    if rows:
        print(table(rows, args.policies, delays))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
