"""The robot <-> bridge wire protocol: versioned msgpack frames, one ZeroMQ frame each.

Every frame is a msgpack map {"v": SCHEMA_VERSION, "t": <type>, ...fields} made
with `lwd_common.codec` (numpy arrays as an extension, bytes as bin, never
pickle). `decode` checks size, version, type and every field's type before
anything else looks at a frame, and raises `ProtocolError` with a message that
says what was wrong; the bridge sends that message back as an `error` frame.

Episode delivery: an episode is a sequence of frames numbered by `seq`:
`ep_begin` (seq 0, the EpisodeMeta), `ep_chunk` (seq 1..k, a few steps each,
sent while the episode runs) and `ep_end` (seq k+1, the outcome, step count and
content hash). The bridge acks each frame, reports `missing` seqs at the end,
and answers `committed` once the episode is in a snapshot.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from lwd_common import codec
from lwd_common.episode import (
    EPISODE_SCHEMA_VERSION,
    ActionSource,
    StepRecord,
)
from lwd_description.robot import CAMERA_NAMES, CHUNK_HORIZON, CONTROL_HZ, JOINT_NAMES, NUM_JOINTS

SCHEMA_VERSION = 1
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024


class ProtocolError(ValueError):
    """A frame that does not follow the protocol; `code` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def config_hash(
    joint_names: Sequence[str] = JOINT_NAMES,
    camera_names: Sequence[str] = CAMERA_NAMES,
    control_hz: float = CONTROL_HZ,
    chunk_horizon: int = CHUNK_HORIZON,
) -> str:
    """Hash of what robot and learner must agree on for episodes to be usable together."""
    desc = {
        "joints": list(joint_names),
        "cameras": list(camera_names),
        "control_hz": float(control_hz),
        "chunk_horizon": int(chunk_horizon),
        "episode_schema": EPISODE_SCHEMA_VERSION,
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


# Field specs: name -> accepted python types. `int` excludes bool (checked below).
_NUM = (int, float)
_OPT_STR = (str, type(None))
FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    # robot -> bridge
    "hello": {"robot_id": (str,), "policy_version": (str,), "config_hash": (str,), "role": (str,),
              "open_episodes": (list,)},
    "ep_begin": {"episode_id": (str,), "seq": (int,), "meta": (dict,)},
    "ep_chunk": {"episode_id": (str,), "seq": (int,), "steps": (dict,)},
    "ep_end": {"episode_id": (str,), "seq": (int,), "outcome": (dict,), "num_steps": (int,),
               "content_hash": (str,), "ended_at": _NUM},
    "policy_query": {"current_version": (str,)},
    "policy_fetch": {"version": (str,), "offset": (int,), "length": (int,)},
    "policy_loaded": {"version": (str,), "ok": (bool,), "loaded_at": _NUM, "message": (str,)},
    "status_query": {},
    "robot_stats": {"counters": (dict,), "spooled_episodes": (int,)},
    # bridge -> robot
    "welcome": {"bridge_time": _NUM, "max_frame_bytes": (int,)},
    "ack": {"episode_id": (str,), "seq": (int,)},
    "missing": {"episode_id": (str,), "seqs": (list,)},
    "committed": {"episode_id": (str,), "content_hash": (str,), "snapshot": (int,), "duplicate": (bool,)},
    "error": {"code": (str,), "message": (str,), "episode_id": _OPT_STR, "fatal": (bool,)},
    "policy_info": {"info": (dict, type(None))},
    "policy_data": {"version": (str,), "offset": (int,), "total": (int,), "data": (bytes,)},
    "status": {"fleet": (dict,)},
}
ROBOT_TYPES = frozenset({"hello", "ep_begin", "ep_chunk", "ep_end", "policy_query", "policy_fetch",
                         "policy_loaded", "status_query", "robot_stats"})
BRIDGE_TYPES = frozenset(FIELDS) - ROBOT_TYPES
EPISODE_TYPES = frozenset({"ep_begin", "ep_chunk", "ep_end"})
ROLES = frozenset({"stream", "policy", "monitor"})


def encode(msg_type: str, **fields: Any) -> bytes:
    """Build a frame; validates like `decode` so we never send what the peer would refuse."""
    msg = {"v": SCHEMA_VERSION, "t": msg_type, **fields}
    _check_fields(msg)
    return codec.packb(msg)


def decode(data: bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES, allowed: frozenset[str] | None = None
           ) -> dict[str, Any]:
    """Parse and validate one frame; raise ProtocolError saying why it is refused."""
    if len(data) > max_bytes:
        raise ProtocolError("frame_too_large", f"frame of {len(data)} bytes exceeds limit {max_bytes}")
    try:
        msg = codec.unpackb(data)
    except codec.CodecError as exc:
        raise ProtocolError("malformed", f"malformed frame: {exc}") from exc
    if not isinstance(msg, dict):
        raise ProtocolError("malformed", f"frame must be a map, got {type(msg).__name__}")
    version = msg.get("v")
    if version != SCHEMA_VERSION:
        raise ProtocolError(
            "schema_version", f"wire schema version {version!r} not supported (this side speaks {SCHEMA_VERSION})"
        )
    if allowed is not None and msg.get("t") in FIELDS and msg.get("t") not in allowed:
        raise ProtocolError("unexpected_type", f"message type {msg.get('t')!r} not accepted here")
    _check_fields(msg)
    return msg


