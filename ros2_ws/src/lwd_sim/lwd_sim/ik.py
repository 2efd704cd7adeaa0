"""Damped least-squares inverse kinematics of one arm's tool centre point, on a scratch MjData.

The scripted expert plans in Cartesian space (TCP position + gripper yaw/tilt) and
turns each waypoint into 7 joint targets here; the live simulation is never touched.
"""

from __future__ import annotations

import mujoco
import numpy as np


def gripper_rotation(yaw: float, tilt: float = 0.0) -> np.ndarray:
    """Rotation of the gripper frame: fingers pointing down, turned by `yaw`, pitched forward by `tilt`."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    ct, st = np.cos(tilt), np.sin(tilt)
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    # Fingers along -z of the gripper frame; tilt rotates them towards +x (forward).
    ry = np.array([[ct, 0, -st], [0, 1, 0], [st, 0, ct]])
    return rz @ ry


def _rot_error(r_now: np.ndarray, r_goal: np.ndarray) -> np.ndarray:
    """Axis-angle vector rotating r_now onto r_goal (world frame)."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, (r_goal @ r_now.T).reshape(-1))
    vel = np.zeros(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


class ArmIK:
    """IK for the 7 joints of one arm; joint limits respected by clipping each iteration."""

    def __init__(self, model: mujoco.MjModel, side: str):
        self.model = model
        self.data = mujoco.MjData(model)
        self.site = model.site(f"{side}_tcp").id
        names = [f"{side}_arm_joint{i}" for i in range(1, 8)]
        self.qadr = np.array([model.joint(n).qposadr[0] for n in names])
        self.dadr = np.array([model.joint(n).dofadr[0] for n in names])
        self.lower = np.array([model.joint(n).range[0] for n in names])
        self.upper = np.array([model.joint(n).range[1] for n in names])

    def fk(self, q7: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.data.qpos[self.qadr] = q7
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def solve(
        self,
        q_init: np.ndarray,
        pos: np.ndarray,
        rot: np.ndarray,
        iters: int = 60,
        tol: float = 2e-3,
        rot_weight: float = 0.4,
        damping: float = 0.02,
        rest: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float]:
        """Return (q7, position error in metres) for the TCP reaching `pos` with orientation `rot`."""
        q = np.clip(np.asarray(q_init, float).copy(), self.lower, self.upper)
        jacp = np.zeros((3, self.model.nv))
        jacr = np.zeros((3, self.model.nv))
        err_pos = np.inf
        for _ in range(iters):
            p, r = self.fk(q)
            e_p = pos - p
            e_r = _rot_error(r, rot) * rot_weight
            err_pos = float(np.linalg.norm(e_p))
            if err_pos < tol and np.linalg.norm(e_r) < tol * 5:
                break
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jacSite(self.model, self.data, jacp, jacr, self.site)
            jac = np.vstack([jacp[:, self.dadr], jacr[:, self.dadr] * rot_weight])
            err = np.concatenate([e_p, e_r])
            jjt = jac @ jac.T + damping**2 * np.eye(6)
            dq = jac.T @ np.linalg.solve(jjt, err)
            if rest is not None:  # nullspace pull towards a comfortable posture
                null = np.eye(7) - jac.T @ np.linalg.solve(jjt, jac)
                dq += null @ (0.05 * (rest - q))
            step = np.linalg.norm(dq)
            if step > 0.3:
                dq *= 0.3 / step
            q = np.clip(q + dq, self.lower, self.upper)
        p, _ = self.fk(q)
        return q, float(np.linalg.norm(pos - p))
