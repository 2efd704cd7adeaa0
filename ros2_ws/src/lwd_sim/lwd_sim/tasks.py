"""The task suite: instructions, randomised initial conditions, sub-task progress and sparse success.

A `Task` describes a family of episodes; `Task.sample(rng, instruction)` draws one
`TaskInstance` (goal + initial scene) which then judges the simulator state with
`evaluate(sim) -> TaskStatus`. Sub-tasks are latched: once done they stay done,
so the score (fraction of sub-tasks done) never decreases within an episode.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from lwd_description.robot import NUM_JOINTS
from lwd_sim import scene
from lwd_sim.scene import ITEMS, SPOTS, TABLE_TOP_Z
from lwd_sim.sim import G1Sim

OFF_TABLE_Z = TABLE_TOP_Z - 0.1
DRAWER_OPEN_ENOUGH = 0.17
DRAWER_CLOSED_BELOW = 0.02
DRAWER_TRAVEL_HALF = scene.DRAWER_TRAVEL / 2


@dataclass(frozen=True)
class TaskStatus:
    success: bool
    failed: bool
    subtasks_done: int
    subtasks_total: int
    subtask_names: tuple[str, ...]
    done_flags: tuple[bool, ...]
    subtask_scores: tuple[float, ...]  # best so far per sub-task: 1 done, 0.5 partly, 0 not

    @property
    def score(self) -> float:
        """The paper's step-wise score: mean of per-sub-task 1 / 0.5 / 0 (1 on success)."""
        return 1.0 if self.success else float(np.mean(self.subtask_scores)) if self.subtask_scores else 0.0


@lru_cache(maxsize=1)
def home_pose() -> np.ndarray:
    """Both arms forward with open grippers above the table (computed once by IK)."""
    import mujoco

    from lwd_sim.ik import ArmIK, gripper_rotation

    model = mujoco.MjModel.from_xml_string(scene.mjcf_text(64, 64))
    q = np.zeros(NUM_JOINTS)
    for off, side, sign in ((0, "left", 1.0), (7, "right", -1.0)):
        ik = ArmIK(model, side)
        seed = np.array([-0.4, 0.7 * sign, -0.6 * sign, -2.3, 0.55 * sign, 1.6, 0.9 * sign])
        q7, err = ik.solve(seed, np.array([0.32, 0.24 * sign, 0.98]), gripper_rotation(0.0, 0.4), iters=200)
        if err > 5e-3:
            raise RuntimeError(f"home pose IK failed for the {side} arm ({err:.3f} m)")
        q[off : off + 7] = q7
    q[14:] = 0.08
    return q


def item_spec(name: str) -> scene.ItemSpec:
    for it in ITEMS:
        if it.name == name:
            return it
    raise KeyError(name)


def spot_spec(name: str) -> scene.SpotSpec:
    for s in SPOTS:
        if s.name == name:
            return s
    raise KeyError(name)


def rest_z(item: str) -> float:
    return TABLE_TOP_Z + item_spec(item).half_height


def _sample_positions(
    rng: np.random.Generator,
    n: int,
    x: tuple,
    y: tuple,
    min_sep: float,
    first_region: tuple[tuple, tuple] | None = None,
) -> list[np.ndarray]:
    """n points at least min_sep apart; the first one inside `first_region` if given."""
    for _ in range(1000):
        pts = [np.array([rng.uniform(*x), rng.uniform(*y)]) for _ in range(n)]
        if first_region is not None:
            pts[0] = np.array([rng.uniform(*first_region[0]), rng.uniform(*first_region[1])])
        if all(np.linalg.norm(a - b) >= min_sep for i, a in enumerate(pts) for b in pts[i + 1 :]):
            return pts
    raise RuntimeError("could not place items without overlap")


