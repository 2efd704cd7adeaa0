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
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from lwd_common import codec
from lwd_common.episode import (
    EPISODE_SCHEMA_VERSION,
    ActionSource,
    StepRecord,
)
from lwd_description.robot import (
    CAMERA_NAMES,
    CHUNK_HORIZON,
    CONTROL_HZ,
    JOINT_NAMES,
    NUM_JOINTS,
    RobotDescription,
)

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


def robot_config_hash(robot: RobotDescription) -> str:
    """`config_hash` of a robot description (the G1's equals `config_hash()`)."""
    return config_hash(robot.joint_names, robot.camera_names, robot.control_hz, robot.chunk_horizon)


# Field specs: name -> accepted python types. `int` excludes bool (checked below).
_NUM = (int, float)
_OPT_STR = (str, type(None))
FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    # robot -> bridge
    "hello": {
        "robot_id": (str,),
        "policy_version": (str,),
        "config_hash": (str,),
        "role": (str,),
        "open_episodes": (list,),
    },
    "ep_begin": {"episode_id": (str,), "seq": (int,), "meta": (dict,)},
    "ep_chunk": {"episode_id": (str,), "seq": (int,), "steps": (dict,)},
    "ep_end": {
        "episode_id": (str,),
        "seq": (int,),
        "outcome": (dict,),
        "num_steps": (int,),
        "content_hash": (str,),
        "ended_at": _NUM,
    },
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
ROBOT_TYPES = frozenset(
    {
        "hello",
        "ep_begin",
        "ep_chunk",
        "ep_end",
        "policy_query",
        "policy_fetch",
        "policy_loaded",
        "status_query",
        "robot_stats",
    }
)
BRIDGE_TYPES = frozenset(FIELDS) - ROBOT_TYPES
EPISODE_TYPES = frozenset({"ep_begin", "ep_chunk", "ep_end"})
ROLES = frozenset({"stream", "policy", "monitor"})

# Stricter than "any string": ids become file names, versions and hashes are short; a message
# (a robot's policy load failure) may be long but not unbounded. Other strings: DEFAULT_MAX_STR.
MAX_STR = {
    "robot_id": 200,
    "episode_id": 200,
    "policy_version": 256,
    "current_version": 256,
    "version": 256,
    "config_hash": 64,
    "role": 16,
    "content_hash": 128,
    "code": 64,
    "message": 65536,
}
DEFAULT_MAX_STR = 4096
# Highest frame number of an episode: 2^20 chunks is ~9.7 h at one step per chunk and 30 Hz (a robot
# cuts a chunk every 15 steps by default). Bounds the bridge's gap bookkeeping.
MAX_SEQ = 1 << 20
MAX_CAMERAS = 16
MAX_JOINTS = 256  # joint columns a chunk may carry (the episode's own joint_names say how many)


def encode(msg_type: str, **fields: Any) -> bytes:
    """Build a frame; validates like `decode` so we never send what the peer would refuse."""
    msg = {"v": SCHEMA_VERSION, "t": msg_type, **fields}
    _check_fields(msg)
    return codec.packb(msg)


def decode(
    data: bytes,
    max_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    allowed: frozenset[str] | None = None,
    limits: codec.DecodeLimits | None = codec.WIRE_LIMITS,
) -> dict[str, Any]:
    """Parse and validate one frame; raise ProtocolError saying why it is refused.

    `limits` bounds the decoded memory of the frame (`codec.WIRE_LIMITS` unless the peer is trusted).
    """
    if len(data) > max_bytes:
        raise ProtocolError("frame_too_large", f"frame of {len(data)} bytes exceeds limit {max_bytes}")
    try:
        msg = codec.unpackb(data, limits=limits)
    except codec.CodecError as exc:
        raise ProtocolError("malformed", f"malformed frame: {clip(str(exc))}") from exc
    if not isinstance(msg, dict):
        raise ProtocolError("malformed", f"frame must be a map, got {type(msg).__name__}")
    version = msg.get("v")
    # exactly the int 1: not 1.0, True or an array that compares equal (those used to pass)
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ProtocolError(
            "schema_version",
            f"wire schema version {clip(repr(version), 40)} not supported "
            f"(this side speaks {SCHEMA_VERSION})",
        )
    msg_type = msg.get("t")
    if not isinstance(msg_type, str):
        raise ProtocolError("unknown_type", f"message type must be a string, got {type(msg_type).__name__}")
    if allowed is not None and msg_type in FIELDS and msg_type not in allowed:
        raise ProtocolError("unexpected_type", f"message type {clip(msg_type, 40)!r} not accepted here")
    _check_fields(msg, strict=True)
    return msg


