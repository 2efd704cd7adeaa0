#!/usr/bin/env bash
# Learner throughput on a GPU machine (see ../shared/GPU.md for what it has): the update alone and
# the real training loop's data path (device-resident replay, host replay, frozen encoder) side by
# side, at the paper's batch 256 and at 128, with GPU utilisation. Needs no ROS, no MuJoCo.
#
#   benchmarks/gpu_learner.sh STORE [STEPS]
#
# STORE: an episode store (e.g. `./lwd py -m lwd_sim.generate_offline --out runs/store_can
# --episodes 50 --tasks can_to_bin --seed 0`, 36 MB at 64x64) copied to the GPU machine.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STORE="${1:?usage: gpu_learner.sh STORE [STEPS]}"
STEPS="${2:-200}"
export PYTHONPATH="$REPO/ros2_ws/src/lwd_common:$REPO/learner${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
for bs in 256 128; do
  timeout -s TERM 240 python3 "$REPO/benchmarks/learner_step.py" --store "$STORE" --batch-size "$bs" \
    --steps "$STEPS" --replay device host --frozen
done
