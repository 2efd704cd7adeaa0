"""What the fleet launch file hands the launch system, read from its actions without starting them."""

from __future__ import annotations

from launchstack import REASON  # noqa: F401  (skips this file without the launch stack)


def fleet_actions(run_dir, **args: str) -> list:
    from launch import LaunchContext
    from launch.utilities import perform_substitutions

    from lwd_actor.bringup import ros_launch

    context = LaunchContext()
    for name, (default, _) in ros_launch.FLEET_ARGS.items():
        context.launch_configurations[name] = default
    context.launch_configurations.update({"run_dir": str(run_dir), **args})
    actions = ros_launch._fleet_actions(context)
    return [(a, lambda subs: perform_substitutions(context, subs)) for a in actions]


def test_the_learner_has_a_minute_to_checkpoint_before_launch_escalates_to_sigterm(tmp_path):
    from launch.actions import ExecuteProcess

    # A bootstrapped run directory (the actions are only built, so the file's presence is enough).
    (tmp_path / "offline_learner").mkdir()
    (tmp_path / "offline_learner" / "policy.onnx").write_bytes(b"")
    timeouts = {
        perform(a.name): float(perform(a.sigterm_timeout))
        for a, perform in fleet_actions(tmp_path, with_bridge="true", with_learner="true", num_robots="1")
        if isinstance(a, ExecuteProcess) and a.name is not None
    }
    assert timeouts["learner"] == 60.0
    assert timeouts["bridge"] == 5.0  # launch's default for every other process


def test_the_whole_system_launch_file_starts_the_bridge_and_the_learner_by_default(tmp_path):
    """launch/system.launch.py is the fleet launch with the bridge and the learner on, whatever the
    fleet file says; its other arguments keep the fleet launch's defaults."""
    from pathlib import Path

    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
    from launch.launch_description_sources import get_launch_description_from_python_launch_file
    from launch.utilities import perform_substitutions

    from lwd_actor.bringup import ros_launch

    path = Path(__file__).resolve().parents[2] / "launch" / "system.launch.py"
    description = get_launch_description_from_python_launch_file(str(path))
    defaults = {
        a.name: "".join(s.text for s in a.default_value)
        for a in description.entities
        if isinstance(a, DeclareLaunchArgument)
    }
    assert defaults["with_bridge"] == defaults["with_learner"] == "true"
    fleet_defaults = {k: v for k, (v, _) in ros_launch.FLEET_ARGS.items()}
    assert {k: v for k, v in defaults.items() if not k.startswith("with_")} == {
        k: v for k, v in fleet_defaults.items() if not k.startswith("with_")
    }

    (tmp_path / "offline_learner").mkdir()
    (tmp_path / "offline_learner" / "policy.onnx").write_bytes(b"")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("fleet:\n  num_robots: 1\n  bridge: {enabled: false}\n  learner: {enabled: false}\n")
    context = LaunchContext()
    context.launch_configurations.update({**defaults, "run_dir": str(tmp_path), "fleet_file": str(fleet)})
    (opaque,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    names = {
        perform_substitutions(context, a.name)
        for a in opaque.execute(context)
        if isinstance(a, ExecuteProcess) and a.name is not None
    }
    assert {"bridge", "learner"} <= names
