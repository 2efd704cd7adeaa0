"""`ros2 launch lwd_actor actor.launch.py namespace:=robot0 policy_path:=...`: one actor, no simulator or bridge."""

from lwd_actor.bringup.ros_launch import actor_launch_description


def generate_launch_description():
    return actor_launch_description()
