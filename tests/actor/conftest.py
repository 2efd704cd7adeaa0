"""Fixtures of the actor tests: a URDF of our own, observations, tiny real ONNX policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lwd_actor.core.observation import JOINTS_INPUT, Observation
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES, load_joint_limits

ARM_LIMIT = 2.0  # rad, symmetric
ARM_VELOCITY = 3.0  # rad/s -> 0.1 rad per 30 Hz step
GRIPPER_UPPER = 0.05
GRIPPER_VELOCITY = 0.3


def write_urdf(path: Path) -> Path:
    joints = []
    for name in JOINT_NAMES:
        if "gripper" in name:
            lo, hi, vel = 0.0, GRIPPER_UPPER, GRIPPER_VELOCITY
        else:
            lo, hi, vel = -ARM_LIMIT, ARM_LIMIT, ARM_VELOCITY
        joints.append(
            f'  <joint name="{name}" type="revolute"><parent link="base"/><child link="{name}_link"/>'
            f'<limit lower="{lo}" upper="{hi}" velocity="{vel}" effort="10"/></joint>\n'
            f'  <link name="{name}_link"/>\n'
        )
    path.write_text(
        '<?xml version="1.0"?>\n<robot name="test_g1">\n  <link name="base"/>\n'
        + "".join(joints)
        + "</robot>\n"
    )
    return path


@pytest.fixture
def urdf(tmp_path) -> Path:
    return write_urdf(tmp_path / "test_g1.urdf")


@pytest.fixture
def limits(urdf):
    return load_joint_limits(urdf)


def make_obs(stamp: float, joint_pos=None, size: int = 32, value: int = 100) -> Observation:
    images = {c: np.full((size, size, 3), value + i, np.uint8) for i, c in enumerate(CAMERA_NAMES)}
    q = np.zeros(len(JOINT_NAMES)) if joint_pos is None else np.asarray(joint_pos, np.float64)
    stamps = {c: stamp for c in CAMERA_NAMES} | {JOINTS_INPUT: stamp}
    return Observation(images, q, stamps)