def clip(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters (peers choose what goes into our errors and logs)."""
    return text if len(text) <= limit else f"{text[:limit]}...[{len(text) - limit} more]"


def _check_fields(msg: dict[str, Any], strict: bool = False) -> None:
    """Types of every field; `strict` (decoding): also string lengths, finite numbers and the seq range."""
    msg_type = msg.get("t")
    spec = FIELDS.get(msg_type) if isinstance(msg_type, str) else None
    if spec is None:
        shown = clip(repr(msg_type), 40)
        raise ProtocolError("unknown_type", f"unknown message type {shown}")
    for name, types in spec.items():
        if name not in msg:
            raise ProtocolError("bad_field", f"{msg_type}: missing field {name!r}")
        value = msg[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            want = "/".join(t.__name__ for t in types)
            raise ProtocolError(
                "bad_field", f"{msg_type}: field {name!r} must be {want}, got {type(value).__name__}"
            )
        if not strict:
            continue
        if isinstance(value, str) and len(value) > MAX_STR.get(name, DEFAULT_MAX_STR):
            raise ProtocolError(
                "bad_field",
                f"{msg_type}: field {name!r} longer than {MAX_STR.get(name, DEFAULT_MAX_STR)} characters",
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ProtocolError("bad_field", f"{msg_type}: field {name!r} must be finite")
    if "seq" in spec and (msg["seq"] < 0 or (strict and msg["seq"] > MAX_SEQ)):
        raise ProtocolError("bad_field", f"{msg_type}: seq must be in 0..{MAX_SEQ}")


# --- episode steps as chunk payloads -------------------------------------------------------------------


def steps_to_chunk(
    steps: Sequence[StepRecord], cameras: Sequence[str], num_joints: int = NUM_JOINTS
) -> dict[str, Any]:
    """Column-wise payload of a few steps (the same dtypes Episode.from_steps stores); `num_joints`
    is the episode's (len(meta.joint_names); default the G1's 16). ValueError for a step of another size."""
    n = len(steps)
    for s in steps:
        if np.shape(s.joint_pos) != (num_joints,) or np.shape(s.action) != (num_joints,):
            raise ValueError(
                f"step {s.step} has joint_pos {np.shape(s.joint_pos)} and action {np.shape(s.action)}, "
                f"the episode has {num_joints} joints"
            )
    return {
        "step": np.array([s.step for s in steps], np.int64),
        "stamp": np.array([s.stamp for s in steps], np.float64),
        "joint_pos": np.array([s.joint_pos for s in steps], np.float32).reshape(n, num_joints),
        "action": np.array([s.action for s in steps], np.float32).reshape(n, num_joints),
        "source": np.array([int(s.source) for s in steps], np.int8),
        "chunk_id": np.array([s.chunk_id for s in steps], np.int64),
        "policy_version": [str(s.policy_version) for s in steps],
        "images": {c: [bytes(s.images[c]) for s in steps] for c in cameras},
    }


# The numeric columns of a chunk: name -> (dtype, shape after the step axis); J: the episode's joints.
J = "J"
CHUNK_COLUMNS: dict[str, tuple[str, tuple[int | str, ...]]] = {
    "step": ("int64", ()),
    "stamp": ("float64", ()),
    "joint_pos": ("float32", (J,)),
    "action": ("float32", (J,)),
    "source": ("int8", ()),
    "chunk_id": ("int64", ()),
}
_VALID_SOURCES = np.array(sorted(int(s) for s in ActionSource), np.int8)


def check_chunk(chunk: dict[str, Any], num_joints: int | None = None) -> dict[str, Any]:
    """Validate a chunk payload and return only what an episode needs (the columns, unpacked to steps later).

    Every camera the chunk carries must hold one JPEG byte string per step; the
    bridge keeps chunks in this column form (no per-step objects) until the
    episode is complete. `num_joints`: the episode's (len of its header's joint_names) when known;
    else joint_pos and action must agree on some 1..MAX_JOINTS (the episode is checked against its
    header when it is assembled). ProtocolError for any shape or type that does not fit.
    """
    out: dict[str, Any] = {}
    n = -1
    joints = num_joints
    if joints is None:  # the width joint_pos and action agree on
        widths = {
            name: a.shape[1]
            for name in ("joint_pos", "action")
            if isinstance(a := chunk.get(name), np.ndarray) and a.ndim == 2
        }
        if len(set(widths.values())) > 1:
            raise ProtocolError(
                "bad_chunk",
                f"chunk columns 'joint_pos' and 'action' have {widths['joint_pos']} and "
                f"{widths['action']} joints",
            )
        width = next(iter(widths.values()), 0)
        joints = width if 0 < width <= MAX_JOINTS else None
    for name, (dtype, spec) in CHUNK_COLUMNS.items():
        a = chunk.get(name)
        tail = tuple(joints if d == J else d for d in spec)
        if (
            not isinstance(a, np.ndarray)
            or a.dtype != np.dtype(dtype)
            or a.ndim != 1 + len(tail)
            or a.shape[1:] != tail
        ):
            got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            want = ",".join(str(d) for d in ("n", *(spec if joints is None else tail)))
            raise ProtocolError("bad_chunk", f"chunk column {name!r} must be {dtype} [{want}], got {got}")
        if n == -1:
            n = a.shape[0]
        elif a.shape[0] != n:
            raise ProtocolError("bad_chunk", f"chunk column {name!r} has {a.shape[0]} rows, want {n}")
        out[name] = a
    versions = chunk.get("policy_version")
    if (
        not isinstance(versions, list)
        or len(versions) != n
        or not all(isinstance(v, str) and len(v) <= MAX_STR["policy_version"] for v in versions)
    ):
        raise ProtocolError("bad_chunk", f"chunk policy_version must be a list of {n} short strings")
    images = chunk.get("images")
    if not isinstance(images, dict) or len(images) > MAX_CAMERAS:
        raise ProtocolError(
            "bad_chunk", f"chunk images must be a map camera -> frames (at most {MAX_CAMERAS})"
        )
    for c, frames in images.items():
        if not isinstance(c, str) or len(c) > 64:
            raise ProtocolError("bad_chunk", "chunk camera names must be short strings")
        if not isinstance(frames, list) or len(frames) != n or not all(isinstance(f, bytes) for f in frames):
            raise ProtocolError("bad_chunk", f"chunk images[{c!r}] must be a list of {n} JPEG byte strings")
    if n and not np.isin(out["source"], _VALID_SOURCES).all():
        raise ProtocolError("bad_chunk", "chunk source holds an unknown ActionSource")
    out["policy_version"] = versions
    out["images"] = images
    return out


def chunk_to_steps(
    chunk: dict[str, Any], cameras: Sequence[str], num_joints: int | None = None
) -> list[StepRecord]:
    """Inverse of `steps_to_chunk`; ProtocolError for any shape or type that does not fit."""
    cols = check_chunk(chunk, num_joints)
    images = cols["images"]
    for c in cameras:
        if c not in images:
            raise ProtocolError("bad_chunk", f"chunk images[{c!r}] must be a list of JPEG byte strings")
    versions = cols["policy_version"]
    return [
        StepRecord(
            step=int(cols["step"][i]),
            stamp=float(cols["stamp"][i]),
            images={c: images[c][i] for c in cameras},
            joint_pos=cols["joint_pos"][i],
            action=cols["action"][i],
            source=ActionSource(int(cols["source"][i])),
            chunk_id=int(cols["chunk_id"][i]),
            policy_version=versions[i],
        )
        for i in range(len(versions))
    ]


def chunk_nbytes(chunk: dict[str, Any]) -> int:
    """Memory a checked chunk holds in the bridge: arrays, image and version strings, with object overheads."""
    total = 0
    for value in chunk.values():
        if isinstance(value, np.ndarray):
            total += value.nbytes + 128  # array object + the bytes object its buffer lives in
    versions = chunk.get("policy_version") or []
    total += sys.getsizeof(versions) + sum(sys.getsizeof(v) for v in versions if isinstance(v, str))
    images = chunk.get("images") or {}
    total += sys.getsizeof(images)
    for name, frames in images.items():
        total += sys.getsizeof(name) + sys.getsizeof(frames)
        total += sum(sys.getsizeof(f) for f in frames if isinstance(f, bytes))
    return total
