"""Helpers for the bridge tests: deterministic episodes, a bridge process, store checks."""

from __future__ import annotations

import hashlib
import socket
import sys
from pathlib import Path

import numpy as np

from lwd_common.episode import (
    ActionSource,
    Episode,
    EpisodeMeta,
    EpisodeOutcome,
    Label,
    StepRecord,
    content_hash,
)
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
    return (
        b"\xff\xd8" + rng.integers(0, 256, size + int(rng.integers(0, 200)), np.uint8).tobytes() + b"\xff\xd9"
    )


def make_steps(n: int, seed: int) -> list[StepRecord]:
    rng = np.random.default_rng(seed)
    return [
        StepRecord(
            step=i,
            stamp=1000.0 + i / 30.0,
            images={c: fake_jpeg(rng) for c in CAMERA_NAMES},
            joint_pos=rng.standard_normal(NUM_JOINTS),
            action=rng.standard_normal(NUM_JOINTS),
            source=ActionSource.TELEOP if i % 7 == 0 else ActionSource.POLICY,
            chunk_id=i // 30,
            policy_version="v000001",
        )
        for i in range(n)
    ]


def make_meta(robot_id: str, index: int) -> EpisodeMeta:
    return EpisodeMeta(
        episode_id=f"{robot_id}-ep{index:04d}",
        robot_id=robot_id,
        task="stack_cubes",
        instruction="stack the red cube on the blue cube",
        started_at=1.7e9 + index,
    )


def outcome(n: int, index: int) -> EpisodeOutcome:
    return EpisodeOutcome(
        label=Label.SUCCESS if index % 2 == 0 else Label.FAILURE, num_steps=n, ended_at=1.7e9 + index + 10
    )


def stream_episode(client, index: int, n: int = 20) -> tuple[str, str]:
    """Stream one episode of `client`'s robot; its id and the sha256 the bridge must store."""
    robot_id = client.config.robot_id
    meta, steps = make_meta(robot_id, index), make_steps(n, seed=index)
    client.begin(meta)
    for s in steps:
        client.add_step(s)
    client.end(outcome(n, index))
    return meta.episode_id, content_hash(Episode.from_steps(meta, steps, outcome(n, index)))


def stored_hashes(root: Path) -> dict[str, str]:
    """episode id -> sha256 of the stored bytes, for every episode in the bridge store."""
    store = EpisodeStore(root / "store")
    return {eid: hashlib.sha256(store.read_bytes(eid)).hexdigest() for eid in store.ids()}


def snapshot_ids(root: Path) -> set[str]:
    snap = EpisodeStore(root / "store").latest_snapshot()
    return set(snap.episode_ids) if snap else set()


# --- frames as a robot sends them (for tests that talk to BridgeCore or a raw socket) ---------------------


def hello_frame(
    robot_id: str = "robot0",
    role: str = "stream",
    config_hash: str | None = None,
    open_episodes: list[str] | None = None,
    policy_version: str = "",
) -> bytes:
    from lwd_common.transport import protocol

    return protocol.encode(
        "hello",
        robot_id=robot_id,
        policy_version=policy_version,
        role=role,
        open_episodes=open_episodes or [],
        config_hash=config_hash or protocol.config_hash(),
    )


def episode_frames(
    robot_id: str = "robot0", index: int = 0, n: int = 25, per_chunk: int = 10, ended_at: float = 0.0
) -> tuple[list[bytes], str]:
    """All frames of one deterministic episode (ep_begin, ep_chunk..., ep_end) and its content hash."""
    from lwd_common.episode import Episode, content_hash, meta_to_dict, outcome_to_dict
    from lwd_common.transport import protocol

    meta, steps, out = make_meta(robot_id, index), make_steps(n, seed=index), outcome(n, index)
    frames = [protocol.encode("ep_begin", episode_id=meta.episode_id, seq=0, meta=meta_to_dict(meta))]
    for i in range(0, n, per_chunk):
        frames.append(
            protocol.encode(
                "ep_chunk",
                episode_id=meta.episode_id,
                seq=len(frames),
                steps=protocol.steps_to_chunk(steps[i : i + per_chunk], CAMERA_NAMES),
            )
        )
    digest = content_hash(Episode.from_steps(meta, steps, out))
    frames.append(
        protocol.encode(
            "ep_end",
            episode_id=meta.episode_id,
            seq=len(frames),
            outcome=outcome_to_dict(out),
            num_steps=n,
            content_hash=digest,
            ended_at=ended_at,
        )
    )
    return frames, digest


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes (Linux)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out
