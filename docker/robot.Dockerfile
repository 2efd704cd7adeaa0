# Robot image: what a robot runs, nothing more — a ROS 2 distro with lwd_msgs, lwd_common,
# lwd_description, lwd_actor and lwd_bringup colcon-built into /opt/lwd. No learner, no JAX.
# With --build-arg LWD_MODE=sim it also holds the simulator (lwd_sim + MuJoCo) for a simulated
# robot; the default (real) has no MuJoCo. Python packages use the pins of constraints.txt.
#   docker build -f docker/robot.Dockerfile -t lwd-robot .
#   docker run --rm -it --net=host -v /etc/lwd:/etc/lwd lwd-robot \
#       ros2 launch lwd_actor fleet.launch.py mode:=real with_bridge:=false with_learner:=false \
#       params_file:=/etc/lwd/actor.yaml
# (the default CMD is that bring-up with the params file at /etc/lwd/actor.yaml: it must give
# robot_id, policy_path and bridge_endpoint for your robot; topic remappings go on the command line,
# remappings:='{joint_commands: /arm_controller/commands}': a params file cannot carry them.)
FROM ros:kilted-ros-base

ARG LWD_MODE=real
ENV DEBIAN_FRONTEND=noninteractive PIP_BREAK_SYSTEM_PACKAGES=1
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3-pip python3-yaml \
        ros-kilted-sensor-msgs ros-kilted-trajectory-msgs ros-kilted-diagnostic-msgs \
        ros-kilted-lifecycle-msgs ros-kilted-rosgraph-msgs ros-kilted-launch-ros \
    && if [ "$LWD_MODE" = sim ]; then apt-get install -y --no-install-recommends libegl1; fi \
    && rm -rf /var/lib/apt/lists/*
# The robot's Python dependencies, pinned exactly as in the project venv.
COPY constraints.txt /tmp/constraints.txt
RUN pip3 install --no-cache-dir -c /tmp/constraints.txt \
        onnxruntime-gpu onnx numpy opencv-python-headless pyzmq msgpack \
    && if [ "$LWD_MODE" = sim ]; then pip3 install --no-cache-dir -c /tmp/constraints.txt mujoco tqdm; fi

WORKDIR /opt/lwd_ws
COPY ros2_ws/src/lwd_msgs src/lwd_msgs
COPY ros2_ws/src/lwd_common src/lwd_common
COPY ros2_ws/src/lwd_description src/lwd_description
COPY ros2_ws/src/lwd_actor src/lwd_actor
COPY ros2_ws/src/lwd_bringup src/lwd_bringup
COPY ros2_ws/src/lwd_sim /tmp/lwd_sim
RUN if [ "$LWD_MODE" = sim ]; then mv /tmp/lwd_sim src/lwd_sim; else rm -rf /tmp/lwd_sim; fi
ENV MUJOCO_GL=egl
# lwd_bringup also names the simulator and the bridge for whole-fleet launches; a robot image
# skips those keys (rosdep is not run here), so colcon builds only what was copied.
RUN . /opt/ros/kilted/setup.sh && colcon build --install-base /opt/lwd --cmake-args -DBUILD_TESTING=OFF

RUN printf '#!/bin/bash\nset -e\n. /opt/ros/kilted/setup.bash\n. /opt/lwd/setup.bash\nexec "$@"\n' \
        > /ros_entrypoint.sh && chmod +x /ros_entrypoint.sh
ENTRYPOINT ["/ros_entrypoint.sh"]
CMD ["ros2", "launch", "lwd_actor", "fleet.launch.py", "mode:=real", "with_bridge:=false", \
     "with_learner:=false", "params_file:=/etc/lwd/actor.yaml"]
