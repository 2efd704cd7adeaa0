"""What the fleet launch file hands the launch system, read from its actions without starting them."""

from __future__ import annotations

from launchstack import REASON  # noqa: F401  (skips this file without the launch stack)


def fleet_actions(run_dir, **args: str) -> list:
    from launch import LaunchContext
    from launch.utilities import perform_substitutions

    from lwd_bringup import ros_launch

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
