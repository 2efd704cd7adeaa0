"""ROS-free core of the onboard actor: scheduling, safety, episodes, recording, inference.

Nothing in this package imports rclpy; the node in `lwd_actor.actor_node` only wires
ROS topics, parameters, services and timers to these classes. Time enters as
arguments (control step indices and timestamps in seconds), so tests are deterministic.
"""
