"""The robot as the software sees it: joints, limits, cameras, rates, from a robot description.

A robot is described by a small YAML file (`robots/<name>.yaml` in this package: joint order,
grippers, cameras and their frame sizes, control rate, chunk horizon) naming its URDF, which holds
the joint limits (the single source of truth for the safety filter and the simulator).
`load_robot(name_or_path)` reads both into a `RobotDescription`; `g1_dual_arm` is the default.
The module constants below (JOINT_NAMES, CAMERA_NAMES, ...) are the default robot's, read from
its YAML: G1-only code (the simulator, its kinematics) may use them; code that serves any robot
takes a `RobotDescription`.
"""

from __future__ import annotations

import math
import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DEFAULT_ROBOT = "g1_dual_arm"
# The package's data directories in the source tree (editable installs run from here); installed:
# share/lwd_description/{urdf,robots}. The package's urdf/ is a link to the repository's top-level
# urdf/, the one copy of the URDFs.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
PACKAGE_URDF_DIR = PACKAGE_DIR / "urdf"
PACKAGE_ROBOTS_DIR = PACKAGE_DIR / "robots"
SHARE_DIR = Path(sys.prefix) / "share" / "lwd_description"
ROBOT_FIELDS = ("name", "urdf", "joints", "grippers", "cameras", "control_hz", "chunk_horizon")


class RobotDescriptionError(ValueError):
    """A robot description (YAML or its URDF) that cannot be used; the message names the file and the fault."""


def robot_dirs() -> list[Path]:
    """Where robot YAML files are looked up by name: the source tree, then the installed share."""
    return [PACKAGE_ROBOTS_DIR, SHARE_DIR / "robots"]


