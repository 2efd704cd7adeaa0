"""Held-out success of a fleet run's published policies, version by version: the learning curve
without the operator in it.

    ./lwd py experiments/fleet_heldout.py runs/fleet/bridge --every 10 --episodes 48 --out docs/fleet_run/<date>

On the fleet the operator takes over whatever makes no progress for a quarter of the time limit,
so the share of episodes a policy finishes alone mostly measures the operator's patience. This
evaluates every `--every`-th published version (and the last) on the same held-out simulator
episodes (evaluation seed 12345, the results table's), writes `heldout_by_version.json` and
`heldout_by_version.png` into `--out`, and prints a table with 95% Wilson intervals: success, and
"succeeded alone", success before the fleet's operator would have taken over (the simulator watches
with the operator's rules, `lwd_sim.env`), the held-out counterpart of `fleet_report.py`'s column of
that name. Beside them, the fleet's own "succeeded alone" over the episodes each evaluated version
and the versions up to the next evaluated one started (the fleet's episodes of the task, from the
bridge's store), so the two curves can be compared version by version. Results are
cached in the JSON, so a rerun only evaluates versions it has not seen. Chunks are executed as the
robot's actor does (`--execution actor`, default, `--delay-ticks`) or whole (`--execution
whole-chunks`, `--execute-steps` rows, no delay); the table, the JSON and the plot name which.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fleet_report import version_of
from sim_results import wilson

from lwd_actor.bringup.monitor import FleetMonitor
from lwd_common.policy_store import PolicyStore, version_number
from lwd_sim.env import EXECUTION_ACTOR, execution_label
from lwd_sim.evaluate_policy import add_execution_args, evaluate_policy


def chosen_versions(versions: list[str], every: int) -> list[str]:
    """v1, then every `every`-th version, and always the last."""
    picked = [v for v in versions if (version_number(v) - 1) % every == 0]
    return picked + ([versions[-1]] if versions and versions[-1] not in picked else [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bridge_root", type=Path, help="the fleet's bridge directory (<run_dir>/bridge)")
    ap.add_argument("--every", type=int, default=10, help="evaluate every N-th published version")
    ap.add_argument("--episodes", type=int, default=48)
    ap.add_argument("--task", default="can_to_bin")
    add_execution_args(ap)
    ap.add_argument("--out", type=Path, required=True, help="directory for the JSON and the plot")
    args = ap.parse_args(argv)
    args.execution = args.execution.replace("-", "_")
    args.label = execution_label(args.execution, args.execute_steps, args.delay_ticks)
    store = PolicyStore(args.bridge_root / "policies")
    versions = sorted(store.versions(), key=version_number)
    if not versions:
        ap.error(f"no published policies under {args.bridge_root / 'policies'}")
    args.out.mkdir(parents=True, exist_ok=True)
    cache_path = args.out / "heldout_by_version.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    settings: dict = {
        "task": args.task,
        "episodes": args.episodes,
        "execute_steps": args.execute_steps,
        "seed": 12345,
    }
    if args.execution == EXECUTION_ACTOR:  # whole-chunk caches keep the settings they had before
        settings.update(execution=args.execution, delay_ticks=args.delay_ticks)
    if cache.get("settings") != settings or "alone" not in cache:
        cache = {"settings": settings, "success": {}, "alone": {}}
    cache["execution"] = args.label
    for v in chosen_versions(versions, args.every):
        if v not in cache["alone"]:
            r = evaluate_policy(
                str(store.path_of(v)),
                args.task,
                args.episodes,
                num_envs=4,
                execute_steps=args.execute_steps,
                seed=12345,
                execution=args.execution,
                delay_ticks=args.delay_ticks,
            )
            cache["success"][v] = r.success_rate
            cache["alone"][v] = r.alone_rate
            cache_path.write_text(json.dumps(cache, indent=1))
        print(f"{v}: success {cache['success'][v]:.2f}, succeeded alone {cache['alone'][v]:.2f}", flush=True)
    rows = sorted(cache["success"].items(), key=lambda kv: version_number(kv[0]))
    fleet = fleet_alone(args.bridge_root, args.task, [version_number(v) for v, _ in rows])
    print(
        f"\n{args.task}, {args.episodes} held-out episodes per version, {args.label}\n\n"
        "| version | held-out success (95% Wilson) | held-out succeeded alone (95% Wilson) "
        "| fleet: versions | fleet: succeeded alone (95% Wilson) |\n|---|---|---|---|---|"
    )
    for (v, rate), (band, k, n) in zip(rows, fleet, strict=True):
        alone = cache["alone"][v]
        on_fleet = f"{k / n:.2f} [{wilson(k, n)[0]:.2f}, {wilson(k, n)[1]:.2f}] ({k}/{n})" if n else "-"
        print(
            f"| {v} | {_with_interval(rate, args.episodes)} | {_with_interval(alone, args.episodes)} "
            f"| {band} | {on_fleet} |"
        )
    _plot(rows, cache["alone"], fleet, args, args.out / "heldout_by_version.png")
    return 0


def fleet_alone(bridge_root: Path, task: str, evaluated: list[int]) -> list[tuple[str, int, int]]:
    """Per evaluated version number: (its band "vA-vB", the fleet's episodes of `task` started by a
    version in the band that succeeded without a teleoperated step, all of them). A band runs to the
    version before the next evaluated one (the last, to the newest version on the fleet)."""
    monitor = FleetMonitor(bridge_root, bridge_root / "unused", ())
    monitor.refresh()
    episodes = [e for e in monitor.episodes.values() if e.task == task]
    top = max([version_of(e) for e in episodes] + evaluated, default=0)
    out = []
    for i, lo in enumerate(evaluated):
        hi = evaluated[i + 1] - 1 if i + 1 < len(evaluated) else top
        band = [e for e in episodes if lo <= version_of(e) <= hi]
        out.append((f"v{lo}-v{hi}", sum(e.succeeded_alone for e in band), len(band)))
    return out


def _with_interval(rate: float, n: int) -> str:
    lo, hi = wilson(round(rate * n), n)
    return f"{rate:.2f} [{lo:.2f}, {hi:.2f}]"


def _plot(
    rows: list[tuple[str, float]],
    alone: dict[str, float],
    fleet: list[tuple[str, int, int]],
    args,
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [version_number(v) for v, _ in rows]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, y in (
        ("held-out success", [r for _, r in rows]),
        ("held-out succeeded alone", [alone[v] for v, _ in rows]),
    ):
        bounds = [wilson(round(r * args.episodes), args.episodes) for r in y]
        ax.errorbar(
            x,
            y,
            yerr=[
                [r - lo for r, (lo, _) in zip(y, bounds, strict=True)],
                [hi - r for r, (_, hi) in zip(y, bounds, strict=True)],
            ],
            marker="o",
            capsize=3,
            label=name,
        )
    shown = [(xi, k / n) for xi, (_, k, n) in zip(x, fleet, strict=True) if n]
    if shown:
        ax.plot(*zip(*shown, strict=True), "s--", label="on the fleet: succeeded alone (versions from here)")
    ax.legend(fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("published policy version")
    ax.set_ylabel("held-out success")
    ax.set_title(
        f"{args.task}: {args.episodes} held-out episodes per version, no operator (95% Wilson)\n{args.label}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
