"""The episode format shared by actor, bridge, simulator and learner.

An episode is what one robot did for one task attempt: per control step the
three camera frames (JPEG), the joint positions, the joint-position target
actually executed, who produced it (policy, teleoperator, hold) and which chunk
and policy version it came from; per episode the task, instruction, robot,
label and why it ended. Episodes are stored column-wise and serialised with
the lwd msgpack codec; `content_hash` is the sha256 of that canonical encoding.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Protocol

import numpy as np

from lwd_common import codec
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES

EPISODE_SCHEMA_VERSION = 1


class ActionSource(IntEnum):
    """Who produced the executed target of a step."""

    POLICY = 0
    TELEOP = 1  # a human (pedal held): an intervention step
    HOLD = 2  # safety hold: stale input, NaN, or the chunk timeline ran dry


class Label(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


class EpisodeKind(StrEnum):
    """Where an episode came from; the learner's buffers are built from this."""

    DEMO = "demo"  # teleoperated demonstration (success)
    ROLLOUT = "rollout"  # autonomous policy rollout, possibly with interventions
    PLAY = "play"  # human-guided exploration (labelled failure)


def new_episode_id(robot_id: str) -> str:
    return f"{robot_id}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


@dataclass
class EpisodeMeta:
    episode_id: str
    robot_id: str
    task: str
    instruction: str
    kind: EpisodeKind = EpisodeKind.ROLLOUT
    started_at: float = field(default_factory=time.time)
    cameras: tuple[str, ...] = CAMERA_NAMES
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = EPISODE_SCHEMA_VERSION
    joint_names: tuple[str, ...] = (
        JOINT_NAMES  # order of joint_pos/action columns (episodes before it: the G1's)
    )


@dataclass
class EpisodeOutcome:
    label: Label
    num_steps: int
    reason: str = "labelled"  # labelled | time_limit | abort | sim_success | ...
    note: str = ""
    ended_at: float = field(default_factory=time.time)
    subtask_score: float | None = None  # step-wise score of long tasks (1 / 0.5 / 0)


@dataclass
class StepRecord:
    """One control step as the recorder sees it."""

    step: int
    stamp: float  # observation time, seconds (ROS time of the synchronised inputs)
    images: dict[str, bytes]  # camera name -> JPEG
    joint_pos: np.ndarray  # (J,) measured, meta.joint_names order
    action: np.ndarray  # (J,) executed joint-position target
    source: ActionSource
    chunk_id: int
    policy_version: str