def known_robots() -> list[str]:
    """Names of the robot descriptions this package ships."""
    return sorted({p.stem for d in robot_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def robot_yaml_path(name_or_path: str | os.PathLike[str] | None = None) -> Path:
    """The YAML of a robot given by name (`robots/<name>.yaml`) or path; None: the default robot."""
    text = str(name_or_path) if name_or_path not in (None, "") else DEFAULT_ROBOT
    if text.endswith((".yaml", ".yml")) or os.sep in text or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"robot description {path} does not exist")
        return path
    for d in robot_dirs():
        if (d / f"{text}.yaml").is_file():
            return d / f"{text}.yaml"
    raise FileNotFoundError(
        f"no robot description named {text!r} (looked for {text}.yaml in "
        f"{', '.join(map(str, robot_dirs()))}; known robots: {', '.join(known_robots()) or 'none'}); "
        "give a robot name or the path of a robot YAML"
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RobotDescriptionError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RobotDescriptionError(f"{path}: must be a mapping of {', '.join(ROBOT_FIELDS)}")
    unknown = sorted(set(map(str, data)) - set(ROBOT_FIELDS))
    if unknown:
        raise RobotDescriptionError(f"{path}: unknown fields {unknown} (fields: {', '.join(ROBOT_FIELDS)})")
    missing = [f for f in ROBOT_FIELDS if f not in data and f != "grippers"]
    if missing:
        raise RobotDescriptionError(f"{path}: missing fields {missing}")
    return data


def _names(path: Path, data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RobotDescriptionError(f"{path}: {key!r} must be a list of names, got {value!r}")
    dup = sorted({v for v in value if value.count(v) > 1})
    if dup:
        raise RobotDescriptionError(f"{path}: {key!r} names {dup} more than once")
    return tuple(value)


@dataclass(frozen=True)
class _Header:
    """What a robot YAML says, checked, before its URDF is read."""

    name: str
    urdf: str
    joint_names: tuple[str, ...]
    gripper_joints: tuple[str, ...]
    cameras: dict[str, tuple[int, int]]
    control_hz: float
    chunk_horizon: int


def _header(path: Path) -> _Header:
    data = _read_yaml(path)
    name = data["name"]
    if not isinstance(name, str) or not name:
        raise RobotDescriptionError(f"{path}: 'name' must be a non-empty string")
    urdf = data["urdf"]
    if not isinstance(urdf, str) or not urdf:
        raise RobotDescriptionError(f"{path}: 'urdf' must name the robot's URDF file")
    joints = _names(path, data, "joints")
    if not joints:
        raise RobotDescriptionError(f"{path}: 'joints' must name at least one joint")
    grippers = _names(path, data, "grippers")
    stray = [g for g in grippers if g not in joints]
    if stray:
        raise RobotDescriptionError(f"{path}: grippers {stray} are not in 'joints'")
    cams = data["cameras"] if data["cameras"] is not None else {}
    if not isinstance(cams, dict):
        raise RobotDescriptionError(f"{path}: 'cameras' must map camera name -> [height, width]")
    cameras: dict[str, tuple[int, int]] = {}
    for cam, hw in cams.items():
        ok = (
            isinstance(cam, str)
            and cam
            and "/" not in cam
            and isinstance(hw, list)
            and len(hw) == 2
            and all(type(v) is int and v > 0 for v in hw)
        )
        if not ok:
            raise RobotDescriptionError(
                f"{path}: camera {cam!r}: want a name (no '/') and [height, width] in pixels, got {hw!r}"
            )
        cameras[cam] = (hw[0], hw[1])
    hz = data["control_hz"]
    if isinstance(hz, bool) or not isinstance(hz, int | float) or not math.isfinite(hz) or hz <= 0:
        raise RobotDescriptionError(f"{path}: control_hz must be a positive number of Hz, got {hz!r}")
    horizon = data["chunk_horizon"]
    if type(horizon) is not int or horizon < 1:
        raise RobotDescriptionError(
            f"{path}: chunk_horizon must be a positive whole number of steps, got {horizon!r}"
        )
    return _Header(name, urdf, joints, grippers, cameras, float(hz), horizon)


# --- the default robot (G1), read from its YAML: for G1-only code and as defaults -------------------
_G1 = _header(robot_yaml_path(DEFAULT_ROBOT))
ARM_JOINTS_PER_SIDE = 7
LEFT_ARM_JOINTS = tuple(f"left_arm_joint{i}" for i in range(1, ARM_JOINTS_PER_SIDE + 1))
RIGHT_ARM_JOINTS = tuple(f"right_arm_joint{i}" for i in range(1, ARM_JOINTS_PER_SIDE + 1))
GRIPPER_JOINTS: tuple[str, ...] = _G1.gripper_joints
# Order of every 16-vector of the G1: state, action targets, limits.
JOINT_NAMES: tuple[str, ...] = _G1.joint_names
NUM_JOINTS = len(JOINT_NAMES)
CAMERA_NAMES: tuple[str, ...] = tuple(_G1.cameras)
CONTROL_HZ = _G1.control_hz
CHUNK_HORIZON = _G1.chunk_horizon
URDF_FILENAME = _G1.urdf
if JOINT_NAMES != LEFT_ARM_JOINTS + RIGHT_ARM_JOINTS + GRIPPER_JOINTS:  # g1_kinematics' tables
    raise RobotDescriptionError(f"{DEFAULT_ROBOT}.yaml: joints are not the G1's two arms and grippers")


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
    """The default robot's URDF: `$LWD_URDF`, else this package's `urdf/` (source tree, or
    `share/lwd_description` once installed)."""
    env = os.environ.get("LWD_URDF")
    if env:
        return Path(env)
    candidates = [PACKAGE_URDF_DIR / URDF_FILENAME, SHARE_DIR / "urdf" / URDF_FILENAME]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"cannot find {URDF_FILENAME} (looked in {', '.join(map(str, candidates))}); set LWD_URDF to its path"
    )


def load_joint_limits(
    urdf_path: str | os.PathLike | None = None, names: tuple[str, ...] = JOINT_NAMES
) -> JointLimits:
    """Read position, velocity and effort limits of `names` from a URDF (default: the G1's)."""
    path = Path(urdf_path) if urdf_path is not None else default_urdf_path()
    if not path.is_file():
        raise FileNotFoundError(f"URDF {path} does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise RobotDescriptionError(f"{path}: not a readable URDF: {exc}") from exc
    joints = {j.get("name"): j for j in root.iter("joint")}
    lower: list[float] = []
    upper: list[float] = []
    velocity: list[float] = []
    effort: list[float] = []
    for name in names:
        joint = joints.get(name)
        if joint is None:
            raise RobotDescriptionError(f"{path}: joint {name!r} not found")
        limit = joint.find("limit")
        if limit is None:
            raise RobotDescriptionError(f"{path}: joint {name!r} has no <limit>")
        try:
            values = [float(limit.get(k, "nan")) for k in ("lower", "upper", "velocity", "effort")]
        except ValueError as exc:
            raise RobotDescriptionError(f"{path}: joint {name!r}: <limit> is not numeric: {exc}") from exc
        if not all(math.isfinite(v) for v in values[:3]):
            raise RobotDescriptionError(
                f"{path}: joint {name!r} needs finite lower, upper and velocity limits in its <limit>"
            )
        if values[0] >= values[1]:
            raise RobotDescriptionError(f"{path}: joint {name!r} has lower >= upper")
        if values[2] <= 0:
            raise RobotDescriptionError(f"{path}: joint {name!r} has a velocity limit <= 0")
        for out, v in zip((lower, upper, velocity, effort), values, strict=True):
            out.append(v)
    arrays = [np.asarray(v, dtype=np.float64) for v in (lower, upper, velocity, effort)]
    return JointLimits(tuple(names), *arrays)


@dataclass(frozen=True)
class RobotDescription:
    """One robot: joint order and limits, grippers, cameras (name -> (height, width), in the
    policy's input order), control rate and action-chunk horizon. Made by `load_robot`."""

    name: str
    joint_names: tuple[str, ...]
    gripper_joints: tuple[str, ...]
    limits: JointLimits  # from the URDF, in joint_names order
    cameras: dict[str, tuple[int, int]] = field(default_factory=dict)
    control_hz: float = CONTROL_HZ
    chunk_horizon: int = CHUNK_HORIZON
    urdf_path: Path | None = None
    source: Path | None = None  # the YAML it was read from

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(self.cameras)

    @property
    def arm_joints(self) -> tuple[str, ...]:
        """The joints that are not grippers."""
        return tuple(n for n in self.joint_names if n not in self.gripper_joints)


def _urdf_for(header: _Header, yaml_path: Path) -> Path:
    if header.name == DEFAULT_ROBOT and header.urdf == URDF_FILENAME:
        return default_urdf_path()  # $LWD_URDF still overrides the default robot's URDF
    given = Path(header.urdf)
    if given.is_absolute():
        candidates = [given]
    else:
        candidates = [yaml_path.parent / given, yaml_path.parent.parent / "urdf" / given]
        candidates += [PACKAGE_URDF_DIR / given, SHARE_DIR / "urdf" / given]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"{yaml_path}: URDF {header.urdf!r} not found (looked in {', '.join(map(str, candidates))})"
    )


def load_robot(name_or_yaml_path: str | os.PathLike[str] | None = None) -> RobotDescription:
    """The robot description named (`robots/<name>.yaml`) or at a YAML path; None or '': the G1.

    FileNotFoundError for a missing YAML or URDF; RobotDescriptionError (a ValueError) for a
    description that cannot be used (a joint the URDF lacks or gives no limits, a bad rate or
    horizon, an unknown field, ...), the message naming the file and the fault."""
    path = robot_yaml_path(name_or_yaml_path)
    header = _header(path)
    urdf = _urdf_for(header, path)
    try:
        limits = load_joint_limits(urdf, header.joint_names)
    except RobotDescriptionError as exc:
        raise RobotDescriptionError(f"robot {header.name} ({path}): {exc}") from exc
    return RobotDescription(
        name=header.name,
        joint_names=header.joint_names,
        gripper_joints=header.gripper_joints,
        limits=limits,
        cameras=dict(header.cameras),
        control_hz=header.control_hz,
        chunk_horizon=header.chunk_horizon,
        urdf_path=urdf,
        source=path,
    )
