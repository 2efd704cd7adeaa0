"""The operators' command, `ros2 launch lwd_actor fleet.launch.py`: lwd_bringup's fleet launch.

Same arguments (`--show-args`); the bring-up package owns the logic and the parameter files.
"""

from lwd_bringup.ros_launch import fleet_launch_description


def generate_launch_description():
    return fleet_launch_description()
