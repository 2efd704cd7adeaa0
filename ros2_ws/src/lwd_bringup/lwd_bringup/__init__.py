"""One description of a fleet, two ways to start it.

`description` expands a fleet YAML into the processes to run (ROS nodes with
namespaces and parameters, plus the bridge and learner). `launch/fleet.launch.py`
turns that list into launch_ros actions inside a ROS 2 distro; `supervisor`
starts the very same list from a plain venv, where `ros2 launch` does not exist.
"""
