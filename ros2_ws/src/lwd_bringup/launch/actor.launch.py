"""One robot's actor: `ros2 launch lwd_bringup actor.launch.py namespace:=robot0 policy_path:=/p/v1.onnx`.

Outside a launch system start the same node with
`python -m lwd_actor.actor_node --ros-args -r __ns:=/robot0 --params-file <yaml> -p policy_path:=...`.
The logic lives in lwd_bringup.ros_launch.
"""

from lwd_bringup.ros_launch import actor_launch_description


def generate_launch_description():
    return actor_launch_description()