@dataclass
class TaskInstance:
    """One episode's goal and initial scene; judges progress from the simulator."""

    task: Task
    instruction: str
    items: dict[str, np.ndarray]  # name -> (x, y, z, yaw)
    arm_q: np.ndarray
    drawer_opening: float
    target_items: tuple[str, ...]
    spot: str | None = None
    goal_spots: tuple[str, ...] = ()  # SortTask: the spot of each target item
    _latched: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._latched = [0.0] * len(self.task.subtasks)

    @property
    def time_limit_steps(self) -> int:
        return int(round(self.task.time_limit_s * 30))

    def reset_sim(self, sim: G1Sim) -> None:
        sim.reset(self.arm_q, self.items, self.drawer_opening)
        self._latched = [0.0] * len(self.task.subtasks)

    def evaluate(self, sim: G1Sim) -> TaskStatus:
        now, success, failed = self.task.judge(self, sim)
        self._latched = [max(a, float(b)) for a, b in zip(self._latched, now, strict=True)]
        if success:
            self._latched = [1.0] * len(self._latched)
        flags = tuple(v >= 1.0 for v in self._latched)
        return TaskStatus(
            bool(success),
            bool(failed and not success),
            int(sum(flags)),
            len(self._latched),
            self.task.subtasks,
            flags,
            tuple(self._latched),
        )


def held_by(sim: G1Sim, item: str) -> str | None:
    for side, held in sim.held.items():
        if held == item:
            return side
    return None


def in_spot(sim: G1Sim, item: str, spot: str) -> bool:
    s = spot_spec(spot)
    p = sim.body_pos(item)
    return bool(np.linalg.norm(p[:2] - np.array(s.xy)) < s.radius and p[2] < rest_z(item) + 0.015)


def near_tcp(sim: G1Sim, item: str, radius: float = 0.05) -> bool:
    """A gripper's TCP is within `radius` of the item: a grasp attempt (half credit)."""
    p = sim.body_pos(item)
    return any(float(np.linalg.norm(sim.tcp_pose(s)[0] - p)) < radius for s in ("left", "right"))


def over_drawer(sim: G1Sim, item: str) -> bool:
    d, p = sim.body_pos("drawer"), sim.body_pos(item)
    hx, hy, _ = scene.DRAWER_HALF
    return bool(abs(p[0] - d[0]) < hx and abs(p[1] - d[1]) < hy)


def in_drawer(sim: G1Sim, item: str) -> bool:
    d = sim.body_pos("drawer")
    p = sim.body_pos(item)
    hx, hy, _ = scene.DRAWER_HALF
    return bool(
        abs(p[0] - d[0]) < hx and abs(p[1] - d[1]) < hy and p[2] < d[2] + item_spec(item).half_height + 0.03
    )


class Task:
    name: str
    subtasks: tuple[str, ...]
    time_limit_s: float
    instructions: tuple[str, ...]

    def sample(self, rng: np.random.Generator, instruction: str | None = None) -> TaskInstance:
        raise NotImplementedError

    def judge(self, inst: TaskInstance, sim: G1Sim) -> tuple[list[float], bool, bool]:
        """(per sub-task now: 1 done, 0.5 partly, 0 not; success; failed)."""
        raise NotImplementedError

    def _check_instruction(self, instruction: str | None, rng: np.random.Generator) -> str:
        if not instruction:
            return self.instructions[int(rng.integers(len(self.instructions)))]
        text = instruction.strip().lower()
        if text not in self.instructions:
            raise ValueError(
                f"task {self.name!r} has no instruction {instruction!r}; known: {list(self.instructions)}"
            )
        return text


