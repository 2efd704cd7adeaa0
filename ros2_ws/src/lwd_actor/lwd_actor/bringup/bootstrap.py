"""What a fleet needs before it starts, and the step that makes it: an offline buffer, an
offline checkpoint and a first published policy in a run directory.

`./lwd fleet` calls `bootstrap` itself. The ROS launch path does not (a launch file
should start processes, not train for minutes): it calls `fleet_run_overrides`,
which points actors and the learner at what the bootstrap left, or refuses with
the one command to run (`python -m lwd_actor.bringup.bootstrap --run-dir DIR`).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lwd_actor.bringup.description import deep_merge, expand_fleet
from lwd_common.policy_store import PolicyStore
from lwd_common.store import EpisodeStore


def log(msg: str) -> None:
    print(f"[lwd] {msg}", flush=True)


class NotBootstrapped(RuntimeError):
    """The run directory has no policy yet; the message says which command makes one."""


@dataclass(frozen=True)
class RunDirLayout:
    """Where the fleet's artefacts live under one run directory."""

    run_dir: Path

    @property
    def offline_store(self) -> Path:
        return self.run_dir / "offline_store"

    @property
    def offline_learner(self) -> Path:
        return self.run_dir / "offline_learner"

    @property
    def online_learner(self) -> Path:
        return self.run_dir / "online_learner"

    @property
    def bridge_root(self) -> Path:
        return self.run_dir / "bridge"

    @property
    def offline_policy(self) -> Path:
        return self.offline_learner / "policy.onnx"


def run_dir_layout(run_dir: str | Path) -> RunDirLayout:
    return RunDirLayout(Path(run_dir).resolve())


@dataclass(frozen=True)
class BootstrapPlan:
    """What the bootstrap makes. Training budgets left at None come from the learner's `fleet`
    preset (lwd_learner.config.PRESETS, the one place they are set); a number overrides it."""

    tasks: tuple[str, ...] = ("can_to_bin",)
    image_size: int = 64
    seed: int = 0
    offline_episodes: int = 60
    encoder_steps: int | None = None
    bc_steps: int | None = None
    offline_rl_steps: int | None = None

    def learner_flags(self) -> list[str]:
        """`lwd_learner.cli offline` flags: the fleet preset plus what this plan overrides."""
        flags = [
            "--preset",
            "fleet",
            "--model.encoder.image-size",
            str(self.image_size),
            str(self.image_size),
            "--train.seed",
            str(self.seed),
        ]
        for flag, value in (
            ("--train.encoder-steps", self.encoder_steps),
            ("--train.bc-steps", self.bc_steps),
            ("--train.rl-steps", self.offline_rl_steps),
        ):
            if value is not None:
                flags += [flag, str(value)]
        return flags


def run_step(title: str, argv: list[str]) -> None:
    """Run one bootstrap step in the foreground (it draws its own progress bar). Ctrl-C reaches the
    step too (same process group): wait for it to stop (the learner checkpoints), then exit 130 with
    one line, not a traceback; the next run resumes."""
    log(f"{title}: {' '.join(argv[2:])}")
    start = time.monotonic()
    interrupted: list[int] = []
    # Ctrl-C only takes note while the step runs: a KeyboardInterrupt raised between starting the
    # step and waiting for it (a race under load) would end this process with a traceback.
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: interrupted.append(signum))
    try:
        rc = subprocess.Popen(argv).wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        print(f"[lwd] {title}: interrupted; run the same command again to resume", file=sys.stderr)
        raise SystemExit(130)
    if rc != 0:
        raise SystemExit(f"[lwd] {title} failed (exit {rc}); fix the error above and run again")
    log(f"{title}: done in {time.monotonic() - start:.0f} s")


def bootstrap(plan: BootstrapPlan, layout: RunDirLayout) -> None:
    """Make sure an offline buffer, an offline checkpoint and a published policy exist (resumable)."""
    py = sys.executable
    if EpisodeStore(layout.offline_store).latest_snapshot() is None:
        run_step(
            "generating offline data",
            [
                py,
                "-m",
                "lwd_sim.generate_offline",
                "--out",
                str(layout.offline_store),
                "--episodes",
                str(plan.offline_episodes),
                "--image-size",
                str(plan.image_size),
                "--seed",
                str(plan.seed),
                "--tasks",
                *plan.tasks,
            ],
        )
    if not layout.offline_policy.exists():
        run_step(
            "offline pretraining (BC, then DIVL + QAM)",
            [
                py,
                "-m",
                "lwd_learner.cli",
                "offline",
                "--store",
                str(layout.offline_store),
                "--out",
                str(layout.offline_learner),
                *plan.learner_flags(),
            ],
        )
    policies = PolicyStore(layout.bridge_root / "policies")
    if policies.latest() is None:
        info = policies.publish(
            layout.offline_policy.read_bytes(), training_step=0, extra={"source": "offline pretraining"}
        )
        log(f"published the offline policy as {info.version} (sha256 {info.sha256[:12]})")


