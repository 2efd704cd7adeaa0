"""What the critic ranks, before asking the policy to follow it (issue: the RL update barely moves
the policy). For a learner run and an episode store it prints:

- AUC of V(s_t) and of Q(s_t, a_t) separating steps of successful from failed rollouts, within
  bins of elapsed time (similar progress), averaged over bins: 0.5 = no ranking, 1 = perfect;
- the mean |dQ/da| of the critic at the executed chunks, in normalised action units, and what
  QAM's terminal adjoint -dQ/da / lambda is at the configured lambda;
- V along the episodes: mean V in the first and last fifth of successful and failed episodes
  (the paper's Fig. 6/9: rising along a success, flat along a failure).

    python experiments/critic_report.py --run runs/lwd_offline --store runs/store_can [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lwd_common.episode import EpisodeKind
from lwd_learner.replay import StoreReader
from lwd_learner.train import decode_episodes, restore_session


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half (Mann-Whitney U / (n_pos n_neg))."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    scores = np.concatenate([pos, neg])
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    ranks[order] = np.arange(1, len(scores) + 1)
    for v in np.unique(scores):  # average ranks of ties
        sel = scores == v
        ranks[sel] = ranks[sel].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def binned_auc(score: np.ndarray, success: np.ndarray, t_s: np.ndarray, bin_s: float = 1.0) -> float:
    bins = (t_s // bin_s).astype(int)
    vals = [auc(score[(bins == b) & success], score[(bins == b) & ~success]) for b in np.unique(bins)]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def report(run: str | Path, store: str | Path, max_episodes: int = 200) -> dict:
    s = restore_session(Path(run) / "checkpoints" if (Path(run) / "checkpoints").exists() else run)
    agent, state = s.agent, s.state
    episodes = StoreReader(store).poll()[:max_episodes]
    arrays = decode_episodes(episodes, s.vocab, s.cfg)
    h = s.cfg.model.horizon

    q_and_grad = agent.q_and_action_grad

    rows = {"v": [], "q": [], "success": [], "t": [], "grad": [], "kind": []}
    along = {True: [[], []], False: [[], []]}
    for e in arrays:
        big_t = len(e.actions)
        idx = np.minimum(np.arange(big_t)[:, None] + np.arange(h), big_t - 1)
        task = np.full(big_t, e.task_id, np.int32)
        v, q, g = [], [], []
        for i in range(0, big_t, 256):
            sl = slice(i, i + 256)
            v.append(
                np.asarray(
                    agent.state_values(state.critic, state.norm, e.images[sl], e.joint_pos[sl], task[sl])
                )
            )
            qi, gi = q_and_grad(
                state.critic, state.norm, e.images[sl], e.joint_pos[sl], task[sl], e.actions[idx[sl]]
            )
            q.append(np.asarray(qi))
            g.append(np.abs(np.asarray(gi)).reshape(len(qi), -1).mean(-1))
        v, q, g = np.concatenate(v), np.concatenate(q), np.concatenate(g)
        rows["v"].append(v)
        rows["q"].append(q)
        rows["grad"].append(g)
        rows["success"].append(np.full(big_t, e.success))
        rows["t"].append(np.arange(big_t) / 30.0)
        rows["kind"].append(np.full(big_t, e.kind.value))
        fifth = max(1, big_t // 5)
        along[bool(e.success)][0].append(v[:fifth].mean())
        along[bool(e.success)][1].append(v[-fifth:].mean())
    cat = {k: np.concatenate(v) for k, v in rows.items()}
    # Rank within rollouts (success and failure of the same kind of policy), not demos vs play.
    roll = cat["kind"] == EpisodeKind.ROLLOUT.value
    cat = {k: v[roll] for k, v in cat.items()} if roll.any() else cat
    lam = s.cfg.qam.lam
    out = {
        "run": str(run),
        "store": str(store),
        "episodes": len(arrays),
        "success_episodes": int(sum(e.success for e in arrays)),
        "auc_v_success_vs_failure": binned_auc(cat["v"], cat["success"], cat["t"]),
        "auc_q_success_vs_failure": binned_auc(cat["q"], cat["success"], cat["t"]),
        "mean_abs_dq_da": float(cat["grad"].mean()),
        "lambda": lam,
        "mean_abs_adjoint": float(cat["grad"].mean() / lam),
        "v_success_first_last": [float(np.mean(x)) if x else None for x in along[True]],
        "v_failure_first_last": [float(np.mean(x)) if x else None for x in along[False]],
        "q_range_p5_p95": [float(np.percentile(cat["q"], 5)), float(np.percentile(cat["q"], 95))],
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="learner run directory (or its checkpoints/)")
    ap.add_argument("--store", required=True, help="episode store to score (its latest snapshot)")
    ap.add_argument("--max-episodes", type=int, default=200)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    r = report(args.run, args.store, args.max_episodes)
    for k, v in r.items():
        print(f"{k:28s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
