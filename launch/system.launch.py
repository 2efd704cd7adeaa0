"""Whole system on one machine (fleet + bridge + learner), for a ROS 2 distro:

    ros2 launch launch/system.launch.py [num_robots:=4] [use_sim_time:=true]

It is the fleet launch file with the bridge and the online learner forced on;
put them on other hosts by using fleet.launch.py with with_bridge:=false
with_learner:=false there.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def generate_launch_description():
    fleet = os.path.join(get_package_share_directory("lwd_actor"), "launch", "fleet.launch.py")
    passthrough = ["num_robots", "use_sim_time", "log_level", "run_dir", "params_file"]
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value="") for name in passthrough if name != "log_level"]
        + [DeclareLaunchArgument("log_level", default_value="info")]
        + [
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(fleet),
                launch_arguments={
                    **{name: LaunchConfiguration(name) for name in passthrough},
                    "with_bridge": "true",
                    "with_learner": "true",
                }.items(),
            )
        ]
    )
