"""ROS-free pieces shared by the robot, the bridge and the learner."""
