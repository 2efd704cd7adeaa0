"""One robot's actor (ROS 2 distro only: needs launch_ros, which is not on PyPI).

    ros2 launch lwd_actor actor.launch.py namespace:=robot0 policy_path:=/policies/v000001.onnx

Outside a distro start the same node with
`python -m lwd_actor.actor_node --ros-args -r __ns:=/robot0 --params-file <yaml> -p policy_path:=...`.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("lwd_actor"), "config", "actor.yaml")
    args = {
        "namespace": ("robot0", "robot namespace"),
        "params_file": (default_params, "actor parameters (YAML, /** wildcards)"),
        "policy_path": ("", "ONNX policy"),
        "use_sim_time": ("false", "follow /clock"),
        "autostart": ("true", "configure + activate at start-up"),
        "log_level": ("info", "logging level"),
    }
    actions = [DeclareLaunchArgument(name, default_value=default, description=desc)
               for name, (default, desc) in args.items()]
    actions.append(LifecycleNode(
        package="lwd_actor",
        executable="actor_node",
        name="actor",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "robot_id": LaunchConfiguration("namespace"),
                "policy_path": LaunchConfiguration("policy_path"),
                "use_sim_time": LaunchConfiguration("use_sim_time"),
                "autostart": LaunchConfiguration("autostart"),
            },
        ],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    ))
    return LaunchDescription(actions)
