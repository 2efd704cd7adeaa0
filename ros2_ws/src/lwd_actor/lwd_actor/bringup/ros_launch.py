"""The launch logic behind `ros2 launch lwd_actor fleet.launch.py` and `actor.launch.py`.

The launch files are thin: they call the functions here, so the logic is one
importable, testable module (it needs `launch`/`launch_ros`, which a ROS 2
distro has and the venv gets from the vendored launch stack). The processes
come from the same fleet description the venv launcher supervises
(lwd_actor.bringup.description), so both paths start identical graphs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import Action, LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.event_handlers import OnProcessIO
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from lwd_actor.bringup.bootstrap import with_run_dir_defaults
from lwd_actor.bringup.data_plane import DATA_PLANES
from lwd_actor.bringup.description import (
    FleetConfigError,
    ProcessSpec,
    expand_fleet,
    load_fleet_yaml,
    real_robots,
)
from lwd_actor.bringup.fleet_keys import ensure_fleet_keys


def _share(*parts: str) -> str:
    return str(Path(get_package_share_directory("lwd_actor"), *parts))


FLEET_ARGS: dict[str, tuple[str, str]] = {
    "fleet_file": ("", "fleet description YAML (default: lwd_actor's config/fleet.yaml)"),
    "num_robots": ("", "override the number of robots (robot0..robotN-1); real mode: one unless given"),
    "robot_id": (
        "",
        "real mode: the robot this launch drives (default: params_file's robot_id, else robot0)",
    ),
    "remappings": (
        "",
        "real mode: topic remappings of its actor, YAML, e.g. {joint_commands: /arm/commands}",
    ),
    "mode": ("", "sim or real (default: from the fleet file)"),
    "params_file": ("", "ROS params YAML with extra actor parameters (its /** section)"),
    "use_sim_time": ("", "true to run on /clock"),
    "log_level": ("info", "log level of every node"),
    "with_bridge": ("", "start the learner bridge here (true/false)"),
    "with_learner": ("", "start the online learner here (true/false)"),
    "run_dir": ("", "where logs, spools, the bridge store and policies go"),
    "data_plane": (
        "",
        f"{' or '.join(DATA_PLANES)}: s3-queue also starts an S3 server, a NATS queue and the coordinator "
        "here, episodes go to S3 (default: from the fleet file)",
    ),
}


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on")


def fleet_overrides(arg: dict[str, str], cfg: dict | None = None) -> dict:
    """Launch arguments -> overrides of the fleet description `cfg` (empty arguments change
    nothing). Real mode without `num_robots` brings up one robot (`description.real_robots`): the
    one named by `robot_id`, else by the params file's `robot_id`."""
    overrides: dict = {}
    if arg.get("num_robots"):
        overrides["num_robots"] = int(arg["num_robots"])
        overrides["robots"] = None
    if arg.get("mode"):
        overrides["mode"] = arg["mode"]
    if arg.get("use_sim_time"):
        overrides["use_sim_time"] = _flag(arg["use_sim_time"])
    if arg.get("run_dir"):
        overrides["run_dir"] = arg["run_dir"]
    if arg.get("with_bridge"):
        overrides["bridge"] = {"enabled": _flag(arg["with_bridge"])}
    if arg.get("with_learner"):
        overrides["learner"] = {"enabled": _flag(arg["with_learner"])}
    if arg.get("data_plane"):
        overrides["data_plane"] = arg["data_plane"]
    if arg.get("params_file"):
        with open(arg["params_file"]) as f:
            extra = yaml.safe_load(f) or {}
        overrides["actor_params"] = extra.get("/**", {}).get("ros__parameters", {})
    real = (arg.get("mode") or (cfg or {}).get("mode")) == "real"
    if (arg.get("robot_id") or arg.get("remappings")) and not real:
        raise FleetConfigError("robot_id and remappings are launch arguments of mode:=real")
    if real and not arg.get("num_robots"):
        remappings = yaml.safe_load(arg["remappings"]) if arg.get("remappings") else None
        if remappings is not None and not (
            isinstance(remappings, dict) and all(isinstance(v, str) for v in remappings.values())
        ):
            raise FleetConfigError(
                f"remappings must be a YAML mapping topic: topic, got {arg['remappings']!r}"
            )
        robot_id = arg.get("robot_id") or str(overrides.get("actor_params", {}).get("robot_id") or "")
        overrides["robots"] = real_robots(cfg or {}, robot_id, remappings)
    return overrides


