"""The simulated robot without ROS: MuJoCo physics at 300 Hz under 30 Hz joint-position control.

`G1Sim.apply(targets)` takes one 16-vector of absolute joint-position targets
(JOINT_NAMES order; gripper = finger opening in metres), clips it to the URDF
limits, rate-limits it to the URDF velocity limits (as the hardware's
controllers would), and advances one control period. Cameras render on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from lwd_description.g1_kinematics import SIDES, joint_limit_table
from lwd_description.robot import CAMERA_NAMES, CONTROL_HZ, JOINT_NAMES, NUM_JOINTS, load_joint_limits
from lwd_sim import scene

SUBSTEPS = int(round(1.0 / (CONTROL_HZ * scene.TIMESTEP)))
GRASP_CLOSE_BELOW = 0.035  # commanded opening that counts as "closing" for the grasp assist
GRASP_RELEASE_MARGIN = 0.01  # release when the commanded opening exceeds the held width by this
GRASP_RELEASE_ALWAYS = 0.075  # ... or is nearly fully open
GRASP_MAX_WIDTH = 0.074  # wider than this does not fit between the fingers
# Grasp region around the TCP, in the gripper frame (x, y across the fingers, z along them).
GRASP_BOX = np.array([0.04, 0.045, 0.05])


@dataclass(frozen=True)
class SimConfig:
    image_height: int = 64
    image_width: int = 64
    cameras: tuple[str, ...] = CAMERA_NAMES
    rate_limit: bool = True  # clamp target changes to the URDF velocity limits


def _limits_from_description():
    table = joint_limit_table()
    arr = np.array([table[n] for n in JOINT_NAMES], float)
    return arr[:, 0], arr[:, 1], arr[:, 2]


class G1Sim:
    """One simulated robot in the tabletop scene."""

    def __init__(self, config: SimConfig = SimConfig()):
        if config.image_height < 8 or config.image_width < 8:
            raise ValueError(
                f"image size must be at least 8x8, got {config.image_height}x{config.image_width}"
            )
        unknown = set(config.cameras) - set(CAMERA_NAMES)
        if unknown:
            raise ValueError(f"unknown cameras {sorted(unknown)}; known: {CAMERA_NAMES}")
        self.config = config
        self.model = mujoco.MjModel.from_xml_string(scene.mjcf_text(config.image_width, config.image_height))
        self.data = mujoco.MjData(self.model)
        self.lower, self.upper, self.velocity = _limits_from_description()
        m = self.model
        self._arm_qadr = np.array([m.joint(n).qposadr[0] for n in JOINT_NAMES[:14]])
        self._arm_dadr = np.array([m.joint(n).dofadr[0] for n in JOINT_NAMES[:14]])
        self._gripper_tendons = np.array([m.tendon(n).id for n in JOINT_NAMES[14:]])
        self._finger_qadr = {
            s: [m.joint(f"{s}_gripper_finger_{f}_joint").qposadr[0] for f in ("a", "b")] for s in SIDES
        }
        self._gripper_body = {s: m.body(f"{s}_gripper").id for s in SIDES}
        self._tcp_site = {s: m.site(f"{s}_tcp").id for s in SIDES}
        self._handle_site = m.site("drawer_handle_site").id
        self._weld = {(s, t): m.equality(f"grasp_{s}_{t}").id for s in SIDES for t in scene.grasp_targets()}
        self._item_qadr = {i.name: m.joint(f"{i.name}_free").qposadr[0] for i in scene.ITEMS}
        self._drawer_qadr = m.joint("drawer_slide").qposadr[0]
        self.held: dict[str, str | None] = {s: None for s in SIDES}
        self._held_width: dict[str, float] = dict.fromkeys(SIDES, 0.0)
        self._item_spec = {i.name: i for i in scene.ITEMS}
        self.command = np.zeros(NUM_JOINTS)
        self.steps = 0
        self._renderer: mujoco.Renderer | None = None
        mujoco.mj_forward(self.model, self.data)  # camera and body poses valid before the first reset

    # -- state -------------------------------------------------------------
    def joint_positions(self) -> np.ndarray:
        q = np.empty(NUM_JOINTS)
        q[:14] = self.data.qpos[self._arm_qadr]
        q[14:] = self.data.ten_length[self._gripper_tendons]
        return q

    def joint_velocities(self) -> np.ndarray:
        v = np.empty(NUM_JOINTS)
        v[:14] = self.data.qvel[self._arm_dadr]
        v[14:] = self.data.ten_velocity[self._gripper_tendons]
        return v

    def joint_efforts(self) -> np.ndarray:
        return self.data.actuator_force.copy()

    @property
    def time(self) -> float:
        return float(self.data.time)

    def body_pos(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos.copy()

    def tcp_pose(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        sid = self._tcp_site[side]
        return self.data.site_xpos[sid].copy(), self.data.site_xmat[sid].reshape(3, 3).copy()

    def handle_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._handle_site].copy()

    def drawer_opening(self) -> float:
        return float(self.data.qpos[self._drawer_qadr])

    # -- reset -------------------------------------------------------------
    def reset(self, arm_q: np.ndarray, items: dict[str, np.ndarray], drawer_opening: float = 0.0) -> None:
        """Place the robot at `arm_q` (16) and each item at (x, y, z, yaw); others stay parked."""
        mujoco.mj_resetData(self.model, self.data)
        for key in self._weld:
            self.data.eq_active[self._weld[key]] = 0
        self.held = {s: None for s in SIDES}
        q = self.clip(np.asarray(arm_q, float))
        self.data.qpos[self._arm_qadr] = q[:14]
        for i, s in enumerate(SIDES):
            for a in self._finger_qadr[s]:
                self.data.qpos[a] = q[14 + i] / 2
        unknown = set(items) - set(self._item_qadr)
        if unknown:
            raise ValueError(f"unknown items {sorted(unknown)}; known: {sorted(self._item_qadr)}")
        for name, pose in items.items():
            a = self._item_qadr[name]
            x, y, z, yaw = pose
            self.data.qpos[a : a + 3] = (x, y, z)
            self.data.qpos[a + 3 : a + 7] = (np.cos(yaw / 2), 0, 0, np.sin(yaw / 2))
        self.data.qpos[self._drawer_qadr] = drawer_opening
        self.data.ctrl[:] = q
        self.command = q.copy()
        mujoco.mj_forward(self.model, self.data)
        self.steps = 0
        for _ in range(3):  # let items settle on the table
            self._physics_period()
        self.data.time = 0.0
        self.steps = 0

    def mirror(self, qpos: np.ndarray, command: np.ndarray, held: dict[str, str | None]) -> None:
        """Copy another simulator's state (from its scene_state) for planning; no physics is run."""
        qpos = np.asarray(qpos, float)
        if qpos.shape != (self.model.nq,):
            raise ValueError(f"qpos has shape {qpos.shape}, this model has nq={self.model.nq}")
        self.data.qpos[:] = qpos
        self.command = self.clip(np.asarray(command, float))
        self.held = {s: held.get(s) for s in SIDES}
        mujoco.mj_forward(self.model, self.data)

    # -- control -----------------------------------------------------------
    def clip(self, targets: np.ndarray) -> np.ndarray:
        return np.clip(targets, self.lower, self.upper)

    def apply(self, targets: np.ndarray) -> None:
        """Execute one control period (1/30 s) towards absolute joint targets."""
        t = np.asarray(targets, dtype=float).reshape(-1)
        if t.shape != (NUM_JOINTS,):
            raise ValueError(f"expected {NUM_JOINTS} joint targets, got shape {np.shape(targets)}")
        if not np.isfinite(t).all():
            raise ValueError("joint targets contain NaN or inf")
        t = self.clip(t)
        if self.config.rate_limit:
            max_step = self.velocity / CONTROL_HZ
            t = self.command + np.clip(t - self.command, -max_step, max_step)
        self.command = t
        self.data.ctrl[:] = t
        self._update_grasp_assist()
        self._physics_period()
        self.steps += 1

    def _physics_period(self) -> None:
        mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)

    # -- grasp assist --------------------------------------------------------
    def _grasp_point(self, target: str) -> np.ndarray:
        return self.handle_pos() if target == "drawer" else self.data.body(target).xpos

    def _in_grasp_region(self, side: str, point: np.ndarray) -> bool:
        pos, rot = self.tcp_pose(side)
        local = rot.T @ (point - pos)
        return bool((np.abs(local) < GRASP_BOX).all())

    def grip_width(self, side: str, target: str) -> float:
        """Finger opening at which the fingers touch `target` across the gripper's closing axis."""
        y_grip = self.tcp_pose(side)[1][:, 1]
        if target == "drawer":
            half, rot = np.array(scene.HANDLE_HALF), self.data.body("drawer").xmat.reshape(3, 3)
        else:
            spec = self._item_spec[target]
            rot = self.data.body(target).xmat.reshape(3, 3)
            if spec.shape == "cylinder":
                radius, half_h = spec.size
                axial = abs(float(rot[:, 2] @ y_grip))
                return float(2 * (radius * np.sqrt(max(0.0, 1 - axial**2)) + half_h * axial))
            half = np.array(spec.size)
        return float(2 * np.sum(np.abs(rot.T @ y_grip) * half))

    def _update_grasp_assist(self) -> None:
        """Weld an object when the closing fingers reach it inside the grasp region; release on opening.

        While an object is held, the finger target is held at the object's width, so the gripper
        joint reads the object's width, as a real parallel-jaw gripper would.
        """
        for i, side in enumerate(SIDES):
            cmd = self.command[14 + i]
            held = self.held[side]
            if held is not None:
                if cmd > min(self._held_width[side] + GRASP_RELEASE_MARGIN, GRASP_RELEASE_ALWAYS):
                    self.data.eq_active[self._weld[(side, held)]] = 0
                    self.held[side] = None
                else:
                    self.data.ctrl[14 + i] = max(cmd, self._held_width[side])
                continue
            if cmd >= GRASP_CLOSE_BELOW:
                continue
            opening = self.data.ten_length[self._gripper_tendons[i]]
            taken = set(self.held.values())
            for target in scene.grasp_targets():
                if target in taken or not self._in_grasp_region(side, self._grasp_point(target)):
                    continue
                width = self.grip_width(side, target)
                if width < GRASP_MAX_WIDTH and opening <= width + 0.004:
                    self._weld_now(side, target)
                    self._held_width[side] = width
                    self.data.ctrl[14 + i] = max(cmd, width)
                    break

    def _weld_now(self, side: str, target: str) -> None:
        eq = self._weld[(side, target)]
        b1, b2 = self._gripper_body[side], self.model.body(target).id
        p1, q1 = self.data.xpos[b1], self.data.xquat[b1]
        p2, q2 = self.data.xpos[b2], self.data.xquat[b2]
        q1_inv = np.zeros(4)
        mujoco.mju_negQuat(q1_inv, q1)
        rel_pos = np.zeros(3)
        mujoco.mju_rotVecQuat(rel_pos, p2 - p1, q1_inv)
        rel_quat = np.zeros(4)
        mujoco.mju_mulQuat(rel_quat, q1_inv, q2)
        # eq_data: anchor(3) in body2, relpose pos(3) + quat(4) of body2 in body1, torquescale.
        self.model.eq_data[eq, 0:3] = 0.0
        self.model.eq_data[eq, 3:6] = rel_pos
        self.model.eq_data[eq, 6:10] = rel_quat
        self.model.eq_data[eq, 10] = 1.0
        self.data.eq_active[eq] = 1
        self.held[side] = target

    # -- rendering -----------------------------------------------------------
    def render(self, cameras: tuple[str, ...] | None = None) -> np.ndarray:
        """Images [C, H, W, 3] uint8 of `cameras` (default: the configured three)."""
        cams = cameras or self.config.cameras
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.config.image_height, self.config.image_width)
        out = np.empty((len(cams), self.config.image_height, self.config.image_width, 3), np.uint8)
        for k, cam in enumerate(cams):
            self._renderer.update_scene(self.data, camera=cam)
            self._renderer.render(out=out[k])
        return out

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> G1Sim:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def urdf_limits_match_model(sim: G1Sim, urdf_path=None) -> tuple[bool, str]:
    """Compare the MuJoCo joint/actuator ranges with the URDF's limits (for tests and startup checks)."""
    limits = load_joint_limits(urdf_path)
    m = sim.model
    lo = np.array([m.actuator(n).ctrlrange[0] for n in JOINT_NAMES])
    hi = np.array([m.actuator(n).ctrlrange[1] for n in JOINT_NAMES])
    if not (np.allclose(lo, limits.lower, atol=1e-6) and np.allclose(hi, limits.upper, atol=1e-6)):
        return False, f"actuator ranges {lo}..{hi} differ from URDF {limits.lower}..{limits.upper}"
    jr = np.array([m.joint(n).range for n in JOINT_NAMES[:14]])
    if not np.allclose(jr[:, 0], limits.lower[:14]) or not np.allclose(jr[:, 1], limits.upper[:14]):
        return False, "arm joint ranges differ from URDF"
    if not np.allclose(sim.velocity, limits.velocity):
        return False, "velocity limits differ from URDF"
    return True, "ok"
