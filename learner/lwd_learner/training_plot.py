"""tau and the value distribution's normalised entropy over training (the paper's Fig. 8), from a
run's metrics.jsonl.

The critic logs, at every metrics line, `tau_mean` (the mean adaptive tau of the bootstrap states
of its minibatch, eq. 18) and `value_entropy` (their mean normalised entropy H(s) in [0, 1],
eq. 17). As the value head sharpens, the entropy should fall and tau = tau_base - alpha H rise.
`write_plot` draws both against the learner step, one panel each, to RUN/tau_entropy.png; the
learner calls it at the end of training and, online, at every checkpoint (train.write_training_plot).
Only runs with a DIVL value head log these (methods lwd and recap, divl.value_kind "divl").

    python -m lwd_learner.training_plot RUN_DIR [--out PNG]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

FILENAME = "tau_entropy.png"
KEYS = ("tau_mean", "value_entropy")


def read_series(run_dir: str | Path) -> dict[str, np.ndarray]:
    """{"step", "tau_mean", "value_entropy", "rl"} arrays over the metrics lines of `run_dir` that hold
    both metrics, by step ("rl": the line is from the DIVL + QAM phase, not BC). A step logged twice
    (a run resumed from an earlier checkpoint logs its steps again) keeps its later line; an
    unreadable line (one being written) is skipped. A ValueError saying why when there is nothing
    to plot."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise ValueError(f"{path} does not exist (not a learner run directory, or no step logged yet)")
    rows: dict[int, dict] = {}
    with path.open() as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "step" in row and all(k in row for k in KEYS):
                rows[int(row["step"])] = row
    if not rows:
        raise ValueError(
            f"{path} has no tau_mean / value_entropy: only runs with a DIVL value head log them "
            "(train.method lwd or recap with divl.value_kind divl; sft and hg_dagger train no critic)"
        )
    steps = sorted(rows)
    return {
        "step": np.array(steps, np.int64),
        "tau_mean": np.array([rows[s]["tau_mean"] for s in steps], np.float64),
        "value_entropy": np.array([rows[s]["value_entropy"] for s in steps], np.float64),
        "rl": np.array([rows[s].get("phase") == "rl" for s in steps], bool),
    }


def write_plot(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, dict[str, np.ndarray]]:
    """Write the plot (default RUN/tau_entropy.png): tau mean (top) and normalised value entropy
    (bottom) against the learner step, the end of BC (its last line before DIVL + QAM) marked.
    Returns (path, the series plotted, as `read_series`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_series(run_dir)
    step = series["step"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6.4, 5.2), sharex=True)
    ax1.plot(step, series["tau_mean"], "-", color="tab:blue", marker="." if len(step) < 50 else None)
    ax1.set_ylabel("tau (mean over batch)")
    ax1.set_title(f"{Path(run_dir).absolute().name}: adaptive tau and value entropy", fontsize=10)
    ax2.plot(step, series["value_entropy"], "-", color="tab:red", marker="." if len(step) < 50 else None)
    ax2.set_ylabel("normalised value entropy H(s)")
    ax2.set_xlabel("learner step")
    first_rl = int(np.argmax(series["rl"]))
    if series["rl"][first_rl] and first_rl > 0:  # the last BC line: RL takes the steps after it
        for ax in (ax1, ax2):
            ax.axvline(step[first_rl - 1], color="grey", ls=":", lw=1, label="BC | DIVL + QAM")
        ax1.legend(fontsize=8, loc="best")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(out) if out is not None else Path(run_dir) / FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")  # readers never see a half-written file
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path, series


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lwd_learner.training_plot",
        description="Plot tau and the normalised value entropy over training (paper Fig. 8) "
        "from RUN_DIR/metrics.jsonl.",
    )
    parser.add_argument("run_dir", type=Path, help="learner run directory (holds metrics.jsonl)")
    parser.add_argument("--out", type=Path, default=None, help=f"output PNG (default RUN_DIR/{FILENAME})")
    args = parser.parse_args(argv)
    try:
        path, series = write_plot(args.run_dir, args.out)
    except ValueError as exc:
        print(f"lwd_learner.training_plot: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {path} ({len(series['step'])} points, steps {series['step'][0]}..{series['step'][-1]}; "
        f"tau {series['tau_mean'][0]:.3f} -> {series['tau_mean'][-1]:.3f}, "
        f"entropy {series['value_entropy'][0]:.3f} -> {series['value_entropy'][-1]:.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
