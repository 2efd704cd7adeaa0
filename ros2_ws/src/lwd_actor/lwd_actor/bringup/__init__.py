"""Bring-up of robots and fleets: one description of a fleet, two ways to start it.

`description` expands a fleet YAML into the processes to run (ROS nodes with
namespaces and parameters, plus the bridge and learner). `launch/fleet.launch.py`
turns that list into launch_ros actions inside a ROS 2 distro; `supervisor`
starts the very same list from a plain venv, where `ros2 launch` does not exist.

It lives in lwd_actor because the operators' command is `ros2 launch lwd_actor
fleet.launch.py`: a launch that starts the actor cannot sit in a package the actor
depends on. The node never imports it (tests/packaging), so a robot runs the node
without the bring-up's logic in its process.
"""
