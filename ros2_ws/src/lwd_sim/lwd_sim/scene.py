"""The MuJoCo scene: the robot (from `robot_description`), a table, grocery items, bins and a drawer.

One scene serves every task, so a policy sees the same world whatever it is asked
to do. The robot is position-controlled (a position actuator per controlled joint,
gravity compensated) and does not collide; items, table and drawer do. Grasping
uses a documented *grasp assist*: a weld per (gripper, object) pair that the
simulator switches on when the closed gripper surrounds the object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lwd_description import g1_kinematics as rd

TABLE_TOP_Z = 0.75
TABLE_X = (0.25, 1.0)
TABLE_Y = (-0.6, 0.6)
TIMESTEP = 1.0 / 300.0  # 10 physics steps per 30 Hz control step


@dataclass(frozen=True)
class ItemSpec:
    name: str  # e.g. "red_can"; the instruction says "red can"
    shape: str  # "cylinder" | "box"
    size: tuple[float, ...]  # MuJoCo geom size (half extents / radius, half height)
    rgba: tuple[float, float, float, float]
    mass: float = 0.15

    @property
    def words(self) -> str:
        return self.name.replace("_", " ")

    @property
    def half_height(self) -> float:
        return self.size[-1]


ITEMS: tuple[ItemSpec, ...] = (
    ItemSpec("red_can", "cylinder", (0.028, 0.05), (0.85, 0.1, 0.1, 1)),
    ItemSpec("green_box", "box", (0.022, 0.028, 0.045), (0.1, 0.7, 0.2, 1)),
    ItemSpec("blue_bottle", "cylinder", (0.024, 0.065), (0.1, 0.3, 0.9, 1)),
    ItemSpec("yellow_box", "box", (0.026, 0.022, 0.035), (0.95, 0.85, 0.1, 1)),
)


@dataclass(frozen=True)
class SpotSpec:
    name: str
    xy: tuple[float, float]
    radius: float
    rgba: tuple[float, float, float, float]

    @property
    def words(self) -> str:
        return self.name.replace("_", " ")


SPOTS: tuple[SpotSpec, ...] = (
    SpotSpec("left_bin", (0.40, 0.36), 0.07, (0.2, 0.4, 0.95, 1)),
    SpotSpec("right_bin", (0.40, -0.36), 0.07, (0.6, 0.2, 0.7, 1)),
    SpotSpec("plate", (0.30, 0.0), 0.06, (0.95, 0.95, 0.95, 1)),
)

# Drawer: a tray sliding along x into a housing at the back of the table.
DRAWER_Y = 0.0
DRAWER_CLOSED_X = 0.68  # tray centre when closed
DRAWER_TRAVEL = 0.22  # open = closed - travel
DRAWER_HALF = (0.10, 0.12, 0.03)  # tray half extents (x, y, wall height)
HANDLE_OFFSET = DRAWER_HALF[0] + 0.025  # handle centre in front of the tray centre
HOUSING_HEIGHT = 0.14
HANDLE_HALF = (0.012, 0.05, 0.012)


def _fmt(v) -> str:
    return " ".join(f"{x:.6g}" for x in v)


def _robot_arm(side: str) -> str:
    joints = rd.arm_joints(side)
    limits = rd.joint_limit_table()
    out: list[str] = []
    sx, sy, sz = rd.shoulder_xyz(side)
    opened = 0
    for j in joints:
        pos = (sx, sy, sz) if j.index == 1 else j.origin
        name = f"{side}_arm_joint{j.index}"
        lo, hi, _, _ = limits[name]
        out.append(f'<body name="{side}_arm_link{j.index}" pos="{_fmt(pos)}" gravcomp="1">')
        out.append(
            f'<joint name="{name}" axis="{_fmt(j.axis)}" range="{lo:.6g} {hi:.6g}" damping="2" armature="0.05"/>'
        )
        mass = max(j.child_mass, 0.1)
        if j.child_length > 0:
            out.append(
                f'<geom type="capsule" fromto="0 0 0 0 0 {-j.child_length:g}" size="0.04" mass="{mass:g}" '
                f'rgba="0.75 0.75 0.78 1" contype="0" conaffinity="0"/>'
            )
        else:
            out.append(
                f'<geom type="sphere" size="0.05" mass="{mass:g}" rgba="0.3 0.3 0.33 1" '
                f'contype="0" conaffinity="0"/>'
            )
        opened += 1
    half_open = rd.GRIPPER_MAX_OPENING / 2
    out.append(f'<body name="{side}_gripper" pos="0 0 {-rd.FLANGE_OFFSET:g}" gravcomp="1">')
    out.append(
        '<geom type="box" pos="0 0 -0.02" size="0.025 0.06 0.02" mass="0.5" rgba="0.2 0.2 0.22 1" '
        'contype="0" conaffinity="0"/>'
    )
    cam_t = 0.35
    out.append(
        f'<camera name="{side}_wrist" pos="{_fmt(rd.WRIST_CAMERA_XYZ)}" '
        f'xyaxes="0 -1 0 {math.cos(cam_t):.5f} 0 {-math.sin(cam_t):.5f}" fovy="80"/>'
    )
    out.append(
        f'<site name="{side}_tcp" pos="0 0 {-(rd.TCP_OFFSET - rd.FLANGE_OFFSET):g}" size="0.008" '
        'rgba="1 0 0 0"/>'
    )
    for finger, sign in (("a", 1), ("b", -1)):
        out.append(f'<body name="{side}_finger_{finger}" pos="0 0 -0.04" gravcomp="1">')
        out.append(
            f'<joint name="{side}_gripper_finger_{finger}_joint" type="slide" axis="0 {sign} 0" '
            f'range="0 {half_open:g}" damping="5" armature="0.01"/>'
        )
        out.append(
            f'<geom type="box" pos="0 {sign * 0.008} {-rd.FINGER_LENGTH / 2:g}" '
            f'size="0.01 0.006 {rd.FINGER_LENGTH / 2:g}" mass="0.05" rgba="0.15 0.15 0.15 1" '
            'contype="0" conaffinity="0"/>'
        )
        out.append("</body>")
    out.append("</body>")
    out.append("</body>" * opened)
    return "\n".join(out)


def _item(spec: ItemSpec, index: int) -> str:
    park = (-1.5 - 0.2 * index, 0.0, 0.1)  # behind the robot, out of every camera
    return (
        f'<body name="{spec.name}" pos="{_fmt(park)}"><freejoint name="{spec.name}_free"/>'
        f'<geom name="{spec.name}_geom" type="{spec.shape}" size="{_fmt(spec.size)}" mass="{spec.mass:g}" '
        f'rgba="{_fmt(spec.rgba)}" friction="1 0.01 0.001" condim="4"/></body>'
    )


def _drawer() -> str:
    hx, hy, wall = DRAWER_HALF
    z = TABLE_TOP_Z
    housing = [
        f'<geom type="box" pos="{DRAWER_CLOSED_X + 0.01:g} {DRAWER_Y + hy + 0.015:g} {z + HOUSING_HEIGHT / 2:g}" '
        f'size="{hx + 0.02:g} 0.01 {HOUSING_HEIGHT / 2:g}" rgba="0.55 0.4 0.25 1"/>',
        f'<geom type="box" pos="{DRAWER_CLOSED_X + 0.01:g} {DRAWER_Y - hy - 0.015:g} {z + HOUSING_HEIGHT / 2:g}" '
        f'size="{hx + 0.02:g} 0.01 {HOUSING_HEIGHT / 2:g}" rgba="0.55 0.4 0.25 1"/>',
        f'<geom type="box" pos="{DRAWER_CLOSED_X + 0.01:g} {DRAWER_Y:g} {z + HOUSING_HEIGHT + 0.01:g}" '
        f'size="{hx + 0.02:g} {hy + 0.025:g} 0.01" rgba="0.55 0.4 0.25 1"/>',
        f'<geom type="box" pos="{DRAWER_CLOSED_X + hx + 0.025:g} {DRAWER_Y:g} {z + HOUSING_HEIGHT / 2:g}" '
        f'size="0.01 {hy + 0.025:g} {HOUSING_HEIGHT / 2:g}" rgba="0.55 0.4 0.25 1"/>',
    ]
    tray = (
        f'<body name="drawer" pos="{DRAWER_CLOSED_X:g} {DRAWER_Y:g} {z + 0.006:g}">'
        f'<joint name="drawer_slide" type="slide" axis="-1 0 0" range="0 {DRAWER_TRAVEL:g}" damping="8" '
        'frictionloss="1"/>'
        f'<geom type="box" pos="0 0 0" size="{hx:g} {hy:g} 0.005" mass="0.5" rgba="0.7 0.55 0.35 1"/>'
        f'<geom type="box" pos="{-hx:g} 0 {wall:g}" size="0.005 {hy:g} {wall:g}" mass="0.1" rgba="0.7 0.55 0.35 1"/>'
        f'<geom type="box" pos="{hx:g} 0 {wall:g}" size="0.005 {hy:g} {wall:g}" mass="0.1" rgba="0.7 0.55 0.35 1"/>'
        f'<geom type="box" pos="0 {hy:g} {wall:g}" size="{hx:g} 0.005 {wall:g}" mass="0.1" rgba="0.7 0.55 0.35 1"/>'
        f'<geom type="box" pos="0 {-hy:g} {wall:g}" size="{hx:g} 0.005 {wall:g}" mass="0.1" rgba="0.7 0.55 0.35 1"/>'
        f'<geom name="drawer_handle" type="box" pos="{-HANDLE_OFFSET:g} 0 {wall + 0.01:g}" size="{_fmt(HANDLE_HALF)}" '
        'mass="0.05" rgba="0.2 0.2 0.2 1"/>'
        f'<site name="drawer_handle_site" pos="{-HANDLE_OFFSET:g} 0 {wall + 0.01:g}" size="0.005"/>'
        "</body>"
    )
    return "\n".join(housing) + "\n" + tray


def grasp_targets() -> tuple[str, ...]:
    """Bodies the grasp assist can weld to a gripper."""
    return tuple(i.name for i in ITEMS) + ("drawer",)


def mjcf_text(render_width: int = 96, render_height: int = 96) -> str:
    """The full scene as MJCF text (deterministic)."""
    limits = rd.joint_limit_table()
    hp = rd.HEAD_CAMERA_PITCH
    actuators = []
    for side in rd.SIDES:
        for j in rd.arm_joints(side):
            name = f"{side}_arm_joint{j.index}"
            lo, hi, _, effort = limits[name]
            kp = 400.0 if j.index <= 2 else (250.0 if j.index <= 4 else 80.0)
            actuators.append(
                f'<position name="{name}" joint="{name}" kp="{kp:g}" dampratio="1" ctrlrange="{lo:.6g} {hi:.6g}" '
                f'forcerange="{-effort:g} {effort:g}"/>'
            )
    for side in rd.SIDES:
        name = f"{side}_gripper_joint"
        lo, hi, _, effort = limits[name]
        actuators.append(
            f'<position name="{name}" tendon="{name}" kp="300" dampratio="1" ctrlrange="{lo:g} {hi:g}" '
            f'forcerange="{-effort:g} {effort:g}"/>'
        )
    tendons = [
        f'<fixed name="{s}_gripper_joint"><joint joint="{s}_gripper_finger_a_joint" coef="1"/>'
        f'<joint joint="{s}_gripper_finger_b_joint" coef="1"/></fixed>'
        for s in rd.SIDES
    ]
    equalities = [
        f'<joint joint1="{s}_gripper_finger_b_joint" joint2="{s}_gripper_finger_a_joint" polycoef="0 1 0 0 0"/>'
        for s in rd.SIDES
    ]
    for s in rd.SIDES:
        for target in grasp_targets():
            equalities.append(
                f'<weld name="grasp_{s}_{target}" body1="{s}_gripper" body2="{target}" active="false" '
                'solref="0.01 1"/>'
            )
    spots = "\n".join(
        f'<geom name="spot_{s.name}" type="cylinder" pos="{s.xy[0]:g} {s.xy[1]:g} {TABLE_TOP_Z + 0.001:g}" '
        f'size="{s.radius:g} 0.001" rgba="{_fmt(s.rgba)}" contype="0" conaffinity="0"/>'
        for s in SPOTS
    )
    tx = (TABLE_X[0] + TABLE_X[1]) / 2
    return f"""<mujoco model="lwd_g1_tabletop">
