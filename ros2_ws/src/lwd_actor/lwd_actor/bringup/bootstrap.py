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

from lwd_actor.bringup.description import (
    add_fleet_file_flags,
    deep_merge,
    default_fleet_file,
    expand_fleet,
    load_fleet_yaml,
    parse_set,
)
from lwd_actor.bringup.settings import FleetConfigError, RunSettings, run_settings
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


def bootstrap(settings: RunSettings, layout: RunDirLayout) -> None:
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
                str(settings.bootstrap.offline_episodes),
                "--image-size",
                str(settings.image_size),
                "--seed",
                str(settings.seed),
                "--tasks",
                *settings.tasks,
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
                *settings.offline_learner_flags(),
            ],
        )
    policies = PolicyStore(layout.bridge_root / "policies")
    if policies.latest() is None:
        info = policies.publish(
            layout.offline_policy.read_bytes(), training_step=0, extra={"source": "offline pretraining"}
        )
        log(f"published the offline policy as {info.version} (sha256 {info.sha256[:12]})")


def learner_args(layout: RunDirLayout, settings: RunSettings) -> list[str]:
    """The online learner's arguments: continue from the offline checkpoint, 1:1 with its buffer."""
    return [
        "--out",
        str(layout.online_learner),
        "--init",
        str(layout.offline_learner),
        "--offline-store",
        str(layout.offline_store),
        *settings.online_learner_flags(),
        "--no-progress",
    ]


def fleet_run_overrides(layout: RunDirLayout, learner_enabled: bool, settings: RunSettings) -> dict[str, Any]:
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
        overrides["learner"] = {"run_args": learner_args(layout, settings)}
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
    return deep_merge(fleet_run_overrides(layout, learner_on, run_settings(merged)), overrides)


def add_settings_flags(p: argparse.ArgumentParser) -> None:
    """Flags for the run's settings, shared by `./lwd fleet` and this module's CLI. Each overrides
    the fleet file's value (config/fleet.yaml, `RunSettings`), which owns the defaults."""
    add_fleet_file_flags(p)
    p.add_argument("--tasks", nargs="+", default=None, help="simulated tasks; robot i works on tasks[i %% n]")
    p.add_argument("--image-size", type=int, default=None, help="square camera frames, rendered and learned")
    p.add_argument("--seed", type=int, default=None, help="offline data and pretraining seed")
    p.add_argument("--offline-episodes", type=int, default=None, help="episodes in the offline buffer")
    p.add_argument(
        "--encoder-steps",
        type=int,
        default=None,
        help="BC steps that train the image encoder; later steps train the heads on cached "
        "features (default: the learner preset's)",
    )
    p.add_argument("--bc-steps", type=int, default=None, help="BC steps in all, encoder steps included")
    p.add_argument("--offline-rl-steps", type=int, default=None, help="DIVL + QAM steps after BC")
    p.add_argument("--publish-every", type=int, default=None, help="online learner steps between policies")


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The fleet-mapping overrides the settings flags stand for (flags not given: none)."""
    flat = {
        "tasks": args.tasks,
        "image_size": args.image_size,
        "seed": args.seed,
        "bootstrap.offline_episodes": args.offline_episodes,
        "bootstrap.encoder_steps": args.encoder_steps,
        "bootstrap.bc_steps": args.bc_steps,
        "bootstrap.rl_steps": args.offline_rl_steps,
        "learner.publish_every": args.publish_every,
    }
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        if value is not None:
            *path, key = dotted.split(".")
            node = out
            for part in path:
                node = node.setdefault(part, {})
            node[key] = value
    return deep_merge(out, parse_set(args.set))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lwd_actor.bringup.bootstrap",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run-dir", type=Path, default=Path("runs/fleet"))
    add_settings_flags(p)
    a = p.parse_args(argv)
    try:
        cfg = deep_merge(load_fleet_yaml(a.fleet or default_fleet_file()), settings_overrides(a))
        settings = run_settings(cfg)
    except (FleetConfigError, FileNotFoundError, ValueError) as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        return 2
    bootstrap(settings, run_dir_layout(a.run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
