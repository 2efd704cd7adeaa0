"""Kinematics and limits of the simulated G1-class dual-arm robot, in one place.

Both `urdf/g1_dual_arm.urdf` (the single source of joint names and limits for the
actor's safety filter) and the MuJoCo model are generated from the tables here,
so the two cannot disagree. Regenerate the URDF with
`python -m lwd_description.g1_kinematics --write-urdf`.

Frame conventions: x forward (towards the table), y left, z up. In the zero
configuration each arm hangs straight down from its shoulder; the gripper's
fingers close along the gripper's local y axis; the tool centre point (TCP) sits
between the fingertips.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from lwd_description.robot import GRIPPER_JOINTS, JOINT_NAMES, PACKAGE_URDF_DIR, URDF_FILENAME

SHOULDER_XYZ = (0.05, 0.22, 1.20)  # left shoulder; right is mirrored in y
UPPER_ARM_LENGTH = 0.34
FOREARM_LENGTH = 0.32
FLANGE_OFFSET = 0.07  # wrist-roll axis to gripper base
FINGER_LENGTH = 0.11
TCP_OFFSET = FLANGE_OFFSET + 0.09  # below the wrist pitch axis, between the fingertips
GRIPPER_MAX_OPENING = 0.08  # metres between the fingers
HEAD_CAMERA_XYZ = (0.10, 0.0, 1.50)
HEAD_CAMERA_PITCH = 1.05  # rad, looking down at the table
WRIST_CAMERA_XYZ = (0.07, 0.0, -0.02)  # in the gripper base frame, looking along the fingers


@dataclass(frozen=True)
class JointSpec:
    """One revolute arm joint: axis, parent offset, limits (rad, rad/s, N m)."""

    index: int
    axis: tuple[float, float, float]
    origin: tuple[float, float, float]
    lower: float
    upper: float
    velocity: float
    effort: float
    child_length: float  # length of the link that follows (for geometry and inertia)
    child_mass: float


def arm_joints(side: str) -> tuple[JointSpec, ...]:
    """Seven joints of one arm; the right arm mirrors roll/yaw limits of the left."""
    m = 1.0 if side == "left" else -1.0

    def mirrored(lo: float, hi: float) -> tuple[float, float]:
        return (lo, hi) if m > 0 else (-hi, -lo)

    return (
        JointSpec(1, (0, 1, 0), (0, 0, 0), -3.05, 3.05, 3.0, 60.0, 0.0, 1.2),  # shoulder pitch
        JointSpec(2, (1, 0, 0), (0, 0, 0), *mirrored(-1.0, 2.8), 3.0, 60.0, 0.0, 1.0),  # shoulder roll
        JointSpec(3, (0, 0, 1), (0, 0, 0), -3.0, 3.0, 3.0, 30.0, UPPER_ARM_LENGTH, 2.0),  # upper arm yaw
        JointSpec(4, (0, 1, 0), (0, 0, -UPPER_ARM_LENGTH), -2.6, 0.05, 3.0, 30.0, 0.0, 0.8),  # elbow
        JointSpec(5, (0, 0, 1), (0, 0, 0), -3.0, 3.0, 3.5, 10.0, FOREARM_LENGTH, 1.4),  # forearm yaw
        JointSpec(6, (0, 1, 0), (0, 0, -FOREARM_LENGTH), -1.75, 1.75, 3.5, 10.0, 0.0, 0.5),  # wrist pitch
        JointSpec(7, (0, 0, 1), (0, 0, 0), -3.0, 3.0, 3.5, 10.0, FLANGE_OFFSET, 0.4),  # wrist roll
    )


GRIPPER_VELOCITY = 0.2  # m/s of opening
GRIPPER_EFFORT = 100.0  # N
SIDES = ("left", "right")


def shoulder_xyz(side: str) -> tuple[float, float, float]:
    x, y, z = SHOULDER_XYZ
    return (x, y if side == "left" else -y, z)


def joint_limit_table() -> dict[str, tuple[float, float, float, float]]:
    """name -> (lower, upper, velocity, effort) for the 16 controlled joints."""
    table: dict[str, tuple[float, float, float, float]] = {}
    for side in SIDES:
        for j in arm_joints(side):
            table[f"{side}_arm_joint{j.index}"] = (j.lower, j.upper, j.velocity, j.effort)
    for name in GRIPPER_JOINTS:
        table[name] = (0.0, GRIPPER_MAX_OPENING, GRIPPER_VELOCITY, GRIPPER_EFFORT)
    assert tuple(table) == JOINT_NAMES
    return table


def _fmt(v: tuple[float, ...]) -> str:
    return " ".join(f"{x:g}" for x in v)


def _box_inertia(mass: float, sx: float, sy: float, sz: float) -> str:
    ixx = mass * (sy * sy + sz * sz) / 12
    iyy = mass * (sx * sx + sz * sz) / 12
    izz = mass * (sx * sx + sy * sy) / 12
    return (
        f'    <inertial><origin xyz="0 0 {-sz / 2:g}"/><mass value="{mass:g}"/>'
        f'<inertia ixx="{ixx:.6g}" ixy="0" ixz="0" iyy="{iyy:.6g}" iyz="0" izz="{izz:.6g}"/></inertial>\n'
    )


def _link(name: str, mass: float = 0.0, length: float = 0.0, radius: float = 0.045) -> str:
    if mass <= 0:
        return f'  <link name="{name}"/>\n'
    body = _box_inertia(mass, 2 * radius, 2 * radius, max(length, 0.05))
    if length > 0:
        body += (
            f'    <visual><origin xyz="0 0 {-length / 2:g}"/><geometry>'
            f'<cylinder radius="{radius:g}" length="{length:g}"/></geometry></visual>\n'
        )
    else:
        body += f'    <visual><geometry><sphere radius="{radius:g}"/></geometry></visual>\n'
    return f'  <link name="{name}">\n{body}  </link>\n'


def _fixed(name: str, parent: str, child: str, xyz: tuple[float, ...], rpy=(0.0, 0.0, 0.0)) -> str:
    return (
        f'  <joint name="{name}" type="fixed"><parent link="{parent}"/><child link="{child}"/>'
        f'<origin xyz="{_fmt(xyz)}" rpy="{_fmt(rpy)}"/></joint>\n'
    )


def urdf_text() -> str:
    """The URDF of the robot, deterministic (so a test can compare it with the file)."""
    out = [
        '<?xml version="1.0"?>\n',
        "<!-- Generated by lwd_description/g1_kinematics.py (its main, write-urdf);",
        " edit that file, not this one. -->\n",
        '<robot name="g1_dual_arm">\n',
    ]
    out.append('  <link name="base_link"/>\n')
    out.append(
        '  <link name="torso_link">\n'
        + _box_inertia(20.0, 0.25, 0.36, 0.6).replace('0 0 -0.3"', '0 0 0.3"')
        + '    <visual><origin xyz="0 0 0.3"/><geometry><box size="0.25 0.36 0.6"/></geometry></visual>\n'
        "  </link>\n"
    )
    out.append(_fixed("torso_joint", "base_link", "torso_link", (-0.05, 0.0, 0.6)))
    out.append('  <link name="head_link"/>\n  <link name="head_camera_link"/>\n')
    out.append(_fixed("head_joint", "torso_link", "head_link", (0.0, 0.0, 0.75)))
    hx, hy, hz = HEAD_CAMERA_XYZ
    out.append(
        _fixed(
            "head_camera_joint",
            "head_link",
            "head_camera_link",
            (hx + 0.05, hy, hz - 1.35),
            (0.0, HEAD_CAMERA_PITCH, 0.0),
        )
    )
    for side in SIDES:
        parent = "torso_link"
        sx, sy, sz = shoulder_xyz(side)
        for j in arm_joints(side):
            child = f"{side}_arm_link{j.index}"
            origin = (sx + 0.05, sy, sz - 0.6) if j.index == 1 else j.origin
            out.append(_link(child, j.child_mass, j.child_length))
            out.append(
                f'  <joint name="{side}_arm_joint{j.index}" type="revolute">'
                f'<parent link="{parent}"/><child link="{child}"/>'
                f'<origin xyz="{_fmt(origin)}" rpy="0 0 0"/><axis xyz="{_fmt(j.axis)}"/>'
                f'<limit lower="{j.lower:g}" upper="{j.upper:g}" velocity="{j.velocity:g}" effort="{j.effort:g}"/>'
                f'<dynamics damping="1.0" friction="0.1"/></joint>\n'
            )
            parent = child
        base = f"{side}_gripper_base_link"
        out.append(
            f'  <link name="{base}">\n'
            + _box_inertia(0.5, 0.05, 0.12, 0.04)
            + '    <visual><origin xyz="0 0 -0.02"/><geometry><box size="0.05 0.12 0.04"/></geometry></visual>\n'
            "  </link>\n"
        )
        out.append(_fixed(f"{side}_gripper_mount_joint", parent, base, (0.0, 0.0, -FLANGE_OFFSET)))
        # The controlled joint is the finger opening; the two fingers mimic it at +-1/2.
        actuator = f"{side}_gripper_opening_link"
        out.append(f'  <link name="{actuator}"/>\n')
        out.append(
            f'  <joint name="{side}_gripper_joint" type="prismatic"><parent link="{base}"/>'
            f'<child link="{actuator}"/><origin xyz="0 0 -0.04"/><axis xyz="0 1 0"/>'
            f'<limit lower="0" upper="{GRIPPER_MAX_OPENING:g}" velocity="{GRIPPER_VELOCITY:g}" '
            f'effort="{GRIPPER_EFFORT:g}"/></joint>\n'
        )
        for finger, sign in (("a", 1.0), ("b", -1.0)):
            link = f"{side}_gripper_finger_{finger}_link"
            out.append(
                f'  <link name="{link}">\n'
                + _box_inertia(0.05, 0.015, 0.015, FINGER_LENGTH)
                + f'    <visual><origin xyz="0 0 {-FINGER_LENGTH / 2:g}"/><geometry>'
                f'<box size="0.02 0.012 {FINGER_LENGTH:g}"/></geometry></visual>\n  </link>\n'
            )
            out.append(
                f'  <joint name="{side}_gripper_finger_{finger}_joint" type="prismatic">'
                f'<parent link="{base}"/><child link="{link}"/><origin xyz="0 0 -0.04"/>'
                f'<axis xyz="0 {sign:g} 0"/><limit lower="0" upper="{GRIPPER_MAX_OPENING / 2:g}" '
                f'velocity="{GRIPPER_VELOCITY / 2:g}" effort="{GRIPPER_EFFORT:g}"/>'
                f'<mimic joint="{side}_gripper_joint" multiplier="0.5" offset="0"/></joint>\n'
            )
        out.append(f'  <link name="{side}_tcp_link"/>\n')
        out.append(
            _fixed(f"{side}_tcp_joint", base, f"{side}_tcp_link", (0.0, 0.0, -(TCP_OFFSET - FLANGE_OFFSET)))
        )
        out.append(f'  <link name="{side}_wrist_camera_link"/>\n')
        out.append(
            _fixed(
                f"{side}_wrist_camera_joint",
                base,
                f"{side}_wrist_camera_link",
                WRIST_CAMERA_XYZ,
                (0.0, 1.5708, 0.0),
            )
        )
    out.append("</robot>\n")
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-urdf", action="store_true", help="write urdf/g1_dual_arm.urdf")
    args = parser.parse_args()
    if args.write_urdf:
        path = PACKAGE_URDF_DIR / URDF_FILENAME
        path.write_text(urdf_text())
        print(f"wrote {path}")
    else:
        print(urdf_text(), end="")


if __name__ == "__main__":
    main()
