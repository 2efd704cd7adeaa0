"""What a `./lwd fleet` run did, from its bridge store: success, intervention and autonomy by policy
version band and by quarter of the run.

    ./lwd py experiments/fleet_report.py runs/fleet/bridge [--band 10]

"Intervened" counts episodes in which the operator took over at least once; "succeeded alone" is the
share of episodes that succeeded without a teleoperated step, "autonomous success" the success of
the episodes the policy finished alone. The fleet monitor (`<run_dir>/plots`) draws the same split
per version; this prints it as a table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lwd_actor.bringup.monitor import EpisodeSummary, FleetMonitor
from lwd_common.policy_store import version_number


def version_of(e: EpisodeSummary) -> int:
    """The store version that started the episode; 0 for a policy that is not one (the offline file)."""
    try:
        return version_number(e.policy_versions[0]) if e.policy_versions else 0
    except ValueError:
        return 0


def summary(label: str, sel: list[EpisodeSummary]) -> str:
    if not sel:
        return f"{label:>14}  n=  0"
    alone = [e for e in sel if e.intervention_steps == 0]
    auto = f"{np.mean([e.success for e in alone]):.2f}" if alone else "  - "
    return (
        f"{label:>14}  n={len(sel):3d}  success {np.mean([e.success for e in sel]):.2f}  "
        f"intervened {np.mean([e.intervention_steps > 0 for e in sel]):.2f}  "
        f"succeeded alone {np.mean([e.succeeded_alone for e in sel]):.2f}  "
        f"teleop share {sum(e.intervention_steps for e in sel) / max(1, sum(e.steps for e in sel)):.2f}  "
        f"autonomous success {auto} (n={len(alone)})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bridge_root", type=Path, help="the bridge's root directory (<run_dir>/bridge)")
    p.add_argument("--band", type=int, default=10, help="policy versions per band")
    args = p.parse_args(argv)
    monitor = FleetMonitor(args.bridge_root, args.bridge_root / "unused", ())
    monitor.refresh()
    data = sorted(monitor.episodes.values(), key=lambda e: e.ended_at)
    print(f"{len(data)} episodes")
    top = max((version_of(e) for e in data), default=0)
    for lo in range(1, top + 1, args.band):
        hi = min(lo + args.band - 1, top)
        print(summary(f"v{lo}-v{hi}", [e for e in data if lo <= version_of(e) <= hi]))
    n = len(data)
    for q in range(4):
        print(summary(f"quarter {q + 1}", data[q * n // 4 : (q + 1) * n // 4]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
