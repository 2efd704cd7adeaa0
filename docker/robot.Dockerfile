# Robot image: what a robot runs, nothing more — the ROS 2 distro with lwd_msgs, lwd_common,
# lwd_description and lwd_actor colcon-built into /opt/lwd. No learner, no JAX.
# Two variants (build targets): `cpu` (the default: onnxruntime) and `gpu` (onnxruntime-gpu with the
# CUDA 13 / cuDNN 9 runtime from NVIDIA's wheels). With --build-arg LWD_MODE=sim either also holds
# the simulator (lwd_sim + MuJoCo) for a simulated robot; the default (real) has no MuJoCo.
#   docker build -f docker/robot.Dockerfile --target cpu -t lwd-robot:cpu .
#   docker build -f docker/robot.Dockerfile --target gpu -t lwd-robot:gpu .
#   docker run --rm -it --net=host -v /etc/lwd:/etc/lwd lwd-robot:cpu
#   docker run --rm -it --net=host --gpus all -v /etc/lwd:/etc/lwd lwd-robot:gpu   (prefer_cuda: true)
# The default CMD is the README's real-robot bring-up with the params file at /etc/lwd/actor.yaml:
# it must give robot_id, policy_path and bridge_endpoint for your robot; topic remappings go on the
# command line, remappings:='{joint_commands: /arm_controller/commands}': a params file cannot carry
# them.
#
# Python: the distro's. ros:kilted is Ubuntu 24.04 with CPython 3.12 and python3-numpy 1.26, and
# the distro's message packages (and lwd_msgs, built here by the distro's rosidl) have their C
# typesupport compiled against that numpy, so it is never replaced: numpy, PyYAML, pyzmq and
# msgpack come from apt (`ros2 launch`, the distro's /usr/bin/python3, imports them through the
# launch file), and what the distro lacks (ONNX Runtime, a recent onnx, a headless OpenCV) goes into
# a venv layered over the distro's packages (--system-site-packages), pinned by
# docker/robot-constraints.txt (resolved for cp312 against numpy 1.26.4; not constraints.txt, the
# dev venv's CPython 3.11 / numpy 2 freeze). colcon runs under the venv's interpreter, so the nodes'
# executables start it; docker/robot_image_check.py checks the result at the end of each variant.
FROM ros:kilted-ros-base-noble AS base

