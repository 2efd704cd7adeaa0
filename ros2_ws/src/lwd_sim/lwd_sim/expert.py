"""Scripted expert per task: Cartesian waypoints -> IK -> smooth joint-space targets at 30 Hz.

The expert is closed-loop at phase granularity: whenever its queue of planned
targets runs dry it looks at the simulator (what is held, where items are, how far
the drawer is open) and plans the next phase from there. That makes it usable as
a teleoperator that takes over mid-episode. `ExpertConfig` injects noise and
failures (wrong item, missed grasp, early drop, stall) to produce the mixed-quality
data of historical policies.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from lwd_description.robot import NUM_JOINTS
from lwd_sim import scene
from lwd_sim.ik import ArmIK, gripper_rotation
from lwd_sim.sim import G1Sim
from lwd_sim.tasks import (
    DRAWER_OPEN_ENOUGH,
    DrawerRestockTask,
    PickPlaceTask,
    SortTask,
    TaskInstance,
    held_by,
    in_drawer,
    in_spot,
    item_spec,
    rest_z,
    spot_spec,
)

OPEN = 0.08
CLOSED = 0.0
TILT = 0.4
HOVER = 0.12  # approach height above a grasp/place point


@dataclass(frozen=True)
class ExpertConfig:
    """Noise and failure injection. Defaults: a clean demonstrator."""

    speed: float = 0.35  # TCP speed, m/s
    waypoint_noise: float = 0.0  # std (m) added to grasp/place points
    action_noise: float = 0.0  # std (rad, and m/10 for grippers) added to every output target
    p_wrong_item: float = 0.0  # per grasp: pick a distractor instead of the instructed item
    p_miss: float = 0.0  # per grasp: offset the grasp point by ~5 cm
    p_drop: float = 0.0  # per carry: open the gripper half-way to the goal
    p_stall: float = 0.0  # per phase: freeze for the rest of the episode
    max_grasp_attempts: int = 3


DEMO = ExpertConfig()
HISTORICAL = ExpertConfig(
    waypoint_noise=0.01,
    action_noise=0.01,
    p_wrong_item=0.1,
    p_miss=0.15,
    p_drop=0.1,
    p_stall=0.03,
    max_grasp_attempts=2,
)


@dataclass(frozen=True)
class Waypoint:
    side: str
    pos: np.ndarray
    yaw: float
    gripper: float
    min_steps: int = 4


class ScriptedExpert:
    """Produces joint targets for one `TaskInstance` on one `G1Sim`."""

    def __init__(
        self,
        sim: G1Sim,
        inst: TaskInstance,
        config: ExpertConfig = DEMO,
        rng: np.random.Generator | None = None,
    ):
        self.sim = sim
        self.inst = inst
        self.config = config
        self.rng = rng or np.random.default_rng()
        self.ik = {s: ArmIK(sim.model, s) for s in ("left", "right")}
        self.queue: deque[np.ndarray] = deque()
        self.last = sim.command.copy()
        self.grasp_attempts: dict[str, int] = {}
        self.stalled = False
        self.carry_yaw: dict[str, float] = {}

    def reset(self) -> None:
        """Forget the plan (after someone else moved the robot); the next call replans from the sim."""
        self.queue.clear()
        self.last = self.sim.command.copy()

    # -- interface -----------------------------------------------------------
    def act(self) -> np.ndarray:
        if not self.queue:
            self._plan()
        if self.queue:
            self.last = self.queue.popleft()
        out = self.last.copy()
        if self.config.action_noise > 0:
            noise = self.rng.normal(0.0, self.config.action_noise, NUM_JOINTS)
            noise[14:] *= 0.1
            out += noise
        return self.sim.clip(out)

    def peek(self, horizon: int) -> np.ndarray:
        """The next `horizon` planned targets without consuming them (planning first if the plan is empty).

        Rows past the end of the current phase repeat its last target: what follows depends on
        the outcome of the phase, which only the simulator knows once it has run.
        """
        if not self.queue:
            self._plan()
        rows = list(self.queue)[:horizon] or [self.last]
        rows += [rows[-1]] * (horizon - len(rows))
        out = np.stack(rows).copy()
        if self.config.action_noise > 0:
            noise = self.rng.normal(0.0, self.config.action_noise, out.shape)
            noise[:, 14:] *= 0.1
            out += noise
        return np.clip(out, self.sim.lower, self.sim.upper)

    def advance(self, steps: int) -> None:
        """Consume `steps` planned targets (they were executed from a peeked chunk)."""
        for _ in range(min(steps, len(self.queue))):
            self.last = self.queue.popleft()

    # -- planning ------------------------------------------------------------
    def _plan(self) -> None:
        if self.stalled or (self.config.p_stall > 0 and self.rng.random() < self.config.p_stall):
            self.stalled = True
            return
        if isinstance(self.inst.task, PickPlaceTask | SortTask):
            wps = self._plan_pick_place()
        elif isinstance(self.inst.task, DrawerRestockTask):
            wps = self._plan_drawer()
        else:
            raise TypeError(f"no expert for task {self.inst.task.name}")
        self._enqueue(wps)

    def _noisy(self, p: np.ndarray) -> np.ndarray:
        if self.config.waypoint_noise > 0:
            p = p + self.rng.normal(0.0, self.config.waypoint_noise, 3) * np.array([1, 1, 0.5])
        return p

    def _side_for(self, y: float) -> str:
        return "left" if y >= 0 else "right"

    def _home_wp(self, side: str) -> Waypoint:
        pos = np.array([0.32, 0.24 if side == "left" else -0.24, 0.98])
        return Waypoint(side, pos, 0.0, OPEN)

    def _grasp_yaw(self, side: str, item: str) -> float:
        """Gripper yaw that closes across the item's narrower horizontal side (boxes); 0 for cylinders."""
        spec = item_spec(item)
        if spec.shape != "box":
            return 0.0
        rot = self.sim.data.body(item).xmat.reshape(3, 3)
        item_yaw = float(np.arctan2(rot[1, 0], rot[0, 0]))
        # Gripper y along the item's y axis (yaw = item_yaw) or its x axis (yaw = item_yaw - pi/2).
        options = [(spec.size[1], item_yaw), (spec.size[0], item_yaw - np.pi / 2)]
        _, yaw = min(options, key=lambda o: o[0])
        return float((yaw + np.pi / 2) % np.pi - np.pi / 2)

    def _grasp_wps(self, side: str, item: str) -> list[Waypoint]:
        p = self.sim.body_pos(item)
        yaw = self._grasp_yaw(side, item)
        self.carry_yaw[side] = yaw
        if self.config.p_miss > 0 and self.rng.random() < self.config.p_miss:
            angle = self.rng.uniform(0, 2 * np.pi)
            p = p + np.array([np.cos(angle), np.sin(angle), 0.0]) * 0.055
        p = self._noisy(p)
        self.grasp_attempts[item] = self.grasp_attempts.get(item, 0) + 1
        return [
            Waypoint(side, p + [0, 0, HOVER], yaw, OPEN),
            Waypoint(side, p, yaw, OPEN, min_steps=8),
            Waypoint(side, p, yaw, CLOSED, min_steps=8),
        ]

    def _place_wps(self, side: str, item: str, goal_xy: np.ndarray, goal_z: float) -> list[Waypoint]:
        cur = self.sim.tcp_pose(side)[0]
        yaw = self.carry_yaw.get(side, 0.0)
        goal = self._noisy(np.array([goal_xy[0], goal_xy[1], goal_z]))
        lift = np.array([cur[0], cur[1], max(cur[2], goal_z) + HOVER])
        above = goal + [0, 0, HOVER]
        if self.config.p_drop > 0 and self.rng.random() < self.config.p_drop:
            mid = (lift + above) / 2
            return [
                Waypoint(side, lift, yaw, CLOSED),
                Waypoint(side, mid, yaw, CLOSED),
                Waypoint(side, mid, yaw, OPEN, min_steps=8),
                self._home_wp(side),
            ]
        return [
            Waypoint(side, lift, yaw, CLOSED),
            Waypoint(side, above, yaw, CLOSED),
            Waypoint(side, goal, yaw, CLOSED, min_steps=6),
            Waypoint(side, goal, yaw, OPEN, min_steps=8),
            Waypoint(side, goal + [0, 0, HOVER], yaw, OPEN),
            self._home_wp(side),
        ]

    def _grasp_or_give_up(self, side: str, item: str) -> list[Waypoint]:
        if self.grasp_attempts.get(item, 0) >= self.config.max_grasp_attempts:
            self.stalled = True
            return []
        return self._grasp_wps(side, item)

    def _plan_pick_place(self) -> list[Waypoint]:
        """Place what is held at its goal spot, else pick the first goal item not yet in its spot."""
        goals = dict(zip(self.inst.target_items, self.inst.goal_spots or (self.inst.spot,), strict=True))
        held_side = next((side for side, h in self.sim.held.items() if h is not None), None)
        if held_side is not None:
            item = self.sim.held[held_side]
            s = spot_spec(goals.get(item, next(iter(goals.values()))))
            return self._place_wps(held_side, item, np.array(s.xy), rest_z(item) + 0.01)
        for target, spot in goals.items():
            if in_spot(self.sim, target, spot):
                continue
            s = spot_spec(spot)
            item = target
            if self.config.p_wrong_item > 0 and self.rng.random() < self.config.p_wrong_item:
                others = [n for n in self.inst.items if n not in goals]
                if others:
                    item = others[int(self.rng.integers(len(others)))]
            side = (
                self._side_for(s.xy[1]) if abs(s.xy[1]) > 0.1 else self._side_for(self.sim.body_pos(item)[1])
            )
            return self._grasp_or_give_up(side, item)
        return []  # done: hold still

    def _plan_drawer(self) -> list[Waypoint]:
        a, b = self.inst.target_items
        opening = self.sim.drawer_opening()
        held = {side: h for side, h in self.sim.held.items() if h is not None}
        handle_yaw = np.pi / 2
        closed_x = scene.DRAWER_CLOSED_X - scene.HANDLE_OFFSET
        for side, h in held.items():
            if h == "drawer":
                hp = self.sim.handle_pos()
                want_open = opening < DRAWER_OPEN_ENOUGH and not (
                    in_drawer(self.sim, a) and in_drawer(self.sim, b)
                )
                x = closed_x - scene.DRAWER_TRAVEL + 0.01 if want_open else closed_x + 0.005
                return [
                    Waypoint(side, np.array([x, hp[1], hp[2]]), handle_yaw, CLOSED, min_steps=10),
                    Waypoint(side, np.array([x, hp[1], hp[2]]), handle_yaw, OPEN, min_steps=8),
                    Waypoint(side, np.array([x, hp[1], hp[2] + HOVER]), handle_yaw, OPEN),
                    self._home_wp(side),
                ]
            tray = self.sim.body_pos("drawer")
            dy = 0.05 if h == a else -0.05
            return self._place_wps(
                side, h, np.array([tray[0], tray[1] + dy]), tray[2] + rest_z(h) - scene.TABLE_TOP_Z + 0.02
            )
        both_in = in_drawer(self.sim, a) and in_drawer(self.sim, b)
        if opening < DRAWER_OPEN_ENOUGH and not both_in:
            return self._handle_wps("right", handle_yaw)
        for item in (a, b):
            if not in_drawer(self.sim, item) and held_by(self.sim, item) is None:
                return self._grasp_or_give_up(self._side_for(self.sim.body_pos(item)[1]), item)
        if both_in and opening > 0.015:
            return self._handle_wps("right", handle_yaw)
        return []

    def _handle_wps(self, side: str, yaw: float) -> list[Waypoint]:
        hp = self.sim.handle_pos()
        return [
            Waypoint(side, hp + [0, 0, HOVER], yaw, OPEN),
            Waypoint(side, hp, yaw, OPEN, min_steps=8),
            Waypoint(side, hp, yaw, CLOSED, min_steps=8),
        ]

    # -- waypoints -> joint targets -----------------------------------------------
    def _enqueue(self, wps: list[Waypoint]) -> None:
        q = self.last.copy()
        speed = max(self.config.speed, 1e-3)
        for wp in wps:
            off = 0 if wp.side == "left" else 7
            g = 14 if wp.side == "left" else 15
            start_pos = self.ik[wp.side].fk(q[off : off + 7])[0]
            q7, _ = self.ik[wp.side].solve(q[off : off + 7], wp.pos, gripper_rotation(wp.yaw, TILT))
            goal = q.copy()
            goal[off : off + 7] = q7
            goal[g] = wp.gripper
            cart_steps = np.linalg.norm(wp.pos - start_pos) / speed * 30
            joint_steps = np.max(np.abs(goal - q)[:14] / 1.5) * 30
            grip_steps = abs(goal[g] - q[g]) / 0.15 * 30
            n = int(max(wp.min_steps, cart_steps, joint_steps, grip_steps))
            for k in range(1, n + 1):
                s = k / n
                s = s * s * (3 - 2 * s)
                self.queue.append(q + (goal - q) * s)
            q = goal
