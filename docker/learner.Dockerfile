# Learner image: JAX with CUDA, the lwd learner and the bridge (ROS-free parts), pinned as in
# constraints.txt (jax-cuda12-plugin/pjrt are pinned there to jax's version too).
#   docker build -f docker/learner.Dockerfile -t lwd-learner .
#   docker run --rm --gpus all -v /data/lwd:/data lwd-learner \
#       python -m lwd_learner.cli online --bridge-root /data/bridge --out /data/online --init /data/offline
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive
# The learner needs no ROS wheels, so the distro's Python (3.12) is fine here.
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir -c /tmp/constraints.txt \
        "jax[cuda12]" jaxlib flax optax orbax-checkpoint tensorboardX tyro onnx onnxruntime-gpu numpy \
        opencv-python-headless pyzmq msgpack PyYAML tqdm matplotlib

WORKDIR /opt/lwd
COPY ros2_ws/src/lwd_common ros2_ws/src/lwd_common
COPY ros2_ws/src/lwd_description ros2_ws/src/lwd_description
COPY ros2_ws/src/lwd_learner_bridge ros2_ws/src/lwd_learner_bridge
COPY learner learner
RUN pip install --no-cache-dir --no-deps ./ros2_ws/src/lwd_common ./ros2_ws/src/lwd_description \
        ./ros2_ws/src/lwd_learner_bridge ./learner
CMD ["python", "-m", "lwd_learner.cli", "--help"]