@dataclass
class Episode:
    """A finished episode, stored column-wise (T steps)."""

    meta: EpisodeMeta
    outcome: EpisodeOutcome
    step: np.ndarray  # int64 [T]
    stamp: np.ndarray  # float64 [T]
    joint_pos: np.ndarray  # float32 [T, J], J = len(meta.joint_names)
    action: np.ndarray  # float32 [T, J]
    source: np.ndarray  # int8 [T] of ActionSource
    chunk_id: np.ndarray  # int64 [T]
    policy_index: np.ndarray  # int16 [T], index into policy_versions
    policy_versions: list[str]
    images: dict[str, list[bytes]]  # camera -> T JPEG frames

    @property
    def num_steps(self) -> int:
        return int(self.step.shape[0])

    @property
    def success(self) -> bool:
        return self.outcome.label == Label.SUCCESS

    @property
    def intervention_mask(self) -> np.ndarray:
        return self.source == ActionSource.TELEOP

    def rewards(self) -> np.ndarray:
        """Sparse binary reward: 1 on the last step of a successful episode."""
        r = np.zeros(self.num_steps, np.float32)
        if self.success and self.num_steps:
            r[-1] = 1.0
        return r

    def policy_version_at(self, i: int) -> str:
        return self.policy_versions[int(self.policy_index[i])]

    @classmethod
    def from_steps(cls, meta: EpisodeMeta, steps: Iterable[StepRecord], outcome: EpisodeOutcome) -> Episode:
        steps = list(steps)
        versions: list[str] = []
        index: dict[str, int] = {}
        for s in steps:
            if s.policy_version not in index:
                index[s.policy_version] = len(versions)
                versions.append(s.policy_version)
        missing = [c for s in steps for c in meta.cameras if c not in s.images]
        if missing:
            raise ValueError(f"steps lack camera frames: {sorted(set(missing))}")
        t = len(steps)
        j = len(meta.joint_names)
        return cls(
            meta=meta,
            outcome=outcome,
            step=np.array([s.step for s in steps], np.int64),
            stamp=np.array([s.stamp for s in steps], np.float64),
            joint_pos=np.array([s.joint_pos for s in steps], np.float32).reshape(t, j),
            action=np.array([s.action for s in steps], np.float32).reshape(t, j),
            source=np.array([int(s.source) for s in steps], np.int8),
            chunk_id=np.array([s.chunk_id for s in steps], np.int64),
            policy_index=np.array([index[s.policy_version] for s in steps], np.int16),
            policy_versions=versions,
            images={c: [s.images[c] for s in steps] for c in meta.cameras},
        )

    @classmethod
    def from_columns(
        cls, meta: EpisodeMeta, chunks: Sequence[Mapping[str, Any]], outcome: EpisodeOutcome
    ) -> Episode:
        """The episode `from_steps` builds from the same steps, from column chunks (`protocol.check_chunk`).

        The bridge keeps streamed chunks as columns and joins them here, so it
        never holds one Python object per step (decoded memory stays close to
        the wire size); the result encodes byte-identically to `from_steps`.
        """
        versions: list[str] = []
        index: dict[str, int] = {}
        policy_index: list[int] = []
        for c in chunks:
            for v in c["policy_version"]:
                if v not in index:
                    index[v] = len(versions)
                    versions.append(v)
                policy_index.append(index[v])
        if len(versions) > np.iinfo(np.int16).max + 1:
            raise ValueError(f"{len(versions)} policy versions in one episode")
        missing = sorted({cam for c in chunks for cam in meta.cameras if cam not in c["images"]})
        if missing:
            raise ValueError(f"steps lack camera frames: {missing}")
        joints = len(meta.joint_names)
        for c in chunks:
            for name in ("joint_pos", "action"):
                shape = np.shape(c[name])
                if len(shape) != 2 or shape[1] != joints:
                    raise ValueError(
                        f"chunk column {name} has shape {list(shape)}: the episode's joint_names name {joints} joints"
                    )

        def col(name: str, dtype: type, tail: tuple[int, ...] = ()) -> np.ndarray:
            parts: list[np.ndarray] = [np.asarray(c[name], dtype) for c in chunks]
            return np.concatenate(parts).reshape(-1, *tail) if parts else np.zeros((0, *tail), dtype)

        return cls(
            meta=meta,
            outcome=outcome,
            step=col("step", np.int64),
            stamp=col("stamp", np.float64),
            joint_pos=col("joint_pos", np.float32, (len(meta.joint_names),)),
            action=col("action", np.float32, (len(meta.joint_names),)),
            source=col("source", np.int8),
            chunk_id=col("chunk_id", np.int64),
            policy_index=np.array(policy_index, np.int16),
            policy_versions=versions,
            images={cam: [f for c in chunks for f in c["images"][cam]] for cam in meta.cameras},
        )

    def validate(self) -> None:
        """Raise ValueError if columns disagree in length or shape."""
        t = self.num_steps
        for name in ("stamp", "source", "chunk_id", "policy_index"):
            if getattr(self, name).shape != (t,):
                raise ValueError(f"column {name} has shape {getattr(self, name).shape}, want ({t},)")
        for name in ("joint_pos", "action"):
            if getattr(self, name).shape != (t, len(self.meta.joint_names)):
                raise ValueError(
                    f"column {name} has shape {getattr(self, name).shape}, want ({t}, {len(self.meta.joint_names)})"
                )
        for cam in self.meta.cameras:
            if len(self.images.get(cam, ())) != t:
                raise ValueError(f"camera {cam} has {len(self.images.get(cam, ()))} frames, want {t}")
        if self.outcome.num_steps != t:
            raise ValueError(f"outcome says {self.outcome.num_steps} steps, columns hold {t}")
        if t and (self.policy_index.max() >= len(self.policy_versions) or self.policy_index.min() < 0):
            raise ValueError("policy_index out of range")


def meta_to_dict(meta: EpisodeMeta) -> dict[str, Any]:
    d = asdict(meta)
    d["kind"] = meta.kind.value
    d["cameras"] = list(meta.cameras)
    d["joint_names"] = list(meta.joint_names)
    return d


def outcome_to_dict(outcome: EpisodeOutcome) -> dict[str, Any]:
    d = asdict(outcome)
    d["label"] = outcome.label.value
    return d


# `meta.extra` is free-form but must stay plain data of bounded size: the store, the
# learner and `meta_to_dict` (dataclasses.asdict recurses) all walk it.
MAX_EXTRA_DEPTH = 16
MAX_EXTRA_NODES = 10_000
_PLAIN = (str, bytes, int, float, bool, type(None))


