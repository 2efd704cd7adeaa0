"""The G1-class dual-arm robot as the software sees it: joints, cameras, rates.

Joint limits come from the URDF in lwd_description's `urdf/` (the single source of truth for the
safety filter and the simulator); this module only names things and parses it.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARM_JOINTS_PER_SIDE = 7
LEFT_ARM_JOINTS = tuple(f"left_arm_joint{i}" for i in range(1, ARM_JOINTS_PER_SIDE + 1))
RIGHT_ARM_JOINTS = tuple(f"right_arm_joint{i}" for i in range(1, ARM_JOINTS_PER_SIDE + 1))
GRIPPER_JOINTS = ("left_gripper_joint", "right_gripper_joint")
# Order of every 16-vector in lwd: state, action targets, limits.
JOINT_NAMES: tuple[str, ...] = LEFT_ARM_JOINTS + RIGHT_ARM_JOINTS + GRIPPER_JOINTS
NUM_JOINTS = len(JOINT_NAMES)

CAMERA_NAMES: tuple[str, ...] = ("head", "left_wrist", "right_wrist")
CONTROL_HZ = 30.0
CHUNK_HORIZON = 30

URDF_FILENAME = "g1_dual_arm.urdf"
# The package's URDF directory in the source tree (editable installs run from here).
PACKAGE_URDF_DIR = Path(__file__).resolve().parents[1] / "urdf"


@dataclass(frozen=True)
class JointLimits:
    """Per-joint limits in `JOINT_NAMES` order (rad, rad/s; metres for grippers)."""

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray

    def clip(self, q: np.ndarray) -> np.ndarray:
        return np.clip(q, self.lower, self.upper)


def default_urdf_path() -> Path:
    """`$LWD_URDF`, else this package's `urdf/` (source tree, or `share/lwd_description` once installed)."""
    env = os.environ.get("LWD_URDF")
    if env:
        return Path(env)
    candidates = [
        PACKAGE_URDF_DIR / URDF_FILENAME,
        Path(sys.prefix) / "share" / "lwd_description" / "urdf" / URDF_FILENAME,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"cannot find {URDF_FILENAME} (looked in {', '.join(map(str, candidates))}); set LWD_URDF to its path"
    )


def load_joint_limits(
    urdf_path: str | os.PathLike | None = None, names: tuple[str, ...] = JOINT_NAMES
) -> JointLimits:
    """Read position, velocity and effort limits of `names` from a URDF."""
    path = Path(urdf_path) if urdf_path is not None else default_urdf_path()
    root = ET.parse(path).getroot()
    joints = {j.get("name"): j for j in root.iter("joint")}
    lower, upper, velocity, effort = [], [], [], []
    for name in names:
        joint = joints.get(name)
        if joint is None:
            raise ValueError(f"{path}: joint {name!r} not found")
        limit = joint.find("limit")
        if limit is None:
            raise ValueError(f"{path}: joint {name!r} has no <limit>")
        lower.append(float(limit.get("lower", "nan")))
        upper.append(float(limit.get("upper", "nan")))
        velocity.append(float(limit.get("velocity", "nan")))
        effort.append(float(limit.get("effort", "nan")))
    arrays = [np.asarray(v, dtype=np.float64) for v in (lower, upper, velocity, effort)]
    if not all(np.isfinite(a).all() for a in arrays[:3]):
        raise ValueError(f"{path}: every joint needs finite lower, upper and velocity limits")
    if (arrays[0] >= arrays[1]).any():
        raise ValueError(f"{path}: a joint has lower >= upper")
    return JointLimits(tuple(names), *arrays)