def _arm_start(rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    q = home_pose().copy()
    q[:14] += rng.normal(0.0, noise, 14)
    return q


class PickPlaceTask(Task):
    """Grocery restocking: put the instructed item (among distractors) at the instructed spot."""

    subtasks = ("grasp", "lift", "carry_to_spot", "release_in_spot")

    def __init__(
        self,
        name: str,
        items: tuple[str, ...],
        targets: tuple[str, ...],
        spots: tuple[str, ...],
        time_limit_s: float = 10.0,
        min_items: int | None = None,
        target_region: tuple[tuple[float, float], tuple[float, float]] | None = None,
    ):
        self.name = name
        self.items = items
        self.target_region = target_region  # (x range, y range) of the instructed item; None: anywhere
        self.min_items = min_items or len(items)  # item sets: the target plus a random subset of distractors
        self.time_limit_s = time_limit_s
        preposition = {"left_bin": "in", "right_bin": "in", "plate": "on"}
        self._goals = {
            f"put the {item_spec(t).words} {preposition[s]} the {spot_spec(s).words}": (t, s)
            for t in targets
            for s in spots
        }
        self.instructions = tuple(self._goals)

    def sample(self, rng: np.random.Generator, instruction: str | None = None) -> TaskInstance:
        text = self._check_instruction(instruction, rng)
        target, spot = self._goals[text]
        others = [n for n in self.items if n != target]
        k = int(rng.integers(self.min_items, len(self.items) + 1)) - 1
        present = [target] + [others[i] for i in sorted(rng.choice(len(others), size=k, replace=False))]
        xy = _sample_positions(
            rng, len(present), (0.37, 0.52), (-0.2, 0.2), 0.095, first_region=self.target_region
        )
        items = {
            name: np.array([p[0], p[1], rest_z(name) + 0.002, rng.uniform(-0.6, 0.6)])
            for name, p in zip(present, xy, strict=True)
        }
        return TaskInstance(self, text, items, _arm_start(rng), 0.0, (target,), spot)

    def judge(self, inst: TaskInstance, sim: G1Sim) -> tuple[list[bool], bool, bool]:
        target, spot = inst.target_items[0], inst.spot
        held = held_by(sim, target) is not None
        p = sim.body_pos(target)
        s = spot_spec(spot)
        over_spot = bool(np.linalg.norm(p[:2] - np.array(s.xy)) < s.radius)
        placed = in_spot(sim, target, spot) and not held
        lifted = held and p[2] > rest_z(target) + 0.04
        now = [
            1.0 if held else 0.5 * near_tcp(sim, target),
            float(lifted),
            float(over_spot and (held or placed)),
            float(placed),
        ]
        failed = bool(p[2] < OFF_TABLE_Z)
        return now, placed, failed


class DrawerRestockTask(Task):
    """Long horizon: open the drawer, put two items in it, close it (6 sub-tasks)."""

    subtasks = ("open_drawer", "grasp_first", "place_first", "grasp_second", "place_second", "close_drawer")

    def __init__(self, name: str = "drawer_restock", time_limit_s: float = 180.0):
        self.name = name
        self.time_limit_s = time_limit_s
        names = [i.name for i in ITEMS]
        self._goals = {
            f"open the drawer, put the {item_spec(a).words} and the {item_spec(b).words} in it, and close it": (
                a,
                b,
            )
            for a in names
            for b in names
            if a < b
        }
        self.instructions = tuple(self._goals)

    def sample(self, rng: np.random.Generator, instruction: str | None = None) -> TaskInstance:
        text = self._check_instruction(instruction, rng)
        a, b = self._goals[text]
        sides = (1.0, -1.0) if rng.random() < 0.5 else (-1.0, 1.0)
        items = {}
        for name, sign in zip((a, b), sides, strict=True):
            items[name] = np.array(
                [
                    rng.uniform(0.36, 0.48),
                    sign * rng.uniform(0.24, 0.3),
                    rest_z(name) + 0.002,
                    rng.uniform(-0.6, 0.6),
                ]
            )
        return TaskInstance(self, text, items, _arm_start(rng), float(rng.uniform(0.0, 0.015)), (a, b))

    def judge(self, inst: TaskInstance, sim: G1Sim) -> tuple[list[float], bool, bool]:
        a, b = inst.target_items
        opening = sim.drawer_opening()
        a_in = in_drawer(sim, a) and held_by(sim, a) is None
        b_in = in_drawer(sim, b) and held_by(sim, b) is None
        closed = opening < DRAWER_CLOSED_BELOW
        success = a_in and b_in and closed and held_by(sim, "drawer") is None

        def grasp(item: str, inside: bool) -> float:
            return 1.0 if held_by(sim, item) is not None or inside else 0.5 * near_tcp(sim, item)

        def place(item: str, inside: bool) -> float:
            return 1.0 if inside else 0.5 * (held_by(sim, item) is not None and over_drawer(sim, item))

        now = [
            1.0 if opening > DRAWER_OPEN_ENOUGH else 0.5 * (opening > DRAWER_OPEN_ENOUGH / 2),
            grasp(a, a_in),
            place(a, a_in),
            grasp(b, b_in),
            place(b, b_in),
            1.0 if success else 0.5 * (a_in and b_in and opening < DRAWER_TRAVEL_HALF),
        ]
        failed = any(sim.body_pos(n)[2] < OFF_TABLE_Z for n in (a, b))
        return now, success, failed


class SortTask(Task):
    """Long horizon: put three items each at its own spot (grasp + place per item: 6 sub-tasks)."""

    def __init__(self, name: str = "sort_groceries", time_limit_s: float = 120.0):
        self.name = name
        self.time_limit_s = time_limit_s
        self.subtasks = tuple(
            f"{verb}_{k}" for k in ("first", "second", "third") for verb in ("grasp", "place")
        )
        spots = [s.name for s in SPOTS]
        preposition = {"left_bin": "in", "right_bin": "in", "plate": "on"}
        self._goals: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        names = [i.name for i in ITEMS]
        for skip in names:  # three of the four items, each to one of the three spots
            chosen = [n for n in names if n != skip]
            for perm in itertools.permutations(spots):
                parts = [
                    f"the {item_spec(i).words} {preposition[p]} the {spot_spec(p).words}"
                    for i, p in zip(chosen, perm, strict=True)
                ]
                text = f"put {parts[0]}, {parts[1]} and {parts[2]}"
                self._goals[text] = (tuple(chosen), tuple(perm))
        self.instructions = tuple(self._goals)

    def sample(self, rng: np.random.Generator, instruction: str | None = None) -> TaskInstance:
        text = self._check_instruction(instruction, rng)
        chosen, spots = self._goals[text]
        xy = _sample_positions(rng, len(chosen), (0.38, 0.52), (-0.2, 0.2), 0.1)
        items = {
            name: np.array([p[0], p[1], rest_z(name) + 0.002, rng.uniform(-0.6, 0.6)])
            for name, p in zip(chosen, xy, strict=True)
        }
        return TaskInstance(self, text, items, _arm_start(rng), 0.0, chosen, None, spots)

    def judge(self, inst: TaskInstance, sim: G1Sim) -> tuple[list[float], bool, bool]:
        now: list[float] = []
        placed_all = True
        for item, spot in zip(inst.target_items, inst.goal_spots, strict=True):
            held = held_by(sim, item) is not None
            placed = in_spot(sim, item, spot) and not held
            s = spot_spec(spot)
            over = bool(np.linalg.norm(sim.body_pos(item)[:2] - np.array(s.xy)) < s.radius)
            now.append(1.0 if held or placed else 0.5 * near_tcp(sim, item))
            now.append(1.0 if placed else 0.5 * (held and over))
            placed_all = placed_all and placed
        failed = any(sim.body_pos(n)[2] < OFF_TABLE_Z for n in inst.target_items)
        return now, placed_all, failed


_ALL_ITEMS = tuple(i.name for i in ITEMS)
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        # The easy task: one instruction, the can on the left arm's side, two distractors anywhere.
        PickPlaceTask(
            "can_to_bin",
            _ALL_ITEMS[:3],
            ("red_can",),
            ("left_bin",),
            time_limit_s=8.0,
            target_region=((0.40, 0.50), (0.04, 0.20)),
        ),
        PickPlaceTask(
            "bottle_to_plate",
            _ALL_ITEMS,
            ("blue_bottle",),
            ("plate",),
            time_limit_s=8.0,
            min_items=3,
            target_region=((0.40, 0.50), (-0.12, 0.12)),
        ),
        PickPlaceTask(
            "box_to_right_bin",
            _ALL_ITEMS,
            ("green_box",),
            ("right_bin",),
            time_limit_s=8.0,
            min_items=3,
            target_region=((0.40, 0.50), (-0.20, -0.04)),
        ),
        PickPlaceTask(
            "grocery_pick_place",
            _ALL_ITEMS,
            _ALL_ITEMS,
            tuple(s.name for s in SPOTS),
            time_limit_s=10.0,
            min_items=2,
        ),
        DrawerRestockTask(),
        SortTask(),
    )
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]


# Every instruction of every task, in a fixed order: the `task_id` a policy sees.
ALL_INSTRUCTIONS: tuple[str, ...] = tuple(dict.fromkeys(i for t in TASKS.values() for i in t.instructions))


def task_of_instruction(instruction: str) -> str:
    """The first task (in TASKS order) that has `instruction`."""
    for t in TASKS.values():
        if instruction in t.instructions:
            return t.name
    raise ValueError(f"no task has instruction {instruction!r}")