def _check_plain(value: Any, what: str) -> None:
    """ValueError unless `value` is nested dicts/lists of plain scalars, not too deep or large (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack:
        v, depth = stack.pop()
        nodes += 1
        if nodes > MAX_EXTRA_NODES:
            raise ValueError(f"{what} holds more than {MAX_EXTRA_NODES} values")
        if isinstance(v, dict):
            if depth >= MAX_EXTRA_DEPTH:
                raise ValueError(f"{what} is nested deeper than {MAX_EXTRA_DEPTH}")
            for k, x in v.items():
                if not isinstance(k, str):
                    raise ValueError(f"{what} keys must be strings")
                stack.append((x, depth + 1))
        elif isinstance(v, list | tuple):
            if depth >= MAX_EXTRA_DEPTH:
                raise ValueError(f"{what} is nested deeper than {MAX_EXTRA_DEPTH}")
            stack.extend((x, depth + 1) for x in v)
        elif not isinstance(v, _PLAIN):
            raise ValueError(f"{what} holds a {type(v).__name__}")


def _want(d: dict[str, Any], name: str, types: tuple[type, ...], optional: bool = False) -> None:
    if name not in d:
        if optional:
            return
        raise ValueError(f"missing field {name!r}")
    v = d[name]
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
        raise ValueError(
            f"field {name!r} must be {'/'.join(t.__name__ for t in types)}, got {type(v).__name__}"
        )


def meta_from_dict(d: dict[str, Any]) -> EpisodeMeta:
    """EpisodeMeta from its dict; ValueError/TypeError for anything that is not one (fields are type-checked)."""
    if not isinstance(d, dict):
        raise ValueError(f"episode meta must be a map, got {type(d).__name__}")
    d = dict(d)
    version = d.get("schema_version")
    if type(version) is not int or version != EPISODE_SCHEMA_VERSION:
        raise ValueError(
            f"episode schema version {str(version)[:20]}, this code reads {EPISODE_SCHEMA_VERSION}"
        )
    for name in ("episode_id", "robot_id", "task", "instruction", "kind"):
        _want(d, name, (str,))
    _want(d, "started_at", (int, float), optional=True)
    for names in ("cameras", "joint_names"):
        _want(d, names, (list, tuple), optional=True)
        if names in d:
            if not all(isinstance(c, str) for c in d[names]) or len(d[names]) > 1024:
                raise ValueError(f"{names} must be at most 1024 strings")
            d[names] = tuple(d[names])
    _want(d, "extra", (dict,), optional=True)
    _check_plain(d.get("extra", {}), "meta.extra")
    d["kind"] = EpisodeKind(d["kind"])
    return EpisodeMeta(**d)


def outcome_from_dict(d: dict[str, Any]) -> EpisodeOutcome:
    """EpisodeOutcome from its dict; ValueError/TypeError for anything that is not one."""
    if not isinstance(d, dict):
        raise ValueError(f"episode outcome must be a map, got {type(d).__name__}")
    d = dict(d)
    _want(d, "label", (str,))
    _want(d, "num_steps", (int,))
    _want(d, "reason", (str,), optional=True)
    _want(d, "note", (str,), optional=True)
    _want(d, "ended_at", (int, float), optional=True)
    _want(d, "subtask_score", (int, float, type(None)), optional=True)
    d["label"] = Label(d["label"])
    return EpisodeOutcome(**d)


def encode_episode(ep: Episode) -> bytes:
    """Canonical msgpack encoding (deterministic for equal episodes)."""
    ep.validate()
    return codec.packb(
        {
            "meta": meta_to_dict(ep.meta),
            "outcome": outcome_to_dict(ep.outcome),
            "step": ep.step,
            "stamp": ep.stamp,
            "joint_pos": ep.joint_pos,
            "action": ep.action,
            "source": ep.source,
            "chunk_id": ep.chunk_id,
            "policy_index": ep.policy_index,
            "policy_versions": list(ep.policy_versions),
            "images": {c: list(ep.images[c]) for c in ep.meta.cameras},
        }
    )


def decode_episode(data: bytes) -> Episode:
    d = codec.unpackb(data)
    if not isinstance(d, dict) or "meta" not in d:
        raise ValueError("not an lwd episode")
    ep = Episode(
        meta=meta_from_dict(d["meta"]),
        outcome=outcome_from_dict(d["outcome"]),
        step=d["step"],
        stamp=d["stamp"],
        joint_pos=d["joint_pos"],
        action=d["action"],
        source=d["source"],
        chunk_id=d["chunk_id"],
        policy_index=d["policy_index"],
        policy_versions=list(d["policy_versions"]),
        images={c: list(frames) for c, frames in d["images"].items()},
    )
    ep.validate()
    return ep


def content_hash(ep_or_bytes: Episode | bytes) -> str:
    data = ep_or_bytes if isinstance(ep_or_bytes, bytes) else encode_episode(ep_or_bytes)
    return hashlib.sha256(data).hexdigest()


class EpisodeSink(Protocol):
    """Where the recorder hands an episode, step by step while it runs.

    Implementations: the actor's `core.journal.JournalSink` (a local store, every step journaled),
    the ZeroMQ sink of the transport, which streams steps to the bridge during the episode, and
    `lwd_testing.sinks.DirectorySink` (a local store, for tests).
    """

    def begin(self, meta: EpisodeMeta) -> None: ...

    def add_step(self, step: StepRecord) -> None: ...

    def end(self, outcome: EpisodeOutcome) -> None: ...