def _fleet_actions(context, *_, **__):
    arg = {k: LaunchConfiguration(k).perform(context) for k in FLEET_ARGS}
    fleet_file = arg["fleet_file"] or _share("config", "fleet.yaml")
    cfg = load_fleet_yaml(fleet_file)
    overrides = with_run_dir_defaults(cfg, fleet_overrides(arg, cfg))
    fleet = expand_fleet(cfg, overrides)
    note = ensure_fleet_keys(fleet)
    actions: list[Action] = [LogInfo(msg=f"lwd: {note}")] if note else []
    # Stage by stage, as the venv supervisor does: the data plane's servers (stage 0) first, the rest
    # once each of them printed its ready marker (launch stops everything at once on Ctrl-C; the
    # bridge's episodes a stopped queue did not take are announced at its next start).
    stages = sorted({spec.stage for spec in fleet.processes})
    later: list[Action] = []
    for stage in reversed(stages):
        now = [
            (spec, _process_action(spec, arg["log_level"])) for spec in fleet.processes if spec.stage == stage
        ]
        gated = [(spec, action) for spec, action in now if spec.ready_log_marker]
        if later and gated:
            later = [action for _, action in now] + _when_ready(gated, later)
        else:
            later = [action for _, action in now] + later
    return actions + later


def _when_ready(servers: list[tuple[ProcessSpec, ExecuteProcess]], then: list[Action]) -> list[Action]:
    """Event handlers that start `then` once every one of `servers` printed its ready_log_marker."""
    pending = {spec.name for spec, _ in servers}
    handlers: list[Action] = []
    for spec, action in servers:

        def on_output(event, name=spec.name, marker=spec.ready_log_marker):
            if name not in pending or marker not in event.text.decode(errors="replace"):
                return None
            pending.discard(name)
            return None if pending else [LogInfo(msg="lwd: data plane ready"), *then]

        handlers.append(
            RegisterEventHandler(OnProcessIO(target_action=action, on_stdout=on_output, on_stderr=on_output))
        )
    return handlers


def _process_action(spec: ProcessSpec, log_level: str) -> ExecuteProcess:
    if spec.ros:
        return Node(
            package=spec.package,
            executable=spec.executable,
            name=spec.node_name,
            namespace=spec.namespace,
            parameters=[spec.parameters],
            remappings=list(spec.remappings),
            arguments=["--ros-args", "--log-level", log_level],
            output="screen",
            respawn=spec.restart,
            respawn_delay=2.0,
        )
    # This interpreter, not whatever `python3` is on PATH: the venv's has our packages.
    # launch escalates SIGINT -> SIGTERM after sigterm_timeout; the learner treats both as
    # "checkpoint and exit", so its grace is the time before SIGTERM (then 5 s to SIGKILL).
    extra: dict[str, Any] = {}
    if spec.shutdown_grace_s is not None:
        extra["sigterm_timeout"] = str(spec.shutdown_grace_s)
    if spec.env:
        extra["additional_env"] = dict(spec.env)
    return ExecuteProcess(
        cmd=[sys.executable, "-m", spec.module, *spec.args],
        name=spec.name,
        output="screen",
        respawn=spec.restart,
        respawn_delay=2.0,
        **extra,
    )


def fleet_launch_description(defaults: dict[str, str] | None = None) -> LaunchDescription:
    """The fleet: bridge, learner and per robot the actor (+ simulator and operator in sim mode).

    `defaults` replaces argument defaults (the whole-system launch turns the bridge and learner on).
    """
    defaults = defaults or {}
    declared = [
        DeclareLaunchArgument(k, default_value=defaults.get(k, v), description=d)
        for k, (v, d) in FLEET_ARGS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_fleet_actions)])


ACTOR_ARGS: dict[str, tuple[str, str]] = {
    "namespace": ("robot0", "robot namespace"),
    "params_file": ("", "actor parameters (YAML, /** wildcards; default: lwd_actor's config/actor.yaml)"),
    "policy_path": ("", "ONNX policy"),
    "use_sim_time": ("false", "follow /clock"),
    "autostart": ("true", "configure + activate at start-up"),
    "log_level": ("info", "logging level"),
}


def _actor_actions(context, *_, **__):
    arg = {k: LaunchConfiguration(k).perform(context) for k in ACTOR_ARGS}
    return [
        LifecycleNode(
            package="lwd_actor",
            executable="actor_node",
            name="actor",
            namespace=arg["namespace"],
            output="screen",
            parameters=[
                arg["params_file"] or _share("config", "actor.yaml"),
                {
                    "robot_id": arg["namespace"].strip("/"),
                    "policy_path": arg["policy_path"],
                    "use_sim_time": _flag(arg["use_sim_time"]),
                    "autostart": _flag(arg["autostart"]),
                },
            ],
            arguments=["--ros-args", "--log-level", arg["log_level"]],
        )
    ]


def actor_launch_description() -> LaunchDescription:
    """One robot's actor, for robots that publish real topics."""
    declared = [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in ACTOR_ARGS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_actor_actions)])
