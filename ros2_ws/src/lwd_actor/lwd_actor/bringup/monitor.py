"""Live progress of a fleet, read from what the bridge and the learner leave on disk.

Nothing here talks to the robots: the bridge's episode store and status file
and the learner's metrics are the record, so the monitor can be restarted, or
run on another machine that mounts the run directory. The episode store is the
bridge's directory, or with the s3-queue data plane the S3 bucket the
coordinator commits to (`store`: its location; this process's AWS_* environment
must reach it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lwd_common.blobs import is_remote
from lwd_common.episode import ActionSource
from lwd_common.policy_store import published_version
from lwd_common.store import EpisodeStore
from lwd_common.text import printable


@dataclass(frozen=True)
class EpisodeSummary:
    episode_id: str
    robot_id: str
    task: str
    success: bool
    ended_at: float
    steps: int
    intervention_steps: int
    interventions: int  # number of teleop segments
    policy_versions: tuple[str, ...]

    @property
    def succeeded_alone(self) -> bool:
        """Success with no teleoperated step: what the policy can do, not the operator."""
        return self.success and self.intervention_steps == 0


def summarise(store: EpisodeStore, episode_id: str) -> EpisodeSummary:
    ep = store.get(episode_id)
    teleop = ep.source == ActionSource.TELEOP
    segments = int(np.count_nonzero(np.diff(teleop.astype(np.int8), prepend=0) == 1))
    return EpisodeSummary(
        episode_id,
        ep.meta.robot_id,
        ep.meta.task,
        ep.success,
        ep.outcome.ended_at,
        ep.num_steps,
        int(teleop.sum()),
        segments,
        tuple(_published(v) for v in ep.policy_versions if v != "teleop"),
    )


def _published(version: str) -> str:
    """The published version an episode ran, also when it ran it under a pin's served name."""
    try:
        return published_version(version)
    except ValueError:  # not a store version (a hand-built policy)
        return version


