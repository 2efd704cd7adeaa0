"""A small episode store for the export/import tests: three 16x16 episodes that use every column.

Episode a: success, policy -> teleop -> policy -> hold, two policy versions, bytes in meta.extra.
Episode b: failure, another instruction, a teleop run at the start. Both in snapshot 1.
Episode c: a short success committed later (snapshot 2), so snapshot selection matters.
Stamps are epoch-sized and jittered, so nanosecond conversion and irregular timing are exercised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

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
from lwd_common.store import EpisodeStore
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES

T0 = 1_780_000_000.0  # an epoch-sized clock, like the robots' ROS time


def frame(step: int, cam_index: int, size: int = 16, height: int | None = None) -> np.ndarray:
    """A smooth image that changes with step and camera (JPEG-friendly, so tolerances stay meaningful)."""
    y, x = np.mgrid[0 : height or size, 0:size].astype(np.float32)
    base = 40 + 6 * step + 30 * cam_index
    img = np.stack([base + 4 * x, 120 + 3 * y, 200 - 2 * x - 2 * y], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


def build_episode(
    eid: str,
    n: int,
    label: Label,
    sources: list[ActionSource],
    instruction: str,
    robot: str = "g1a",
    extra: dict | None = None,
    seed: int = 0,
    joint_names: Sequence[str] = JOINT_NAMES,
    cameras: dict[str, int] | None = None,
    hz: float = 30.0,
) -> Episode:
    """An episode of `joint_names` and `cameras` (name -> frame height, width 16; default the G1's, 16x16)."""
    rng = np.random.default_rng(seed)
    cams = cameras if cameras is not None else dict.fromkeys(CAMERA_NAMES, 16)
    steps = []
    for i in range(n):
        steps.append(
            StepRecord(
                step=100 + i,
                stamp=T0 + seed + i / hz + float(rng.uniform(-0.004, 0.004)),
                images={c: encode_jpeg(frame(i, k, height=h)) for k, (c, h) in enumerate(cams.items())},
                joint_pos=rng.normal(size=len(joint_names)).astype(np.float32),
                action=rng.normal(size=len(joint_names)).astype(np.float32),
                source=sources[i],
                chunk_id=i // 4,
                policy_version="teleop"
                if sources[i] == ActionSource.TELEOP
                else ("v000001" if i < n // 2 else "v000002"),
            )
        )
    meta = EpisodeMeta(
        eid,
        robot,
        "pick_cup",
        instruction,
        EpisodeKind.ROLLOUT,
        started_at=T0 + seed - 0.5,
        cameras=tuple(cams),
        extra=extra or {},
        joint_names=tuple(joint_names),
    )
    outcome = EpisodeOutcome(
        label,
        n,
        reason="labelled" if label == Label.SUCCESS else "time_limit",
        note="from the test",
        ended_at=T0 + seed + n / hz + 0.2,
        subtask_score=0.5 if label == Label.FAILURE else None,
    )
    return Episode.from_steps(meta, steps, outcome)


P, TEL, H = ActionSource.POLICY, ActionSource.TELEOP, ActionSource.HOLD


def episodes() -> list[Episode]:
    a = build_episode(
        "g1a-ep-a",
        12,
        Label.SUCCESS,
        [P] * 3 + [TEL] * 4 + [P] * 3 + [H] * 2,
        "put the cup on the shelf",
        extra={"operator": "ana", "nested": {"k": [1, 2]}, "raw": b"\x00\x01"},
        seed=0,
    )
    b = build_episode("g1a-ep-b", 9, Label.FAILURE, [TEL] * 2 + [P] * 7, "hand over the cup", seed=1)
    c = build_episode("g1b-ep-c", 5, Label.SUCCESS, [P] * 5, "put the cup on the shelf", robot="g1b", seed=2)
    return [a, b, c]


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[[], tuple[EpisodeStore, list[Episode]]]:
    def make() -> tuple[EpisodeStore, list[Episode]]:
        store = EpisodeStore(tmp_path / "store")
        eps = episodes()
        store.put(eps[0])
        store.put(eps[1])
        store.commit_snapshot()
        store.put(eps[2])
        store.commit_snapshot()
        return store, eps

    return make


@pytest.fixture
def store(make_store):
    return make_store()


@pytest.fixture
def episode_builder() -> Callable[..., Episode]:
    """`build_episode` for tests that need one more episode (conftest modules are not importable by name)."""
    return build_episode
