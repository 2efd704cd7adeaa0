"""A tiny self-contained sparse-reward task whose episodes go through the real replay path.

"Reach": one chunk (30 steps) per episode. The executed trajectory moves the joints
linearly from a random start to an end point; the episode succeeds iff the end point
of joints 0 and 1 lies within RADIUS of GOAL. Images are small and carry no
information (the task is solvable from joints alone). Data of mixed quality:
demonstrations (success), historical rollouts that go to the goal or to a decoy
(success / failure) and play data (random end points, labelled failure).
"""

from __future__ import annotations

import numpy as np

from lwd_common.episode import (
    ActionSource,
    Episode,
    EpisodeKind,
    EpisodeMeta,
    EpisodeOutcome,
    Label,
    StepRecord,
)
from lwd_common.preprocessing import encode_jpeg
from lwd_description.robot import CAMERA_NAMES, CHUNK_HORIZON, NUM_JOINTS

GOAL = np.array([0.6, 0.6], np.float32)
DECOY = np.array([-0.6, -0.6], np.float32)
# The arm moves as a whole: joints 2.. follow the first joint's end point with fixed signs.
_PATTERN = np.array([1, -1, 1, 1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1], np.float32) * 0.5
RADIUS = 0.35
INSTRUCTION = "reach the goal"
T = CHUNK_HORIZON


def success_of(actions: np.ndarray) -> bool:
    """The task's success signal for an executed chunk [T, 16]."""
    return bool(np.linalg.norm(actions[-1, :2] - GOAL) < RADIUS)


def trajectory(rng: np.random.Generator, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    start = rng.normal(0.0, 0.05, NUM_JOINTS).astype(np.float32)
    target = np.concatenate([end, end[0] * _PATTERN]).astype(np.float32) + start
    s = np.linspace(0.0, 1.0, T, dtype=np.float32)[:, None]
    actions = (1 - s) * start + s * target
    joints = np.concatenate([start[None], actions[:-1]])
    return joints.astype(np.float32), actions.astype(np.float32)


def make_episode(
    rng: np.random.Generator,
    kind: EpisodeKind,
    end: np.ndarray,
    idx: int,
    image_size: int = 8,
    teleop_from: int | None = None,
) -> Episode:
    joints, actions = trajectory(rng, end.astype(np.float32))
    ok = success_of(actions) and kind != EpisodeKind.PLAY
    frame = encode_jpeg(np.full((image_size, image_size, 3), 128, np.uint8))
    meta = EpisodeMeta(
        episode_id=f"toy-{kind.value}-{idx:05d}",
        robot_id="toy",
        task="reach",
        instruction=INSTRUCTION,
        kind=kind,
    )
    steps = [
        StepRecord(
            step=t,
            stamp=t / 30.0,
            images={c: frame for c in CAMERA_NAMES},
            joint_pos=joints[t],
            action=actions[t],
            source=ActionSource.TELEOP
            if (kind == EpisodeKind.DEMO or (teleop_from is not None and t >= teleop_from))
            else ActionSource.POLICY,
            chunk_id=0,
            policy_version="v0",
        )
        for t in range(T)
    ]
    outcome = EpisodeOutcome(label=Label.SUCCESS if ok else Label.FAILURE, num_steps=T)
    return Episode.from_steps(meta, steps, outcome)


def mixed_dataset(seed: int, n_demo: int = 12, n_rollout: int = 60, n_play: int = 30) -> list[Episode]:
    """Mixed-quality offline data: BC on all of it succeeds only ~40% of the time."""
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(n_demo):
        eps.append(make_episode(rng, EpisodeKind.DEMO, GOAL + rng.normal(0, 0.05, 2), i))
    for i in range(n_rollout):
        centre = GOAL if rng.random() < 0.35 else DECOY
        eps.append(make_episode(rng, EpisodeKind.ROLLOUT, centre + rng.normal(0, 0.05, 2), i))
    for i in range(n_play):
        eps.append(make_episode(rng, EpisodeKind.PLAY, rng.uniform(-1, 1, 2), i))
    return eps
