"""Simulated G1 dual-arm robot (MuJoCo): task suite, scripted expert, data generation, ROS nodes.

Offscreen rendering defaults to EGL (works on CPU via Mesa llvmpipe and on GPUs);
set MUJOCO_GL before importing to override.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
