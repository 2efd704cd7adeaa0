"""Bring up an lwd fleet in a ROS 2 distro: `ros2 launch lwd_actor fleet.launch.py`.

The processes come from the same fleet description the venv launcher uses
(lwd_actor.fleet.description), so both paths start identical graphs.

Arguments: fleet_file, num_robots, mode (sim|real), params_file (extra actor
parameters, a ROS params YAML), use_sim_time, log_level, with_bridge,
with_learner, run_dir.
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from lwd_actor.fleet.description import expand_fleet, load_fleet_yaml

ARGS = {
    "fleet_file": (os.path.join(get_package_share_directory("lwd_actor"), "config", "fleet.yaml"),
                   "fleet description YAML"),
    "num_robots": ("", "override the number of robots (robot0..robotN-1)"),
    "mode": ("", "sim or real (default: from the fleet file)"),
    "params_file": ("", "ROS params YAML with extra actor parameters (its /** section)"),
    "use_sim_time": ("", "true to run on /clock"),
    "log_level": ("info", "log level of every node"),
    "with_bridge": ("", "start the learner bridge here (true/false)"),
    "with_learner": ("", "start the online learner here (true/false)"),
    "run_dir": ("", "where logs, spools, the bridge store and policies go"),
}


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on")


def _expand(context, *_, **__):
    arg = {k: LaunchConfiguration(k).perform(context) for k in ARGS}
    overrides = {}
    if arg["num_robots"]:
        overrides["num_robots"] = int(arg["num_robots"])
        overrides["robots"] = None
    if arg["mode"]:
        overrides["mode"] = arg["mode"]
    if arg["use_sim_time"]:
        overrides["use_sim_time"] = _flag(arg["use_sim_time"])
    if arg["run_dir"]:
        overrides["run_dir"] = arg["run_dir"]
    if arg["with_bridge"]:
        overrides["bridge"] = {"enabled": _flag(arg["with_bridge"])}
    if arg["with_learner"]:
        overrides["learner"] = {"enabled": _flag(arg["with_learner"])}
    if arg["params_file"]:
        with open(arg["params_file"]) as f:
            extra = yaml.safe_load(f) or {}
        overrides["actor_params"] = extra.get("/**", {}).get("ros__parameters", {})
    fleet = expand_fleet(load_fleet_yaml(arg["fleet_file"]), overrides)
    actions = []
    for spec in fleet.processes:
        if spec.ros:
            actions.append(Node(
                package=spec.package,
                executable=spec.executable,
                name=spec.node_name,
                namespace=spec.namespace,
                parameters=[spec.parameters],
                remappings=list(spec.remappings),
                arguments=["--ros-args", "--log-level", arg["log_level"]],
                output="screen",
                respawn=spec.restart,
                respawn_delay=2.0,
            ))
        else:
            actions.append(ExecuteProcess(
                cmd=["python3", "-m", spec.module, *spec.args], name=spec.name, output="screen",
                respawn=spec.restart, respawn_delay=2.0,
            ))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in ARGS.items()]
        + [OpaqueFunction(function=_expand)]
    )
