"""What a `./lwd fleet` run did, from its bridge store: success, intervention and autonomy by policy
version band and by quarter of the run.

    ./lwd py experiments/fleet_report.py runs/fleet/bridge/store [--band 10]

"Intervened" counts episodes in which the operator took over at least once; "autonomous success"
is the success of the episodes the policy finished alone. The fleet monitor's per-version figures
include the operator's help; these separate the policy from the operator.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from lwd_common.episode import ActionSource
from lwd_common.policy_store import published_version, version_number
from lwd_common.store import EpisodeStore


@dataclass(frozen=True)
class Row:
    ended_at: float
    version: int  # 0: a policy that is not a store version (the offline file before publication)
    success: bool
    teleop_steps: int
    steps: int


def rows(store: EpisodeStore) -> list[Row]:
    snapshot = store.latest_snapshot()
    out = []
    for episode_id in snapshot.episode_ids if snapshot else []:
        ep = store.get(episode_id)
        versions = [v for v in ep.policy_versions if v != "teleop"]
        try:
            version = version_number(published_version(versions[0])) if versions else 0
        except ValueError:
            version = 0
        teleop = int(np.count_nonzero(ep.source == ActionSource.TELEOP))
        out.append(Row(ep.outcome.ended_at, version, bool(ep.success), teleop, ep.num_steps))
    return sorted(out, key=lambda r: r.ended_at)


def summary(label: str, sel: list[Row]) -> str:
    if not sel:
        return f"{label:>14}  n=  0"
    alone = [r for r in sel if r.teleop_steps == 0]
    auto = f"{np.mean([r.success for r in alone]):.2f}" if alone else "  - "
    return (
        f"{label:>14}  n={len(sel):3d}  success {np.mean([r.success for r in sel]):.2f}  "
        f"intervened {np.mean([r.teleop_steps > 0 for r in sel]):.2f}  "
        f"teleop share {sum(r.teleop_steps for r in sel) / max(1, sum(r.steps for r in sel)):.2f}  "
        f"autonomous success {auto} (n={len(alone)})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", help="the bridge's episode store (<run_dir>/bridge/store)")
    p.add_argument("--band", type=int, default=10, help="policy versions per band")
    args = p.parse_args(argv)
    data = rows(EpisodeStore(args.store))
    print(f"{len(data)} episodes")
    top = max((r.version for r in data), default=0)
    for lo in range(1, top + 1, args.band):
        hi = min(lo + args.band - 1, top)
        print(summary(f"v{lo}-v{hi}", [r for r in data if lo <= r.version <= hi]))
    n = len(data)
    for q in range(4):
        print(summary(f"quarter {q + 1}", data[q * n // 4 : (q + 1) * n // 4]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