def learner_args(layout: RunDirLayout, image_size: int = 64, publish_every: int = 50) -> list[str]:
    """The online learner's arguments: continue from the offline checkpoint, 1:1 with its buffer."""
    return [
        "--out",
        str(layout.online_learner),
        "--init",
        str(layout.offline_learner),
        "--offline-store",
        str(layout.offline_store),
        "--publish-every",
        str(publish_every),
        "--image-size",
        str(image_size),
        str(image_size),
        "--no-progress",
    ]


def fleet_run_overrides(
    layout: RunDirLayout, learner_enabled: bool, image_size: int = 64, publish_every: int = 50
) -> dict[str, Any]:
    """Fleet overrides that start actors on the run's policy and the learner on its checkpoint.

    Raises NotBootstrapped, naming the command to run, when the run directory has no policy.
    """
    if not layout.offline_policy.exists():
        raise NotBootstrapped(
            f"no policy in {layout.run_dir} yet: run `python -m lwd_actor.bringup.bootstrap --run-dir "
            f"{layout.run_dir}` (or `./lwd fleet --run-dir {layout.run_dir}`) first, or give the actors "
            "a policy with params_file:=<yaml with policy_path> with_learner:=false"
        )
    overrides: dict[str, Any] = {
        "run_dir": str(layout.run_dir),
        "actor_params": {"policy_path": str(layout.offline_policy)},
        "bridge": {"root": str(layout.bridge_root)},
    }
    if learner_enabled:
        # run_args, not args: the description's own learner flags (learner.args) still apply after them
        overrides["learner"] = {"run_args": learner_args(layout, image_size, publish_every)}
    return overrides


def with_run_dir_defaults(cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` plus what the fleet's run directory provides (the policy, the learner's init).

    Used by both launch paths. The description is validated first, so a broken one is refused
    naming its field before a missing bootstrap is; explicit overrides always win.
    """
    expand_fleet(cfg, overrides)
    merged = deep_merge(cfg, overrides)
    learner_on = bool((merged.get("learner") or {}).get("enabled", False))
    has_policy = bool((merged.get("actor_params") or {}).get("policy_path"))
    if not learner_on and has_policy:
        return overrides
    layout = run_dir_layout(merged.get("run_dir", "runs/fleet"))
    return deep_merge(fleet_run_overrides(layout, learner_enabled=learner_on), overrides)


def add_budget_flags(p: argparse.ArgumentParser) -> None:
    """The pretraining budget flags shared by `./lwd fleet` and this module's CLI."""
    p.add_argument(
        "--encoder-steps",
        type=int,
        default=None,
        help="BC steps that train the image encoder; later steps train the heads on cached "
        "features (default: the learner's `fleet` preset)",
    )
    p.add_argument(
        "--bc-steps",
        type=int,
        default=None,
        help="BC steps in all, encoder steps included (default: the `fleet` preset)",
    )
    p.add_argument(
        "--offline-rl-steps",
        type=int,
        default=None,
        help="DIVL + QAM steps after BC (default: the `fleet` preset)",
    )


def main(argv: list[str] | None = None) -> int:
    defaults = BootstrapPlan()
    p = argparse.ArgumentParser(
        prog="python -m lwd_actor.bringup.bootstrap",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run-dir", type=Path, default=Path("runs/fleet"))
    p.add_argument("--tasks", nargs="+", default=list(defaults.tasks))
    p.add_argument("--image-size", type=int, default=defaults.image_size)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--offline-episodes", type=int, default=defaults.offline_episodes)
    add_budget_flags(p)
    a = p.parse_args(argv)
    plan = BootstrapPlan(
        tuple(a.tasks),
        a.image_size,
        a.seed,
        a.offline_episodes,
        a.encoder_steps,
        a.bc_steps,
        a.offline_rl_steps,
    )
    bootstrap(plan, run_dir_layout(a.run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
