"""Bring up an lwd fleet, the operators' command: `ros2 launch lwd_actor fleet.launch.py`.

Arguments: fleet_file, num_robots, mode (sim|real), params_file, use_sim_time,
log_level, with_bridge, with_learner, run_dir, robot_id, remappings, data_plane (local|s3-queue) (`--show-args`
lists them). The logic lives in lwd_actor.bringup.ros_launch.
"""

from lwd_actor.bringup.ros_launch import fleet_launch_description


def generate_launch_description():
    return fleet_launch_description()