def _check_fields(msg: dict[str, Any]) -> None:
    msg_type = msg.get("t")
    spec = FIELDS.get(msg_type) if isinstance(msg_type, str) else None
    if spec is None:
        raise ProtocolError("unknown_type", f"unknown message type {msg_type!r}")
    for name, types in spec.items():
        if name not in msg:
            raise ProtocolError("bad_field", f"{msg_type}: missing field {name!r}")
        value = msg[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            want = "/".join(t.__name__ for t in types)
            raise ProtocolError(
                "bad_field", f"{msg_type}: field {name!r} must be {want}, got {type(value).__name__}"
            )
    if "seq" in spec and msg["seq"] < 0:
        raise ProtocolError("bad_field", f"{msg_type}: seq must be >= 0")


# --- episode steps as chunk payloads -------------------------------------------------------------------


def steps_to_chunk(steps: Sequence[StepRecord], cameras: Sequence[str]) -> dict[str, Any]:
    """Column-wise payload of a few steps (the same dtypes Episode.from_steps stores)."""
    n = len(steps)
    return {
        "step": np.array([s.step for s in steps], np.int64),
        "stamp": np.array([s.stamp for s in steps], np.float64),
        "joint_pos": np.array([s.joint_pos for s in steps], np.float32).reshape(n, NUM_JOINTS),
        "action": np.array([s.action for s in steps], np.float32).reshape(n, NUM_JOINTS),
        "source": np.array([int(s.source) for s in steps], np.int8),
        "chunk_id": np.array([s.chunk_id for s in steps], np.int64),
        "policy_version": [str(s.policy_version) for s in steps],
        "images": {c: [bytes(s.images[c]) for s in steps] for c in cameras},
    }


def chunk_to_steps(chunk: dict[str, Any], cameras: Sequence[str]) -> list[StepRecord]:
    """Inverse of `steps_to_chunk`; ProtocolError for any shape or type that does not fit."""

    def arr(name: str, dtype: str, shape_tail: tuple[int, ...]) -> np.ndarray:
        a = chunk.get(name)
        if not isinstance(a, np.ndarray) or a.dtype != np.dtype(dtype) or a.shape[1:] != shape_tail:
            got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ProtocolError("bad_chunk", f"chunk column {name!r} must be {dtype} [n,{shape_tail}], got {got}")
        return a

    step = arr("step", "int64", ())
    n = step.shape[0]
    cols = {
        "stamp": arr("stamp", "float64", ()),
        "joint_pos": arr("joint_pos", "float32", (NUM_JOINTS,)),
        "action": arr("action", "float32", (NUM_JOINTS,)),
        "source": arr("source", "int8", ()),
        "chunk_id": arr("chunk_id", "int64", ()),
    }
    for name, a in cols.items():
        if a.shape[0] != n:
            raise ProtocolError("bad_chunk", f"chunk column {name!r} has {a.shape[0]} rows, want {n}")
    versions = chunk.get("policy_version")
    if not isinstance(versions, list) or len(versions) != n or not all(isinstance(v, str) for v in versions):
        raise ProtocolError("bad_chunk", f"chunk policy_version must be a list of {n} strings")
    images = chunk.get("images")
    if not isinstance(images, dict):
        raise ProtocolError("bad_chunk", "chunk images must be a map camera -> frames")
    for c in cameras:
        frames = images.get(c)
        if not isinstance(frames, list) or len(frames) != n or not all(isinstance(f, bytes) for f in frames):
            raise ProtocolError("bad_chunk", f"chunk images[{c!r}] must be a list of {n} JPEG byte strings")
    valid_sources = {int(s) for s in ActionSource}
    if not set(cols["source"].tolist()) <= valid_sources:
        raise ProtocolError("bad_chunk", "chunk source holds an unknown ActionSource")
    return [
        StepRecord(
            step=int(step[i]),
            stamp=float(cols["stamp"][i]),
            images={c: images[c][i] for c in cameras},
            joint_pos=cols["joint_pos"][i],
            action=cols["action"][i],
            source=ActionSource(int(cols["source"][i])),
            chunk_id=int(cols["chunk_id"][i]),
            policy_version=versions[i],
        )
        for i in range(n)
    ]


def chunk_nbytes(chunk: dict[str, Any]) -> int:
    """Approximate memory a chunk holds (arrays + images), for the bridge's limits."""
    total = 0
    for value in chunk.values():
        if isinstance(value, np.ndarray):
            total += value.nbytes
    for frames in (chunk.get("images") or {}).values():
        total += sum(len(f) for f in frames if isinstance(f, bytes))
    return total
