"""The LeRobot v3.0 layout both directions share: paths, features, the data files' Arrow schema.

What export writes and import reads back: file path templates, LeRobot's default and lwd's extra
per-frame features (`lwd_features`), how a feature becomes an Arrow column and a Hugging Face
`datasets` feature (`data_schema`), and how `meta.extra` travels in the episodes table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from lwd_common.episode import ActionSource

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk directory
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
STATE, ACTION = "observation.state", "action"
IMAGE_PREFIX = "observation.images."
ROBOT_TYPE = "lwd_{robot}"  # info.json robot_type: the lwd_description robot the episodes match
UNKNOWN_ROBOT = "unknown_robot"  # ... or this, for joints no description has
VIDEO_FOURCC = "mp4v"
VIDEO_CODEC = "mpeg4"  # what FFmpeg calls the stream mp4v writes
LWD = "lwd/"  # prefix of our columns in the episodes table

# LeRobot's default per-frame features (DEFAULT_FEATURES in lerobot/datasets/utils.py).
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
# Per-frame lwd features (module docstring).
LWD_FEATURES: dict[str, dict[str, Any]] = {
    "next.reward": {"dtype": "float32", "shape": [1], "names": None},
    "next.done": {"dtype": "bool", "shape": [1], "names": None},
    "next.success": {"dtype": "bool", "shape": [1], "names": None},
    "intervention": {"dtype": "bool", "shape": [1], "names": None},
    "action_source": {"dtype": "int64", "shape": [1], "names": [s.name.lower() for s in ActionSource]},
    "chunk_id": {"dtype": "int64", "shape": [1], "names": None},
    "policy_version": {"dtype": "string", "shape": [1], "names": None},
    "lwd.step": {"dtype": "int64", "shape": [1], "names": None},
    "lwd.stamp": {"dtype": "float64", "shape": [1], "names": None},
}
_ARROW = {
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "int16": pa.int16(),
    "int8": pa.int8(),
    "uint8": pa.uint8(),
    "bool": pa.bool_(),
    "string": pa.string(),
}
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # datasets.Image() storage
JPEG_MAGIC = b"\xff\xd8\xff"  # how a JPEG file starts


# --- features ---------------------------------------------------------------------------------------


def lwd_features(
    joint_names: Sequence[str], shapes: dict[str, tuple[int, int]], video: bool, fps: int
) -> dict[str, Any]:
    """info.json `features` of an lwd export: state, action, cameras (in `shapes`), lwd columns, defaults."""
    vec = {"dtype": "float32", "shape": [len(joint_names)], "names": list(joint_names)}
    feats: dict[str, Any] = {STATE: dict(vec), ACTION: dict(vec)}
    for cam, (h, w) in shapes.items():
        ft: dict[str, Any] = {
            "dtype": "video" if video else "image",
            "shape": [h, w, 3],
            "names": ["height", "width", "channels"],
        }
        if video:
            ft["info"] = {
                "video.height": h,
                "video.width": w,
                "video.codec": VIDEO_CODEC,
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            }
        feats[IMAGE_PREFIX + cam] = ft
    feats.update({k: dict(v) for k, v in LWD_FEATURES.items()})
    feats.update({k: dict(v) for k, v in DEFAULT_FEATURES.items()})
    return feats


def _arrow_type(ft: dict[str, Any]) -> Any:
    if ft["dtype"] == "image":
        return IMAGE_STRUCT
    base = _ARROW[ft["dtype"]]
    shape = list(ft["shape"])
    return base if shape == [1] else pa.list_(base, shape[0])


def _hf_feature(ft: dict[str, Any]) -> dict[str, Any]:
    """The `datasets` feature JSON (kept in the parquet schema metadata so `datasets` decodes images)."""
    if ft["dtype"] == "image":
        return {"_type": "Image"}
    value = {"dtype": ft["dtype"], "_type": "Value"}
    if list(ft["shape"]) == [1]:
        return value
    return {"feature": value, "length": int(ft["shape"][0]), "_type": "Sequence"}


def data_schema(features: dict[str, Any]) -> Any:
    """Arrow schema of the data files: every non-video feature, with Hugging Face feature metadata."""
    cols = {k: ft for k, ft in features.items() if ft["dtype"] != "video"}
    hf = {"info": {"features": {k: _hf_feature(ft) for k, ft in cols.items()}}}
    return pa.schema(
        [pa.field(k, _arrow_type(ft)) for k, ft in cols.items()], metadata={"huggingface": json.dumps(hf)}
    )


def extra_to_json(value: Any) -> str:
    """meta.extra as JSON (bytes, which the episode format allows there, as {"__bytes_hex__": ...})."""
    return json.dumps(value, default=lambda v: {"__bytes_hex__": v.hex()} if isinstance(v, bytes) else str(v))


def extra_from_json(text: str) -> Any:
    """meta.extra back from `extra_to_json`."""
    return json.loads(
        text, object_hook=lambda d: bytes.fromhex(d["__bytes_hex__"]) if set(d) == {"__bytes_hex__"} else d
    )