<compiler angle="radian" autolimits="true"/>
<option timestep="{TIMESTEP:.8f}" integrator="implicitfast" cone="elliptic" impratio="5"/>
<visual>
  <global offwidth="{max(render_width, 64)}" offheight="{max(render_height, 64)}"/>
  <quality shadowsize="0" offsamples="0"/>
  <headlight ambient="0.5 0.5 0.5" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
</visual>
<default><geom solref="0.01 1" solimp="0.95 0.99 0.001"/></default>
<worldbody>
<geom name="floor" type="plane" size="3 3 0.1" rgba="0.45 0.45 0.45 1"/>
<light pos="0.4 0 2.5" dir="0 0 -1" castshadow="false" diffuse="0.6 0.6 0.6"/>
<geom name="table" type="box" pos="{tx:g} 0 {TABLE_TOP_Z / 2:g}" size="{(TABLE_X[1] - TABLE_X[0]) / 2:g} {TABLE_Y[1]:g} {TABLE_TOP_Z / 2:g}" rgba="0.62 0.52 0.42 1"/>
{spots}
<body name="torso" pos="-0.05 0 0.6">
<geom type="box" pos="0 0 0.3" size="0.125 0.18 0.3" rgba="0.25 0.25 0.3 1" contype="0" conaffinity="0"/>
<geom type="sphere" pos="0.02 0 0.85" size="0.1" rgba="0.25 0.25 0.3 1" contype="0" conaffinity="0"/>
</body>
<camera name="head" pos="{_fmt(rd.HEAD_CAMERA_XYZ)}" xyaxes="0 -1 0 {math.sin(hp):.5f} 0 {math.cos(hp):.5f}" fovy="58"/>
{_robot_arm("left")}
{_robot_arm("right")}
{chr(10).join(_item(s, i) for i, s in enumerate(ITEMS))}
{_drawer()}
</worldbody>
<tendon>{"".join(tendons)}</tendon>
<equality>{"".join(equalities)}</equality>
<actuator>{"".join(actuators)}</actuator>
</mujoco>
"""