class FleetMonitor:
    def __init__(
        self,
        bridge_root: Path,
        learner_run: Path,
        robot_ids: tuple[str, ...],
        store: str | Path | None = None,
    ):
        self.bridge_root = Path(bridge_root)
        self.learner_run = Path(learner_run)
        self.robot_ids = robot_ids
        self.store_location = str(store) if store is not None else str(self.bridge_root / "store")
        self.episodes: dict[str, EpisodeSummary] = {}
        self._store: EpisodeStore | None = None
        self._snapshot_version = 0
        self._store_error = ""  # the last error reading the store, once per distinct error

    def refresh(self) -> None:
        """Summarise episodes that appeared in the store's latest snapshot since the last call."""
        if not is_remote(self.store_location) and not Path(self.store_location).exists():
            return
        try:
            if self._store is None:
                self._store = EpisodeStore(self.store_location)
            store = self._store
            new = store.changes_since(self._snapshot_version)  # what was committed since the last call
        except OSError as exc:  # an object store that is down (or not up yet): report, try next time
            if str(exc) != self._store_error:
                print(f"[monitor] cannot read {self.store_location}: {exc}", file=sys.stderr)
            self._store_error = str(exc)
            return
        self._store_error = ""
        self._snapshot_version = new.version
        for eid in new.episode_ids:
            if eid not in self.episodes:
                try:
                    self.episodes[eid] = summarise(store, eid)
                except (OSError, ValueError) as exc:
                    print(f"[monitor] cannot read episode {eid}: {exc}", file=sys.stderr)

    def bridge_status(self) -> dict | None:
        try:
            return json.loads((self.bridge_root / "status.json").read_text())
        except (OSError, ValueError):
            return None

    def learner_progress(self) -> dict | None:
        path = self.learner_run / "metrics.jsonl"
        try:
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - 8192))
                lines = f.read().decode(errors="replace").strip().splitlines()
            return json.loads(lines[-1]) if lines else None
        except (OSError, ValueError, IndexError):
            return None

    def report(self) -> str:
        """One line per robot and one learning line (the dashboard, docs/dashboard.md, shows the rest)."""
        self.refresh()
        eps = sorted(self.episodes.values(), key=lambda e: e.ended_at)
        status = self.bridge_status()
        robots = (status or {}).get("robots", {})
        lines = []
        for rid in self.robot_ids:
            mine = [e for e in eps if e.robot_id == rid]
            success = f"{np.mean([e.success for e in mine]):4.0%}" if mine else "   -"
            alone = f"{_alone(mine):4.0%}" if mine else "   -"
            lines.append(
                f"robot {rid:<10} {mine[-1].task if mine else '':<14} episodes {len(mine):>4}  success "
                f"{success}  alone {alone}  interventions/episode "
                f"{np.mean([e.interventions for e in mine]) if mine else 0:.2f}  "
                f"policy {robots.get(rid, {}).get('policy_version') or '-'}"
            )
        learning = [f"learning: {len(eps)} episodes in the learner's store"]
        by_version = _by_policy_version(eps)
        if by_version:
            learning.append(
                "by version (success, alone, teleop share): "
                + "  ".join(
                    f"{v} {np.mean([e.success for e in items]):.0%} {_alone(items):.0%} "
                    f"{_teleop_share(items):.0%} (n={len(items)})"
                    for v, items in list(by_version.items())[-2:]
                )
            )
        progress = self.learner_progress()
        if progress:
            keys = [
                k
                for k in ("step", "critic_loss", "policy_loss", "tau_mean", "value_entropy")
                if k in progress
            ]
            learning.append("learner: " + " ".join(f"{k} {_num(progress[k])}" for k in keys))
        else:
            learning.append("learner: starting (JIT compilation takes a minute on first start)")
        if status:
            c, p = status.get("commit_latency_s", {}), status.get("policy_latency_s", {})
            learning.append(
                f"end->learner p99 {_ms(c.get('p99'))}, published->loaded p50 {_ms(p.get('p50'))} "
                f"p99 {_ms(p.get('p99'))}"
            )
        lines.append(" | ".join(learning))
        return printable("\n".join(lines))

    def write_plots(self, out_dir: Path) -> list[Path]:
        """Success rate, interventions and teleop share over time and per policy version (PNG)."""
        self.refresh()
        eps = sorted(self.episodes.values(), key=lambda e: e.ended_at)
        if not eps:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out_dir.mkdir(parents=True, exist_ok=True)
        t0 = eps[0].ended_at
        fig, axes = plt.subplots(2, 2, figsize=(12, 6), sharex="col")
        (ax1, ax3), (ax2, ax4) = axes
        for task in sorted({e.task for e in eps}):
            items = [e for e in eps if e.task == task]
            t = [(e.ended_at - t0) / 60 for e in items]
            window = max(1, min(25, len(items) // 3))
            line = ax1.plot(
                t, _rolling([float(e.success) for e in items], window), label=f"{task} (rolling {window})"
            )[0]
            ax1.plot(
                t,
                _rolling([float(e.succeeded_alone) for e in items], window),
                "--",
                color=line.get_color(),
                label=f"{task}, without the operator",
            )
            ax2.plot(t, _rolling([e.interventions for e in items], window), label=task)
        ax1.set_ylabel("success rate")
        ax1.set_ylim(-0.05, 1.05)
        ax1.legend()
        ax2.set_ylabel("interventions / episode")
        ax2.set_xlabel("minutes since first episode")
        # Per band of policy versions: what the published policies did on the fleet (the learning
        # curve proper). With the operator's help nearly every episode succeeds, so the policy's own
        # progress is the share it finished without the operator.
        bands = _version_bands(_by_policy_version(eps), max_bars=12)
        x = np.arange(len(bands))
        alone = [_alone(v) for v in bands.values()]
        helped = [
            float(np.mean([e.success for e in v])) - a for v, a in zip(bands.values(), alone, strict=True)
        ]
        ax3.bar(x, alone, color="tab:green", label="succeeded without the operator")
        ax3.bar(
            x, helped, bottom=alone, color="tab:green", alpha=0.3, label="succeeded with the operator's help"
        )
        ax3.set_ylabel("share of episodes")
        ax3.set_ylim(0, 1.05)
        ax3.set_title("per policy version (bars: episodes that version started)", fontsize=9)
        ax3.legend(fontsize=7, loc="upper left")
        ax4.bar(x, [_teleop_share(v) for v in bands.values()], color="tab:orange")
        ax4.set_ylabel("share of steps teleoperated")
        ax4.set_ylim(0, 1.05)
        ax4.set_xticks(x, [f"{k}\nn={len(v)}" for k, v in bands.items()], fontsize=7)
        ax4.set_xlabel("policy version")
        fig.tight_layout()
        path = out_dir / "success_rate.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written = [path]
        written += self._value_plots(out_dir, eps)
        return written

    def _value_plots(self, out_dir: Path, eps: list[EpisodeSummary]) -> list[Path]:
        """Value distribution along one success and one failure (paper Fig. 6/9), via the learner."""
        ckpt = self.learner_run / "checkpoints"
        chosen = [
            e
            for e in (
                next((e for e in reversed(eps) if e.success), None),
                next((e for e in reversed(eps) if not e.success), None),
            )
            if e
        ]
        if not chosen or not any(d.name.isdigit() for d in ckpt.glob("*")):
            return []  # no episodes to plot, or the learner stopped before its first checkpoint
        out = out_dir / "value_along_episode.png"
        argv = value_plot_command(self.learner_run, self.store_location, [e.episode_id for e in chosen], out)
        rc = subprocess.call(argv, stdout=subprocess.DEVNULL)
        return [out] if rc == 0 and out.exists() else []


def value_plot_command(learner_run: Path, store: str, episode_ids: list[str], out: Path) -> list[str]:
    """The learner's own plot of the value along episodes (paper Fig. 6/9), as a command: restoring its
    JAX checkpoint is heavy, so callers run it in a subprocess. `store`: a directory or s3://."""
    return [
        sys.executable,
        "-m",
        "lwd_learner.cli",
        "value-plot",
        "--run",
        str(learner_run),
        "--store",
        store,
        "--out",
        str(out),
        "--episodes",
        *episode_ids,
    ]


def _by_policy_version(eps: list[EpisodeSummary]) -> dict[str, list[EpisodeSummary]]:
    """Episodes grouped by the policy version that started them, in version order."""
    out: dict[str, list[EpisodeSummary]] = defaultdict(list)
    for e in eps:
        if e.policy_versions:
            out[e.policy_versions[0]].append(e)
    return dict(sorted(out.items()))


def _version_bands(
    by_version: dict[str, list[EpisodeSummary]], max_bars: int
) -> dict[str, list[EpisodeSummary]]:
    """Consecutive versions pooled so that at most max_bars remain ("v3-v7" -> their episodes)."""
    items = list(by_version.items())
    size = max(1, -(-len(items) // max_bars))
    out: dict[str, list[EpisodeSummary]] = {}
    for i in range(0, len(items), size):
        chunk = items[i : i + size]
        first, last = chunk[0][0].lstrip("v0") or "0", chunk[-1][0].lstrip("v0") or "0"
        label = f"v{first}" if len(chunk) == 1 else f"v{first}-{last}"
        out[label] = [e for _, eps in chunk for e in eps]
    return out


def _alone(eps: list[EpisodeSummary]) -> float:
    return float(np.mean([e.succeeded_alone for e in eps])) if eps else 0.0


def _teleop_share(eps: list[EpisodeSummary]) -> float:
    return sum(e.intervention_steps for e in eps) / max(1, sum(e.steps for e in eps))


def _rolling(values: list[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


def _num(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
