"""The run's settings (robot, tasks, image size, seed, budgets, learner preset) are read from the
fleet file once and reach every process that needs them; bad ones are refused naming the field."""

from __future__ import annotations

import pytest

from lwd_actor.bringup.bootstrap import settings_overrides, with_run_dir_defaults
from lwd_actor.bringup.description import (
    FleetConfigError,
    deep_merge,
    default_fleet_file,
    expand_fleet,
    load_fleet_yaml,
)
from lwd_actor.bringup.main import make_parser
from lwd_actor.bringup.settings import RunSettings, run_settings


def bootstrapped(tmp_path, **fleet) -> tuple[dict, dict]:
    (tmp_path / "offline_learner").mkdir()
    (tmp_path / "offline_learner" / "policy.onnx").write_bytes(b"onnx")
    cfg = {"run_dir": str(tmp_path), "learner": {"enabled": True}, **fleet}
    return cfg, with_run_dir_defaults(cfg, {})


def test_the_default_fleet_file_says_what_the_settings_default_to():
    assert run_settings(load_fleet_yaml(default_fleet_file())) == RunSettings()


def test_the_image_size_reaches_the_simulator_and_the_online_learner(tmp_path):
    cfg, overrides = bootstrapped(tmp_path, image_size=32, num_robots=2)
    fleet = expand_fleet(cfg, overrides)
    for rid in ("robot0", "robot1"):
        params = fleet.by_name(f"{rid}.sim_robot").parameters
        assert (params["image_width"], params["image_height"]) == (32, 32)
    args = list(fleet.by_name("learner").args)
    i = args.index("--model.encoder.image-size")
    assert args[i + 1 : i + 3] == ["32", "32"]
    assert "--image-size" not in args  # the learner's own flag, not a legacy alias


def test_robots_cycle_through_the_tasks(tmp_path):
    cfg, overrides = bootstrapped(tmp_path, tasks=["can_to_bin", "drawer_restock"], num_robots=3)
    fleet = expand_fleet(cfg, overrides)
    tasks = [fleet.by_name(f"robot{i}.sim_robot").parameters["task"] for i in range(3)]
    assert tasks == ["can_to_bin", "drawer_restock", "can_to_bin"]
    assert fleet.by_name("robot1.sim_operator").parameters["task"] == "drawer_restock"


def test_a_robots_own_params_win_over_the_settings(tmp_path):
    robots = [{"id": "a", "params": {"sim_robot": {"task": "drawer_restock", "image_width": 48}}}]
    cfg, overrides = bootstrapped(tmp_path, robots=robots)
    params = expand_fleet(cfg, overrides).by_name("a.sim_robot").parameters
    assert (params["task"], params["image_width"], params["image_height"]) == ("drawer_restock", 48, 64)


def test_the_fleet_files_robot_reaches_the_actors_only_when_it_names_one():
    named = expand_fleet({"mode": "real", "robot": "single_arm_6dof", "bridge": {"enabled": False}})
    assert named.by_name("robot0.actor").parameters["robot"] == "single_arm_6dof"
    unnamed = expand_fleet({"mode": "real", "bridge": {"enabled": False}})
    assert "robot" not in unnamed.by_name("robot0.actor").parameters  # a params file may name it


@pytest.mark.parametrize(
    ("fleet", "field"),
    [
        ({"image_size": "big"}, "image_size"),
        ({"image_size": 4}, "image_size"),
        ({"tasks": []}, "tasks"),
        ({"seed": 1.5}, "seed"),
        ({"bootstrap": {"offline_episodes": 0}}, "bootstrap.offline_episodes"),
        ({"bootstrap": {"bc_step": 10}}, "bc_step"),
        ({"learner": {"publish_every": -1}}, "learner.publish_every"),
        ({"robot": "single_arm_6dof"}, "simulator has the g1_dual_arm only"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(fleet, field):
    with pytest.raises(FleetConfigError, match=field):
        expand_fleet(fleet)


def test_command_line_flags_override_the_fleet_file_and_absent_ones_do_not():
    args = make_parser().parse_args(["--image-size", "48", "--bc-steps", "100", "--set", "seed=7"])
    cfg = load_fleet_yaml(default_fleet_file())
    settings = run_settings(deep_merge(cfg, settings_overrides(args)))
    assert (settings.image_size, settings.seed, settings.bootstrap.bc_steps) == (48, 7, 100)
    assert settings.tasks == RunSettings().tasks and settings.bootstrap.offline_episodes == 60
