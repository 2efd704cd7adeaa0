"""`ros2 launch lwd_actor actor.launch.py namespace:=robot0 policy_path:=...`: lwd_bringup's actor launch."""

from lwd_bringup.ros_launch import actor_launch_description


def generate_launch_description():
    return actor_launch_description()
