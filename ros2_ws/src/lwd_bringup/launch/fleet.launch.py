"""Bring up an lwd fleet: `ros2 launch lwd_bringup fleet.launch.py` (operators: `lwd_actor`, same file).

Arguments: fleet_file, num_robots, mode (sim|real), params_file, use_sim_time,
log_level, with_bridge, with_learner, run_dir (`--show-args` lists them). The
logic lives in lwd_bringup.ros_launch.
"""

from lwd_bringup.ros_launch import fleet_launch_description


def generate_launch_description():
    return fleet_launch_description()
