"""The run's settings, typed and in one place: the fleet file's `robot`, `tasks`, `image_size`,
`seed`, `bootstrap` and `learner` budgets, read once by every path that starts a fleet.

Before, the image size travelled as argv text to three processes under two flag spellings, with its
default written in eight files. Now the fleet file (config/fleet.yaml) says it once, `RunSettings`
checks it, and the bring-up derives every process's flags and parameters from it: the simulator's
render size and task per robot, the actors' robot description, the bootstrap's data generation and
offline pretraining, and the online learner's arguments.

    fleet:
      robot: g1_dual_arm            # lwd_description robot; the simulator has the G1 only
      tasks: [can_to_bin]           # simulated tasks; robot i works on tasks[i % len(tasks)]
      image_size: 64                # square camera frames, as rendered and as the policy sees them
      seed: 0                       # offline data and pretraining
      bootstrap: {offline_episodes: 60, encoder_steps: null, bc_steps: null, rl_steps: null}
      learner: {preset: fleet, publish_every: 50, ...}

Budgets left null come from the learner's preset (lwd_learner.config.PRESETS, the one place they
are set).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

SIMULATED_ROBOT = "g1_dual_arm"


class FleetConfigError(ValueError):
    """The fleet description is invalid; the message says where."""


@dataclass(frozen=True)
class BootstrapBudget:
    """What `./lwd fleet` makes before the fleet starts: the offline buffer and its pretraining."""

    offline_episodes: int = 60
    encoder_steps: int | None = None
    bc_steps: int | None = None
    rl_steps: int | None = None


@dataclass(frozen=True)
class RunSettings:
    robot: str = SIMULATED_ROBOT
    tasks: tuple[str, ...] = ("can_to_bin",)
    image_size: int = 64
    seed: int = 0
    learner_preset: str = "fleet"
    publish_every: int = 50
    bootstrap: BootstrapBudget = BootstrapBudget()

    def task_of(self, robot_index: int) -> str:
        return self.tasks[robot_index % len(self.tasks)]

    def offline_learner_flags(self) -> list[str]:
        """`lwd_learner.cli offline` flags: the preset plus what these settings fix or override."""
        size = str(self.image_size)
        flags = ["--preset", self.learner_preset, "--robot", self.robot]
        flags += ["--model.encoder.image-size", size, size, "--train.seed", str(self.seed)]
        budget = self.bootstrap
        for flag, value in (
            ("--train.encoder-steps", budget.encoder_steps),
            ("--train.bc-steps", budget.bc_steps),
            ("--train.rl-steps", budget.rl_steps),
        ):
            if value is not None:
                flags += [flag, str(value)]
        return flags

    def online_learner_flags(self) -> list[str]:
        size = str(self.image_size)
        return ["--model.encoder.image-size", size, size, "--train.publish-every", str(self.publish_every)]


def _positive_int(where: str, value: Any, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_none else 1):
        kind = "a non-negative integer or null" if allow_none else "a positive integer"
        raise FleetConfigError(f"{where} must be {kind}, got {value!r}")
    return value


def _known_keys(where: str, mapping: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise FleetConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")


def run_settings(cfg: dict[str, Any]) -> RunSettings:
    """The settings of a fleet mapping (the `fleet:` section, overrides merged), checked; a
    FleetConfigError names the field."""
    defaults = RunSettings()
    robot = cfg.get("robot", defaults.robot)
    if not isinstance(robot, str) or not robot:
        raise FleetConfigError(f"robot must be a robot description name, got {robot!r}")
    if cfg.get("mode", "sim") == "sim" and robot != SIMULATED_ROBOT:
        raise FleetConfigError(f"the simulator has the {SIMULATED_ROBOT} only, got robot {robot!r}")
    tasks = cfg.get("tasks", list(defaults.tasks))
    if isinstance(tasks, str):
        tasks = [tasks]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise FleetConfigError(f"tasks must be a non-empty list of task names, got {tasks!r}")
    image_size = _positive_int("image_size", cfg.get("image_size", defaults.image_size))
    if image_size < 8:
        raise FleetConfigError(f"image_size must be at least 8, got {image_size}")
    seed = cfg.get("seed", defaults.seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise FleetConfigError(f"seed must be an integer, got {seed!r}")

    bootstrap = cfg.get("bootstrap") or {}
    if not isinstance(bootstrap, dict):
        raise FleetConfigError(f"bootstrap must be a mapping, got {bootstrap!r}")
    budget_keys = {f.name for f in fields(BootstrapBudget)}
    _known_keys("bootstrap", bootstrap, budget_keys)
    budget = BootstrapBudget(
        offline_episodes=_positive_int(
            "bootstrap.offline_episodes",
            bootstrap.get("offline_episodes", defaults.bootstrap.offline_episodes),
        ),
        **{
            k: _positive_int(f"bootstrap.{k}", bootstrap.get(k), allow_none=True)
            for k in sorted(budget_keys - {"offline_episodes"})
        },
    )

    learner = cfg.get("learner") or {}
    preset = learner.get("preset", defaults.learner_preset)
    if not isinstance(preset, str) or not preset:
        raise FleetConfigError(f"learner.preset must be a preset name, got {preset!r}")
    publish_every = _positive_int(
        "learner.publish_every", learner.get("publish_every", defaults.publish_every)
    )
    return RunSettings(robot, tuple(tasks), image_size, seed, preset, publish_every, budget)
