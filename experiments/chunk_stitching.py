"""Chunk stitching compared on the same held-out episodes (issue 27): success and chunk-boundary
smoothness of each way the actor can stitch overlapping chunks, by inference delay and
request_threshold, through the actor's own execution path (`lwd_sim.env.evaluate`,
execution "actor", `lwd_common.execution.chunk_execution`).

Methods:
  replace   the plain graph, SchedulerConfig(merge="replace"): the newer chunk wins
  blend     the plain graph, merge="blend" (linear cross-fade over blend_steps)
  ensemble  the plain graph, merge="ensemble" (ACT temporal ensembling, ensemble_decay)
  rtc       the real-time-chunking graph, merge="replace": the new chunk is inferred with the
            rows that will run before it arrives frozen (prefix/prefix_len/delay inputs)
  whole     reference, not an actor setting: whole chunks of 30 rows, each inferred on the
            observation it starts at, no delay (delay and threshold do not apply)

Smoothness (`lwd_sim.env.boundary_jumps`): the commanded velocity into tick t is
v[t] = (x[t] - x[t-1]) * 30 (x: the executed joint targets, 30 Hz); its jump at tick t is the
largest over the 14 arm joints of |v[t] - v[t-1]|, in rad/s. A chunk boundary is a tick whose
target comes from another chunk than the tick before's (a new chunk's first executed row takes
over; the episode's first chunk is not one). "jump mean" / "jump max" are over every boundary of
every episode; "any-tick max" is the largest jump at any tick of any episode (it also sees where
an old chunk stops contributing to a blend or an ensemble); "within-chunk mean" is the mean jump at
the other ticks (per episode, then over episodes): the policy's own roughness, for scale.

Each configuration is appended to --out as one JSON line as soon as it is done (a rerun skips the
configurations already there); the table is printed at the end, or alone with --table.

    nice -n 10 ./lwd py experiments/chunk_stitching.py --plain plain.onnx --rtc rtc.onnx \\
        --episodes 48 --out runs/chunk_stitching.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from lwd_common.execution.scheduler import MergeMode, SchedulerConfig
from lwd_sim.env import EXECUTION_ACTOR, EXECUTION_WHOLE_CHUNKS, VecEnv, evaluate
from lwd_sim.evaluate_policy import OnnxChunkPolicy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_results import wilson  # noqa: E402

METHODS = ("replace", "blend", "ensemble", "rtc")
MERGE = {
    "replace": MergeMode.REPLACE,
    "blend": MergeMode.BLEND,
    "ensemble": MergeMode.ENSEMBLE,
    "rtc": MergeMode.REPLACE,
}


def configs(methods: list[str], delays: list[int], thresholds: list[int]) -> list[tuple[str, int, int]]:
    """(method, delay, threshold), the reference first, then threshold by threshold and delay by
    delay, so that a cut run has the first thresholds and the short delays complete."""
    out: list[tuple[str, int, int]] = [("whole", 0, 0)]
    for th in thresholds:
        for d in delays:
            out += [(m, d, th) for m in methods]
    return out


def key(method: str, delay: int, threshold: int) -> str:
    return f"{method}/d{delay}/t{threshold}"


def run_one(args: argparse.Namespace, method: str, delay: int, threshold: int) -> dict:
    graph = args.rtc if method == "rtc" else args.plain
    return evaluate_config(
        graph, method, delay, threshold, args.task, args.episodes, args.num_envs, args.seed
    )


def evaluate_config(
    graph: Path,
    method: str,
    delay: int,
    threshold: int,
    task: str,
    episodes: int,
    num_envs: int,
    seed: int,
    require_rtc: bool | None = None,
) -> dict:
    """One configuration on `episodes` held-out episodes (evaluation `seed`): "whole" (whole chunks,
    no delay) or the actor's execution with `MERGE[method]`, `delay` and `threshold`. The policy is
    loaded afresh, so every configuration sees the same noise stream. `require_rtc` (default: for
    method "rtc") checks that the graph takes the real-time-chunking inputs."""
    policy = OnnxChunkPolicy(graph, seed)
    if (method == "rtc" if require_rtc is None else require_rtc) and not policy.rtc:
        raise SystemExit(f"{graph}: not a real-time-chunking graph (no prefix/prefix_len/delay inputs)")
    num_envs = max(1, min(num_envs, episodes))
    vec = VecEnv(task, num_envs, policy.image_size, seed=seed)
    t0 = time.monotonic()
    try:
        if method == "whole":
            r = evaluate(
                vec, policy, -(-episodes // num_envs), 30, None, EXECUTION_WHOLE_CHUNKS, 0, None, True
            )
        else:
            sched = SchedulerConfig(request_threshold=threshold, merge=MERGE[method])
            r = evaluate(vec, policy, -(-episodes // num_envs), 30, None, EXECUTION_ACTOR, delay, sched, True)
    finally:
        vec.close()
    jumps = [j for ep in r.per_episode for j in ep["boundary_jumps"]]
    return {
        "key": key(method, delay, threshold),
        "method": method,
        "delay_ticks": delay,
        "request_threshold": threshold,
        "policy": str(graph),
        "episodes": r.episodes,
        "successes": int(sum(bool(ep["success"]) for ep in r.per_episode)),
        "success_rate": r.success_rate,
        "alone_rate": r.alone_rate,
        "mean_cycle_time_s": r.mean_cycle_time_s,
        "dry_ticks": r.dry_ticks,
        "boundaries": len(jumps),
        "jump_mean": float(np.mean(jumps)) if jumps else float("nan"),
        "jump_max": float(np.max(jumps)) if jumps else float("nan"),
        "any_tick_max": float(max(ep["max_tick_jump"] for ep in r.per_episode)),
        "within_mean": float(np.mean([ep["within_chunk_jump_mean"] for ep in r.per_episode])),
        "label": r.label,
        "wall_s": time.monotonic() - t0,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| method | delay (ticks) | request_threshold | success [95% Wilson] | boundaries | jump mean (rad/s) "
        "| jump max (rad/s) | any-tick max (rad/s) | within-chunk mean (rad/s) | dry ticks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = wilson(r["successes"], r["episodes"])
        whole = r["method"] == "whole"
        lines.append(
            f"| {'whole chunks, no delay (reference)' if whole else r['method']} "
            f"| {'-' if whole else r['delay_ticks']} | {'-' if whole else r['request_threshold']} "
            f"| {r['success_rate']:.2f} [{lo:.2f}, {hi:.2f}] ({r['successes']}/{r['episodes']}) "
            f"| {r['boundaries']} | {r['jump_mean']:.2f} | {r['jump_max']:.2f} | {r['any_tick_max']:.2f} "
            f"| {r['within_mean']:.2f} | {r['dry_ticks']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plain", type=Path, required=True, help="the policy's ONNX graph without RTC inputs")
    ap.add_argument("--rtc", type=Path, required=True, help="the same policy exported with RTC inputs")
    ap.add_argument("--task", default="can_to_bin")
    ap.add_argument("--episodes", type=int, default=48)
    ap.add_argument("--num-envs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=12345, help="evaluation seed (the held-out episodes)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--delays", nargs="+", type=int, default=[0, 3, 6, 10], help="inference delay, ticks")
    ap.add_argument("--thresholds", nargs="+", type=int, default=[12, 20], help="request_threshold values")
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, one per configuration (resumable)")
    ap.add_argument("--table", action="store_true", help="only print the table of what --out holds")
    args = ap.parse_args(argv)
    done: dict[str, dict] = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[r["key"]] = r
    todo = configs(args.methods, args.delays, args.thresholds)
    if not args.table:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        for n, (m, d, th) in enumerate(todo, 1):
            k = key(m, d, th)
            if k in done:
                print(f"[{n}/{len(todo)}] {k}: already in {args.out}", flush=True)
                continue
            r = run_one(args, m, d, th)
            done[k] = r
            with args.out.open("a") as f:
                f.write(json.dumps(r) + "\n")
            print(
                f"[{n}/{len(todo)}] {k}: success {r['success_rate']:.2f} ({r['successes']}/{r['episodes']}), "
                f"boundary jump mean {r['jump_mean']:.2f} max {r['jump_max']:.2f} rad/s, "
                f"dry ticks {r['dry_ticks']}  ({r['wall_s']:.0f} s, {time.monotonic() - t0:.0f} s total)",
                flush=True,
            )
    print(table([done[key(*c)] for c in todo if key(*c) in done]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
