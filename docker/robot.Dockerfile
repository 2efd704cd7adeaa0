# Robot image: a ROS 2 distro with lwd_msgs, lwd_common, lwd_actor, lwd_sim and
# lwd_learner_bridge colcon-built into /opt/lwd. Build from the repo root:
#   docker build -f docker/robot.Dockerfile -t lwd-robot .
# Run the fleet:  docker run --rm -it --net=host lwd-robot ros2 launch lwd_actor fleet.launch.py
FROM ros:kilted-ros-base

ENV DEBIAN_FRONTEND=noninteractive PIP_BREAK_SYSTEM_PACKAGES=1
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3-pip python3-numpy python3-opencv python3-zmq python3-msgpack python3-yaml \
        ros-kilted-sensor-msgs ros-kilted-trajectory-msgs ros-kilted-diagnostic-msgs \
        ros-kilted-lifecycle-msgs ros-kilted-rosgraph-msgs ros-kilted-launch-ros \
        libegl1 \
    && rm -rf /var/lib/apt/lists/*
# ONNX Runtime (GPU wheel falls back to CPU), MuJoCo for the simulated robots.
COPY requirements.txt /tmp/requirements.txt
RUN pip3 install --no-cache-dir \
        "$(grep -E '^onnxruntime-gpu==' /tmp/requirements.txt)" \
        "$(grep -E '^onnx==' /tmp/requirements.txt)" \
        "$(grep -E '^mujoco==' /tmp/requirements.txt)" \
        "$(grep -E '^tqdm==' /tmp/requirements.txt)"

WORKDIR /opt/lwd_ws
COPY ros2_ws/src src
COPY urdf /opt/lwd/urdf
ENV LWD_URDF=/opt/lwd/urdf/g1_dual_arm.urdf MUJOCO_GL=egl
RUN . /opt/ros/kilted/setup.sh && colcon build --install-base /opt/lwd --cmake-args -DBUILD_TESTING=OFF

RUN printf '#!/bin/bash\nset -e\n. /opt/ros/kilted/setup.bash\n. /opt/lwd/setup.bash\nexec "$@"\n' \
        > /ros_entrypoint.sh && chmod +x /ros_entrypoint.sh
ENTRYPOINT ["/ros_entrypoint.sh"]
CMD ["ros2", "launch", "lwd_actor", "fleet.launch.py"]