ARG LWD_MODE=real
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3-venv python3-numpy python3-yaml python3-zmq python3-msgpack \
        ros-kilted-rclpy ros-kilted-launch ros-kilted-launch-ros ros-kilted-ament-index-python \
        ros-kilted-ament-cmake ros-kilted-rosidl-default-generators ros-kilted-rosidl-default-runtime \
        ros-kilted-builtin-interfaces ros-kilted-std-msgs ros-kilted-sensor-msgs \
        ros-kilted-trajectory-msgs ros-kilted-diagnostic-msgs ros-kilted-lifecycle-msgs \
        ros-kilted-rcl-interfaces ros-kilted-rosgraph-msgs \
    && if [ "$LWD_MODE" = sim ]; then apt-get install -y --no-install-recommends libegl1; fi \
    && rm -rf /var/lib/apt/lists/*

# The venv: the distro's packages stay visible and in charge; pip only adds to them.
RUN python3 -m venv --system-site-packages /opt/lwd_venv
ENV PATH=/opt/lwd_venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY docker/robot-constraints.txt /opt/lwd_venv/robot-constraints.txt
# robot-constraints.txt pins the distro's numpy, so no requirement can bring in another; a base
# image whose numpy moved on stops the build here instead of being replaced.
RUN distro_numpy="$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)')" \
    && grep -qx "numpy==$distro_numpy" /opt/lwd_venv/robot-constraints.txt \
    || { echo "the base image's numpy is $distro_numpy, robot-constraints.txt pins another:" \
              "re-resolve it for this numpy (docker/check_robot_constraints.sh)" >&2; exit 1; }
RUN /opt/lwd_venv/bin/pip install --only-binary=:all: -c /opt/lwd_venv/robot-constraints.txt \
        onnx opencv-python-headless \
    && if [ "$LWD_MODE" = sim ]; then /opt/lwd_venv/bin/pip install --only-binary=:all: \
        -c /opt/lwd_venv/robot-constraints.txt mujoco tqdm; fi

WORKDIR /opt/lwd_ws
COPY ros2_ws/src/lwd_msgs src/lwd_msgs
COPY ros2_ws/src/lwd_common src/lwd_common
COPY ros2_ws/src/lwd_description src/lwd_description
# The package's urdf/ is a link to the repository's top-level urdf/ (the one copy): the files go in
# its place.
RUN rm src/lwd_description/urdf
COPY urdf src/lwd_description/urdf
COPY ros2_ws/src/lwd_actor src/lwd_actor
COPY ros2_ws/src/lwd_sim /tmp/lwd_sim
RUN if [ "$LWD_MODE" = sim ]; then mv /tmp/lwd_sim src/lwd_sim; else rm -rf /tmp/lwd_sim; fi
ENV MUJOCO_GL=egl
# colcon as a ROS user runs it, with the distro's ament and rosidl, but under the venv's
# interpreter (the usual venv recipe's `python -m colcon build`, here by running colcon's script
# with it): colcon runs setup.py with its own interpreter, and setuptools writes that into the
# nodes' executables. lwd_msgs' typesupport is built by the distro's python3 against the distro's
# numpy, like every distro message package.
# lwd_actor's bring-up also names the simulator and the bridge for whole-fleet launches; a robot image
# skips those keys (rosdep is not run here), so colcon builds only what was copied.
RUN . /opt/ros/kilted/setup.sh \
    && /opt/lwd_venv/bin/python3 /usr/bin/colcon build --install-base /opt/lwd \
        --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE=/usr/bin/python3 \
    && rm -rf build log

COPY docker/robot_image_check.py /opt/lwd_check/robot_image_check.py
RUN printf '#!/bin/bash\nset -e\n. /opt/ros/kilted/setup.bash\n. /opt/lwd/setup.bash\nexec "$@"\n' \
        > /ros_entrypoint.sh && chmod +x /ros_entrypoint.sh
ENTRYPOINT ["/ros_entrypoint.sh"]
CMD ["ros2", "launch", "lwd_actor", "fleet.launch.py", "mode:=real", "params_file:=/etc/lwd/actor.yaml", \
     "with_bridge:=false", "with_learner:=false"]

# GPU variant: onnxruntime-gpu 1.31 is built against CUDA 13 and cuDNN 9 and ships neither; NVIDIA's
# wheels (lwd_actor's `cuda` extra, docs/actor.md "GPU inference") put them in the venv, and the
# dynamic loader is told where (ld.so.conf), so they load in every process however it is started.
# The host needs an NVIDIA driver for CUDA 13 (R580 or newer) and the NVIDIA Container Toolkit
# (`docker run --gpus all`), which mounts the driver's libcuda.so.1 at run time.
FROM base AS gpu
RUN /opt/lwd_venv/bin/pip install --only-binary=:all: -c /opt/lwd_venv/robot-constraints.txt \
        onnxruntime-gpu nvidia-cuda-runtime nvidia-cuda-nvrtc nvidia-cublas nvidia-cufft \
        nvidia-curand nvidia-cudnn-cu13
RUN find /opt/lwd_venv/lib/python3.12/site-packages/nvidia -name 'lib*.so*' -printf '%h\n' | sort -u \
        > /etc/ld.so.conf.d/lwd-nvidia-wheels.conf \
    && test -s /etc/ld.so.conf.d/lwd-nvidia-wheels.conf && ldconfig \
    && test -f /opt/lwd_venv/lib/python3.12/site-packages/onnxruntime/capi/libonnxruntime_providers_cuda.so \
    && ! ldd /opt/lwd_venv/lib/python3.12/site-packages/onnxruntime/capi/libonnxruntime_providers_cuda.so \
        | grep 'not found' | grep -v 'libcuda\.so\.1'
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN . /opt/ros/kilted/setup.sh && . /opt/lwd/setup.sh \
    && /opt/lwd_venv/bin/python3 /opt/lwd_check/robot_image_check.py --cuda \
        --constraints /opt/lwd_venv/robot-constraints.txt --install-base /opt/lwd

# CPU variant (the default target): onnxruntime's CPU build, no CUDA.
FROM base AS cpu
RUN /opt/lwd_venv/bin/pip install --only-binary=:all: -c /opt/lwd_venv/robot-constraints.txt \
        onnxruntime
RUN . /opt/ros/kilted/setup.sh && . /opt/lwd/setup.sh \
    && /opt/lwd_venv/bin/python3 /opt/lwd_check/robot_image_check.py \
        --constraints /opt/lwd_venv/robot-constraints.txt --install-base /opt/lwd
