"""Helpers for the bridge tests: deterministic episodes, a bridge process, store checks."""

from __future__ import annotations

import hashlib
import socket
import sys
from pathlib import Path

import numpy as np

from lwd_common.episode import ActionSource, EpisodeMeta, EpisodeOutcome, Label, StepRecord
from lwd_common.store import EpisodeStore
from lwd_description.robot import CAMERA_NAMES, NUM_JOINTS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def fake_jpeg(rng: np.random.Generator, size: int = 600) -> bytes:
    """JPEG-framed bytes of varying size (the transport treats frames as opaque bytes)."""
    return b"\xff\xd8" + rng.integers(0, 256, size + int(rng.integers(0, 200)), np.uint8).tobytes() + b"\xff\xd9"


def make_steps(n: int, seed: int) -> list[StepRecord]:
    rng = np.random.default_rng(seed)
    return [
        StepRecord(
            step=i, stamp=1000.0 + i / 30.0,
            images={c: fake_jpeg(rng) for c in CAMERA_NAMES},
            joint_pos=rng.standard_normal(NUM_JOINTS), action=rng.standard_normal(NUM_JOINTS),
            source=ActionSource.TELEOP if i % 7 == 0 else ActionSource.POLICY,
            chunk_id=i // 30, policy_version="v000001",
        )
        for i in range(n)
    ]


def make_meta(robot_id: str, index: int) -> EpisodeMeta:
    return EpisodeMeta(episode_id=f"{robot_id}-ep{index:04d}", robot_id=robot_id, task="stack_cubes",
                       instruction="stack the red cube on the blue cube", started_at=1.7e9 + index)


def outcome(n: int, index: int) -> EpisodeOutcome:
    return EpisodeOutcome(label=Label.SUCCESS if index % 2 == 0 else Label.FAILURE, num_steps=n,
                          ended_at=1.7e9 + index + 10)


def stored_hashes(root: Path) -> dict[str, str]:
    """episode id -> sha256 of the stored bytes, for every episode in the bridge store."""
    store = EpisodeStore(root / "store")
    return {eid: hashlib.sha256(store.read_bytes(eid)).hexdigest() for eid in store.ids()}


def snapshot_ids(root: Path) -> set[str]:
    snap = EpisodeStore(root / "store").latest_snapshot()
    return set(snap.episode_ids) if snap else set()
