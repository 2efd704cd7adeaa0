"""Whole system on one machine (fleet + bridge + learner):

    ros2 launch launch/system.launch.py [num_robots:=4] [use_sim_time:=true]

It is the fleet launch with the bridge and the online learner forced on; put
them on other hosts by using fleet.launch.py with with_bridge:=false
with_learner:=false there.
"""

from lwd_actor.bringup.ros_launch import fleet_launch_description


def generate_launch_description():
    return fleet_launch_description(defaults={"with_bridge": "true", "with_learner": "true"})
