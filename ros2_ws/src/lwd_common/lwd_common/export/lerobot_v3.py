"""LeRobotDataset v3.0 export and import, with pyarrow only (no `lerobot`, no torch).

Why: LeRobot's format is what most open robot-learning code reads (policies, visualisers, the
hub). The layout follows LeRobot's `codebase_version` "v3.0" (lerobot/datasets/utils.py,
dataset_metadata.py, dataset_writer.py):

    meta/info.json                             fps, features (dtype/shape/names), totals, path templates
    meta/stats.json                            per feature min/max/mean/std/count (images: per channel, [0, 1])
    meta/tasks.parquet                         task (the pandas index) -> task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: tasks, length, data/video file and
                                               frame range, stats/<feature>/<stat>, lwd/* (our metadata)
    data/chunk-000/file-000.parquet            one row per frame (many episodes per file, 100 MB per file)
    videos/<key>/chunk-000/file-000.mp4        only with `video=True`

Cameras are `image` features by default: the recorded JPEG bytes go into the data parquet as the
Hugging Face `Image` struct {bytes, path} (what LeRobot writes for `use_videos=False`), so frames
are neither decoded nor re-encoded and import gets them back bit for bit. `video=True` writes
`video` features instead, encoded with OpenCV's bundled FFmpeg as MPEG-4 Part 2 (`mp4v`, the
only encoder that build has; LeRobot's decoders read it) - lossy, and AV1/H.264 need an FFmpeg
with those encoders, which the venv does not have.

lwd columns beyond LeRobot's defaults: `next.reward` (1 on the last frame of a success),
`next.done`, `next.success`, `intervention` (a human drove this step), `action_source`
(ActionSource: 0 policy, 1 teleop, 2 hold), `chunk_id`, `policy_version`, `lwd.step`, `lwd.stamp`
(the recorded step time; LeRobot's `timestamp` must be frame_index / fps). Episode rows carry
`lwd/*` (episode id, robot, task name, kind, label, reason, joint and camera names, ...), so import
restores lwd episodes exactly, of any robot; other datasets import with defaults from the mapping
config (`ImportMapping`). Joints, cameras and fps come from the episodes' metadata (`episode_robot`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import yaml

from lwd_common.episode import (
    ActionSource,
    Episode,
    EpisodeKind,
    EpisodeMeta,
    EpisodeOutcome,
    Label,
)
from lwd_common.export import ExportError, Progress, episode_robot, load_episode, robot_names
from lwd_common.preprocessing import JPEG_QUALITY, bgr_to_rgb, decode_jpeg, encode_jpeg
from lwd_common.store import EpisodeStore, check_episode_id
from lwd_description.robot import CHUNK_HORIZON

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
IMAGE_STATS_SAMPLES = 100  # frames per episode decoded for image stats (LeRobot samples ~100 too)
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
_JPEG_MAGIC = b"\xff\xd8\xff"


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


# --- stats --------------------------------------------------------------------------------------------


def _stats(x: np.ndarray, axis: int | tuple[int, ...], keepdims: bool) -> dict[str, np.ndarray]:
    x = x.astype(np.float64)
    return {
        "min": np.min(x, axis=axis, keepdims=keepdims),
        "max": np.max(x, axis=axis, keepdims=keepdims),
        "mean": np.mean(x, axis=axis, keepdims=keepdims),
        "std": np.std(x, axis=axis, keepdims=keepdims),
        "count": np.array([x.shape[0]]),
    }


def _image_stats(frames: Sequence[bytes]) -> dict[str, np.ndarray]:
    """Per-channel stats in [0, 1], shape (3, 1, 1), from up to IMAGE_STATS_SAMPLES evenly spaced frames."""
    n = min(len(frames), IMAGE_STATS_SAMPLES)
    idx = np.round(np.linspace(0, len(frames) - 1, n)).astype(int)
    # Channels first and contiguous: numpy reduces a long contiguous axis far faster than a strided one.
    channels = np.ascontiguousarray(np.stack([decode_jpeg(frames[i]) for i in idx]).reshape(-1, 3).T)
    s = _stats(channels, axis=1, keepdims=False)
    out = {k: (v / 255.0).reshape(3, 1, 1) for k, v in s.items() if k != "count"}
    out["count"] = np.array([n])
    return out


def aggregate_stats(
    per_episode: Sequence[dict[str, dict[str, np.ndarray]]],
) -> dict[str, dict[str, np.ndarray]]:
    """Dataset stats from episode stats (count-weighted mean, pooled variance: LeRobot's aggregate_stats)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in per_episode[0] if per_episode else []:
        parts = [s[key] for s in per_episode]
        counts = np.stack([p["count"] for p in parts]).astype(np.float64)
        means = np.stack([p["mean"] for p in parts])
        var = np.stack([p["std"] ** 2 for p in parts])
        total = counts.sum(axis=0)
        w = counts.reshape(-1, *([1] * (means.ndim - 1)))
        mean = (means * w).sum(axis=0) / total
        pooled = ((var + (means - mean) ** 2) * w).sum(axis=0) / total
        out[key] = {
            "min": np.min(np.stack([p["min"] for p in parts]), axis=0),
            "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
            "mean": mean,
            "std": np.sqrt(pooled),
            "count": total.astype(np.int64),
        }
    return out


def _jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {k: {s: v.tolist() for s, v in d.items()} for k, d in stats.items()}


# --- export -------------------------------------------------------------------------------------------


class _RollingParquet:
    """Appends tables to chunk-XXX/file-YYY parquet files, starting a new file past `max_mb` (LeRobot's rule)."""

    def __init__(self, root: Path, template: str, schema: Any, max_mb: float):
        self.root, self.template, self.schema, self.max_bytes = root, template, schema, max_mb * 1024**2
        self.chunk = self.file = 0
        self.bytes = 0
        self.writer: Any = None

    def write(self, table: Any) -> tuple[int, int]:
        if self.writer is not None and self.bytes + table.nbytes >= self.max_bytes:
            self.close()
            self.file += 1
            if self.file == CHUNKS_SIZE:
                self.chunk, self.file = self.chunk + 1, 0
        if self.writer is None:
            path = self.root / self.template.format(chunk_index=self.chunk, file_index=self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, self.schema, compression="snappy", use_dictionary=True)
            self.bytes = 0
        self.writer.write_table(table)
        self.bytes += table.nbytes
        return self.chunk, self.file

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _RollingVideo:
    """One camera's mp4 files: episodes appended frame by frame, a new file past `max_mb`."""

    def __init__(self, root: Path, key: str, fps: int, size: tuple[int, int], max_mb: float):
        self.root, self.key, self.fps, self.size, self.max_bytes = root, key, fps, size, max_mb * 1024**2
        self.chunk = self.file = 0
        self.frames = 0  # frames in the current file
        self.writer: cv2.VideoWriter | None = None
        self.path: Path | None = None

    def write(self, frames: Sequence[bytes]) -> dict[str, Any]:
        if self.writer is not None and self.path is not None and self.path.stat().st_size >= self.max_bytes:
            self.close()
            self.file += 1
            if self.file == CHUNKS_SIZE:
                self.chunk, self.file = self.chunk + 1, 0
        if self.writer is None:
            self.path = self.root / VIDEO_PATH.format(
                video_key=self.key, chunk_index=self.chunk, file_index=self.file
            )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = self.size
            self.writer = cv2.VideoWriter(
                str(self.path), cv2.CAP_FFMPEG, cv2.VideoWriter.fourcc(*VIDEO_FOURCC), float(self.fps), (w, h)
            )
            if not self.writer.isOpened():
                raise ExportError(f"OpenCV cannot write {VIDEO_FOURCC} video to {self.path}")
            self.frames = 0
        start = self.frames
        for jpeg in frames:
            rgb = decode_jpeg(jpeg)
            if rgb.shape[:2] != self.size:
                raise ExportError(
                    f"{self.key}: frame of {rgb.shape[1]}x{rgb.shape[0]} in a video of "
                    f"{self.size[1]}x{self.size[0]}; a camera's frames must keep one size"
                )
            self.writer.write(bgr_to_rgb(rgb))
        self.frames += len(frames)
        k = f"videos/{self.key}/"
        return {
            k + "chunk_index": self.chunk,
            k + "file_index": self.file,
            k + "from_timestamp": start / self.fps,
            k + "to_timestamp": self.frames / self.fps,
        }

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


def _fixed_list(values: np.ndarray, dtype: Any) -> Any:
    t, n = values.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), dtype), n)


def _frame_table(
    ep: Episode,
    features: dict[str, Any],
    episode_index: int,
    first_index: int,
    task_index: int,
    fps: int,
    video: bool,
) -> Any:
    t = ep.num_steps
    last = np.zeros(t, bool)
    if t:
        last[-1] = True
    cols: dict[str, Any] = {
        STATE: _fixed_list(ep.joint_pos.astype(np.float32), pa.float32()),
        ACTION: _fixed_list(ep.action.astype(np.float32), pa.float32()),
    }
    if not video:
        for cam in ep.meta.cameras:
            cols[IMAGE_PREFIX + cam] = pa.array(
                [{"bytes": f, "path": None} for f in ep.images[cam]], IMAGE_STRUCT
            )
    cols.update(
        {
            "next.reward": pa.array(ep.rewards(), pa.float32()),
            "next.done": pa.array(last),
            "next.success": pa.array(last & ep.success),
            "intervention": pa.array(ep.intervention_mask),
            "action_source": pa.array(ep.source.astype(np.int64)),
            "chunk_id": pa.array(ep.chunk_id.astype(np.int64)),
            "policy_version": pa.array([ep.policy_versions[int(i)] for i in ep.policy_index], pa.string()),
            "lwd.step": pa.array(ep.step.astype(np.int64)),
            "lwd.stamp": pa.array(ep.stamp.astype(np.float64)),
            "timestamp": pa.array((np.arange(t) / fps).astype(np.float32)),
            "frame_index": pa.array(np.arange(t, dtype=np.int64)),
            "episode_index": pa.array(np.full(t, episode_index, np.int64)),
            "index": pa.array(np.arange(first_index, first_index + t, dtype=np.int64)),
            "task_index": pa.array(np.full(t, task_index, np.int64)),
        }
    )
    schema = data_schema(features)
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


def _episode_stats(ep: Episode, table: Any, features: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, ft in features.items():
        if ft["dtype"] == "string":
            continue  # LeRobot keeps no stats of strings
        if ft["dtype"] in ("image", "video"):
            out[key] = _image_stats(ep.images[key[len(IMAGE_PREFIX) :]])
            continue
        col = table.column(key).combine_chunks()
        if list(ft["shape"]) == [1]:
            out[key] = _stats(col.to_numpy(zero_copy_only=False), axis=0, keepdims=True)
        else:
            out[key] = _stats(col.flatten().to_numpy().reshape(len(col), -1), axis=0, keepdims=False)
    return out


def _json_extra(value: Any) -> str:
    """meta.extra as JSON (bytes, which the episode format allows there, as {"__bytes_hex__": ...})."""
    return json.dumps(value, default=lambda v: {"__bytes_hex__": v.hex()} if isinstance(v, bytes) else str(v))


def _extra_from_json(text: str) -> Any:
    return json.loads(
        text, object_hook=lambda d: bytes.fromhex(d["__bytes_hex__"]) if set(d) == {"__bytes_hex__"} else d
    )


def _count_segments(mask: np.ndarray) -> int:
    m = mask.astype(np.int8)
    return int((np.diff(m) == 1).sum() + (m[:1] == 1).sum()) if len(m) else 0


def _tasks_table(tasks: dict[str, int]) -> Any:
    """meta/tasks.parquet: LeRobot reads it with pandas and looks tasks up by the index (`task`)."""
    ordered = sorted(tasks.items(), key=lambda kv: kv[1])
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    schema = pa.schema(
        [("task_index", pa.int64()), ("task", pa.string())], metadata={"pandas": json.dumps(pandas_meta)}
    )
    return pa.table({"task_index": [i for _, i in ordered], "task": [t for t, _ in ordered]}, schema=schema)


def export_lerobot(
    store: EpisodeStore,
    episode_ids: Sequence[str],
    out_dir: Path,
    progress: Progress,
    fps: int | None = None,
    video: bool = False,
    robot_type: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the episodes as a LeRobot v3.0 dataset at `out_dir`; returns info.json's content.

    The instruction is LeRobot's `task` (language-conditioned policies read it); lwd's task name,
    label and the rest are in the episode rows' `lwd/*` columns. One dataset has one feature
    layout, so the episodes must share one robot (`EpisodeRobot.check_same`); `fps` defaults to its
    control rate and `robot_type` to `lwd_<robot description>`. A failed export leaves no dataset.
    """
    if not episode_ids:
        raise ExportError("no episodes to export")
    first = load_episode(store, episode_ids[0])
    robot = episode_robot(first)
    fps = fps or robot.whole_fps(episode_ids[0])
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise ExportError(f"{out_dir} exists and is not empty (pass --overwrite to replace it)")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    cameras = robot.cameras
    shapes: dict[str, tuple[int, int]] = {}
    for cam in cameras:
        h, w = decode_jpeg(first.images[cam][0]).shape[:2] if first.num_steps else (0, 0)
        shapes[cam] = (h, w)
    features = lwd_features(robot.joint_names, shapes, video, fps)
    data = _RollingParquet(out_dir, DATA_PATH, data_schema(features), DATA_FILES_SIZE_IN_MB)
    videos = (
        {
            cam: _RollingVideo(out_dir, IMAGE_PREFIX + cam, fps, shapes[cam], VIDEO_FILES_SIZE_IN_MB)
            for cam in cameras
        }
        if video
        else {}
    )
    tasks: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    all_stats: list[dict[str, dict[str, np.ndarray]]] = []
    total = 0
    done = False
    try:
        for index, eid in enumerate(episode_ids):
            ep = first if index == 0 else load_episode(store, eid)
            robot.check_same(episode_ids[0], ep)
            if ep.num_steps == 0:
                raise ExportError(f"episode {eid} has no steps")
            for cam in cameras:
                h, w = decode_jpeg(ep.images[cam][0]).shape[:2]
                if (h, w) != shapes[cam]:
                    raise ExportError(
                        f"episode {eid}: camera {cam} is {w}x{h}, earlier episodes "
                        f"{shapes[cam][1]}x{shapes[cam][0]}; one dataset has one image size per camera"
                    )
            task_index = tasks.setdefault(ep.meta.instruction, len(tasks))
            table = _frame_table(ep, features, index, total, task_index, fps, video)
            chunk, file = data.write(table)
            row: dict[str, Any] = {
                "episode_index": index,
                "tasks": [ep.meta.instruction],
                "length": ep.num_steps,
                "data/chunk_index": chunk,
                "data/file_index": file,
                "dataset_from_index": total,
                "dataset_to_index": total + ep.num_steps,
            }
            for cam, vw in videos.items():
                row.update(vw.write(ep.images[cam]))
            row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            stats = _episode_stats(ep, table, features)
            all_stats.append(stats)
            for key, st in stats.items():
                for name, value in st.items():
                    row[f"stats/{key}/{name}"] = value.tolist()
            m, o = ep.meta, ep.outcome
            row.update(
                {
                    LWD + "episode_id": m.episode_id,
                    LWD + "robot_id": m.robot_id,
                    LWD + "task": m.task,
                    LWD + "instruction": m.instruction,
                    LWD + "kind": m.kind.value,
                    LWD + "label": o.label.value,
                    LWD + "success": ep.success,
                    LWD + "reason": o.reason,
                    LWD + "note": o.note,
                    LWD + "subtask_score": o.subtask_score,
                    LWD + "started_at": float(m.started_at),
                    LWD + "ended_at": float(o.ended_at),
                    LWD + "interventions": _count_segments(ep.intervention_mask),
                    LWD + "intervention_steps": int(ep.intervention_mask.sum()),
                    LWD + "policy_versions": list(ep.policy_versions),
                    LWD + "extra": _json_extra(m.extra),
                    LWD + "schema_version": m.schema_version,
                    LWD + "joint_names": list(m.joint_names),
                    LWD + "cameras": list(m.cameras),
                }
            )
            rows.append(row)
            total += ep.num_steps
            progress.episode(eid, ep.num_steps)
        done = True
    finally:
        data.close()
        for vw in videos.values():
            vw.close()
        if not done:  # a refused or failed export leaves no half-written dataset behind
            shutil.rmtree(out_dir, ignore_errors=True)

    episodes = pa.Table.from_pylist(rows)
    path = out_dir / EPISODES_PATH.format(chunk_index=0, file_index=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(episodes, path, compression="snappy")
    pq.write_table(_tasks_table(tasks), out_dir / TASKS_PATH)
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type or ROBOT_TYPE.format(robot=robot.name or UNKNOWN_ROBOT),
        "total_episodes": len(rows),
        "total_frames": total,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
        "fps": fps,
        "splits": {"train": f"0:{len(rows)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if video else None,
        "features": features,
    }
    (out_dir / INFO_PATH).write_text(json.dumps(info, indent=4, ensure_ascii=False))
    (out_dir / STATS_PATH).write_text(json.dumps(_jsonable(aggregate_stats(all_stats)), indent=4))
    return info


# --- import -------------------------------------------------------------------------------------------


@dataclass
class ImportMapping:
    """How a LeRobot dataset's columns become lwd's (YAML/JSON file; every key optional).

    robot: the lwd_description robot (name or YAML path) whose joint and camera names the episodes
    get (None: the robot an lwd export recorded, else the G1); joints: lwd joint name -> name in the
    dataset's state/action `names` (None: the robot's names, identical); cameras: lwd camera ->
    dataset image/video feature key (None: those of observation.images.<lwd camera> the dataset
    has, at least one). The defaults for label, kind, source and policy version apply only where
    the dataset has no lwd columns (datasets not exported by lwd).
    """

    state_key: str = STATE
    action_key: str = ACTION
    robot: str | None = None
    joints: dict[str, str] | None = None
    cameras: dict[str, str] | None = None
    robot_id: str = "lerobot"
    kind: EpisodeKind = EpisodeKind.DEMO
    label: Label = Label.SUCCESS
    source: ActionSource = ActionSource.TELEOP
    policy_version: str = "teleop"
    jpeg_quality: int = JPEG_QUALITY


def load_mapping(path: str | os.PathLike | None) -> ImportMapping:
    """The mapping in a YAML or JSON file (None: the defaults), checked against lwd's joint and camera names."""
    if path is None:
        return ImportMapping()
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"mapping file {p} does not exist")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ExportError(f"mapping file {p} is not YAML/JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ExportError(f"mapping file {p} must hold a mapping, not {type(raw).__name__}")
    return mapping_from_dict(raw, str(p))


def mapping_from_dict(raw: dict[str, Any], where: str = "mapping") -> ImportMapping:
    known = set(ImportMapping.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ExportError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    m = ImportMapping()
    try:
        for key in ("state_key", "action_key", "robot", "robot_id", "policy_version"):
            if key in raw:
                setattr(m, key, str(raw[key]))
        if "kind" in raw:
            m.kind = EpisodeKind(raw["kind"])
        if "label" in raw:
            m.label = Label(raw["label"])
        if "source" in raw:
            m.source = ActionSource[str(raw["source"]).upper()]
        if "jpeg_quality" in raw:
            m.jpeg_quality = int(raw["jpeg_quality"])
    except (ValueError, KeyError) as exc:
        raise ExportError(f"{where}: {exc}") from None
    joint_names, camera_names = robot_names(m.robot)
    if "joints" in raw:
        joints = raw["joints"]
        if not isinstance(joints, dict):
            raise ExportError(f"{where}: joints must map lwd joint names to dataset names")
        bad = sorted(set(joints) - set(joint_names))
        if bad:
            raise ExportError(f"{where}: unknown lwd joints {bad}; lwd's joints are {list(joint_names)}")
        missing = [j for j in joint_names if j not in joints]
        if missing:
            raise ExportError(
                f"{where}: joints must map all {len(joint_names)} lwd joints; missing {missing}"
            )
        m.joints = {j: str(joints[j]) for j in joint_names}
    if "cameras" in raw:
        cams = raw["cameras"]
        if not isinstance(cams, dict) or not cams:
            raise ExportError(f"{where}: cameras must map lwd camera names to dataset image keys")
        bad = sorted(set(cams) - set(camera_names))
        if bad:
            raise ExportError(f"{where}: unknown lwd cameras {bad}; lwd's cameras are {list(camera_names)}")
        m.cameras = {c: str(cams[c]) for c in camera_names if c in cams}
    return m


def _target_robot(
    mapping: ImportMapping, rows: list[dict[str, Any]]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The lwd joint and camera names the episodes get: the mapping's robot, else the one an lwd export
    recorded in its episode rows (unless the mapping maps joints), else the G1's."""
    recorded = {
        (tuple(r[LWD + "joint_names"]), tuple(r.get(LWD + "cameras") or ()))
        for r in rows
        if r.get(LWD + "joint_names")
    }
    if mapping.robot is None and mapping.joints is None and len(recorded) == 1:
        return recorded.pop()
    return robot_names(mapping.robot)


def _names(ft: dict[str, Any]) -> list[str] | None:
    """A feature's per-dimension names (v3 lists, or v2's {"motors": [...]} form)."""
    names = ft.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    return [str(n) for n in names] if isinstance(names, list) else None


def _read_info(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise ExportError(f"no LeRobot dataset at {root}: not a directory")
    info_path = root / INFO_PATH
    if not info_path.is_file():
        raise ExportError(f"{root} is not a LeRobot dataset: {INFO_PATH} is missing")
    info = json.loads(info_path.read_text())
    version = str(info.get("codebase_version", "?"))
    if not version.startswith("v3."):
        raise ExportError(
            f"{root} is a LeRobot {version} dataset; this importer reads v3.x "
            "(LeRobot converts v2.1 with lerobot.datasets.v30.convert_dataset_v21_to_v30)"
        )
    for key in ("features", "fps"):
        if key not in info:
            raise ExportError(f"{info_path} has no {key!r}")
    return info


@dataclass
class _Plan:
    """The checked mapping from a dataset's features to lwd's columns."""

    joint_names: tuple[str, ...]  # the lwd joints, in order
    state_idx: list[int]
    action_idx: list[int]
    cameras: dict[str, str]  # lwd camera -> feature key
    camera_dtype: dict[str, str]  # feature key -> image | video


def _plan(
    info: dict[str, Any], mapping: ImportMapping, joint_names: tuple[str, ...], camera_names: tuple[str, ...]
) -> _Plan:
    feats = info["features"]
    joints = mapping.joints if mapping.joints is not None else {j: j for j in joint_names}

    def vector(key: str, what: str) -> list[int]:
        if key not in feats:
            vecs = sorted(k for k, f in feats.items() if f.get("dtype") not in ("image", "video", "string"))
            raise ExportError(
                f"the dataset has no {what} feature {key!r} (mapping {what}_key); "
                f"its numeric features: {vecs}"
            )
        ft = feats[key]
        shape = list(ft.get("shape", []))
        if len(shape) != 1:
            raise ExportError(f"{key} has shape {shape}; lwd needs a vector of joint values")
        names = _names(ft)
        if names is None:
            if shape[0] != len(joint_names):
                raise ExportError(
                    f"{key} has {shape[0]} values per frame and no names; lwd needs {len(joint_names)} "
                    "(give the dataset names, or map joints)"
                )
            return list(range(len(joint_names)))
        if len(names) != shape[0]:
            raise ExportError(f"{key}: info.json gives shape {shape} but {len(names)} names")
        missing = [(j, d) for j, d in joints.items() if d not in names]
        if missing:
            shown = ", ".join(f"{j} -> {d!r}" for j, d in missing[:4])
            raise ExportError(
                f"{key} has {shape[0]} values named {names[:8]}{'...' if len(names) > 8 else ''}; "
                f"{len(missing)} mapped joints are not among them ({shown}); map them in the "
                "mapping's `joints`"
            )
        return [names.index(joints[j]) for j in joint_names]

    state_idx = vector(mapping.state_key, "state")
    action_idx = vector(mapping.action_key, "action")
    visual = {k: f["dtype"] for k, f in feats.items() if f.get("dtype") in ("image", "video")}
    cameras = mapping.cameras
    if cameras is None:  # lwd's camera names, those the dataset has (an lwd export may hold a subset)
        lwd_named = {c: IMAGE_PREFIX + c for c in camera_names}
        cameras = {c: k for c, k in lwd_named.items() if k in visual} or lwd_named
    unknown = {c: k for c, k in cameras.items() if k not in visual}
    if unknown:
        shown = ", ".join(f"{c} -> {k!r}" for c, k in unknown.items())
        raise ExportError(
            f"unknown cameras: the dataset has no image/video feature for {shown}; "
            f"its cameras: {sorted(visual) or 'none'} (map them in the mapping's `cameras`)"
        )
    dtypes = {k: visual[k] for k in cameras.values()}
    return _Plan(joint_names, state_idx, action_idx, dict(cameras), dtypes)


def _read_tasks(root: Path) -> dict[int, str]:
    path = root / TASKS_PATH
    if not path.is_file():
        raise ExportError(f"{root} is not a LeRobot v3 dataset: {TASKS_PATH} is missing")
    t = pq.read_table(path)
    if "task_index" not in t.column_names:
        raise ExportError(f"{path} has no task_index column (columns: {t.column_names})")
    text_cols = [
        c for c in t.column_names if c != "task_index" and pa.types.is_string(t.schema.field(c).type)
    ]
    col = "task" if "task" in t.column_names else (text_cols[0] if text_cols else None)
    if col is None:
        raise ExportError(f"{path} has no task text column (columns: {t.column_names})")
    return {
        int(i): str(s)
        for i, s in zip(t.column("task_index").to_pylist(), t.column(col).to_pylist(), strict=True)
    }


def _read_episodes(root: Path) -> list[dict[str, Any]]:
    files = sorted((root / EPISODES_DIR).glob("*/*.parquet"))
    if not files:
        raise ExportError(f"{root} is not a LeRobot v3 dataset: no {EPISODES_DIR}/chunk-*/file-*.parquet")
    rows: list[dict[str, Any]] = []
    for f in files:
        t = pq.read_table(f)
        keep = [c for c in t.column_names if not c.startswith("stats/")]
        rows.extend(t.select(keep).to_pylist())
    for need in ("episode_index", "length", "data/chunk_index", "data/file_index"):
        if rows and need not in rows[0]:
            raise ExportError(f"{root}/{EPISODES_DIR}: missing column {need!r}")
    return sorted(rows, key=lambda r: int(r["episode_index"]))


def _vectors(table: Any, key: str, idx: list[int], width: int, where: str) -> np.ndarray:
    col = table.column(key).combine_chunks()
    if pa.types.is_fixed_size_list(col.type):
        dims = {col.type.list_size}
    elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        dims = set(np.diff(col.offsets.to_numpy()).tolist())
    else:
        raise ExportError(f"{where}: column {key} is {col.type}, not a list of joint values")
    if dims != {width}:
        raise ExportError(f"{where}: column {key} has {sorted(dims)} values per row, info.json says {width}")
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return np.ascontiguousarray(flat.reshape(len(col), width)[:, idx])


class _Videos:
    """Reads frame ranges of the dataset's mp4 files with OpenCV, sequentially where episodes follow each other."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.cap: cv2.VideoCapture | None = None
        self.pos = 0

    def frames(self, path: Path, start: int, count: int, quality: int) -> list[bytes]:
        if path != self.path or start != self.pos:
            self.close()
            if not path.is_file():
                raise ExportError(f"video file {path} is missing")
            self.cap, self.path, self.pos = cv2.VideoCapture(str(path)), path, 0
            if not self.cap.isOpened():
                raise ExportError(
                    f"OpenCV cannot open {path} (codec {_fourcc(path)}; its FFmpeg may lack a decoder)"
                )
            if start:
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, start)
                self.pos = start
        assert self.cap is not None
        out: list[bytes] = []
        for _ in range(count):
            ok, bgr = self.cap.read()
            if not ok:
                raise ExportError(f"{path}: {len(out)} frames from frame {start}, the episode has {count}")
            out.append(encode_jpeg(bgr_to_rgb(bgr), quality))
        self.pos = start + count
        return out

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
        self.cap, self.path = None, None


def _fourcc(path: Path) -> str:
    cap = cv2.VideoCapture(str(path))
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    cap.release()
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)) if code else "unknown"


def _image_bytes(cells: list[dict[str, Any] | None], root: Path, quality: int, where: str) -> list[bytes]:
    """JPEG bytes of `datasets.Image` cells: JPEG kept as is, other formats (PNG, ...) re-encoded."""
    out = []
    for cell in cells:
        data = cell.get("bytes") if cell else None
        if data is None and cell and cell.get("path"):
            p = Path(cell["path"])
            p = p if p.is_absolute() else root / p
            if not p.is_file():
                raise ExportError(f"{where}: image file {p} is missing")
            data = p.read_bytes()
        if data is None:
            raise ExportError(f"{where}: a frame has neither bytes nor path")
        if not data.startswith(_JPEG_MAGIC):
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ExportError(f"{where}: a frame is not a decodable image")
            data = encode_jpeg(bgr_to_rgb(bgr), quality)
        out.append(data)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "dataset"


def iter_lerobot_episodes(
    dataset_dir: str | os.PathLike,
    mapping: ImportMapping | None = None,
    episodes: Sequence[int] | None = None,
) -> Iterator[Episode]:
    """lwd Episodes from a local LeRobot v3 dataset, in episode order (checked, see ImportMapping)."""
    root = Path(dataset_dir)
    mapping = mapping or ImportMapping()
    info = _read_info(root)
    feats = info["features"]
    fps = float(info["fps"])
    tasks = _read_tasks(root)
    rows = _read_episodes(root)
    plan = _plan(info, mapping, *_target_robot(mapping, rows))
    if episodes is not None:
        wanted = set(episodes)
        unknown = sorted(wanted - {int(r["episode_index"]) for r in rows})
        if unknown:
            raise ExportError(f"episode indices not in the dataset: {unknown} (it has {len(rows)} episodes)")
        rows = [r for r in rows if int(r["episode_index"]) in wanted]
    data_path = str(info.get("data_path") or DATA_PATH)
    video_path = str(info.get("video_path") or VIDEO_PATH)
    image_keys = [k for k, d in plan.camera_dtype.items() if d == "image"]
    needed = [
        mapping.state_key,
        mapping.action_key,
        "episode_index",
        "frame_index",
        "timestamp",
        "task_index",
        *image_keys,
    ]
    optional = [k for k in LWD_FEATURES if k in feats]
    videos = _Videos()
    cache: tuple[Path, Any] | None = None
    try:
        for row in rows:
            idx = int(row["episode_index"])
            rel = data_path.format(
                chunk_index=int(row["data/chunk_index"]),
                file_index=int(row["data/file_index"]),
                episode_chunk=0,
                episode_index=idx,
            )
            path = root / rel
            if cache is None or cache[0] != path:
                if not path.is_file():
                    raise ExportError(f"data file {rel} of episode {idx} is missing")
                schema = pq.read_schema(path)
                missing = [c for c in needed if c not in schema.names]
                if missing:
                    raise ExportError(f"{rel} lacks columns {missing} (it has {schema.names})")
                table = pq.read_table(path, columns=needed + [c for c in optional if c in schema.names])
                cache = (path, table)
            table = cache[1]
            ep_rows = table.filter(pc.equal(table.column("episode_index"), idx))
            ep_rows = ep_rows.sort_by("frame_index")
            yield _episode(ep_rows, row, root, info, plan, mapping, tasks, fps, video_path, videos, feats)
    finally:
        videos.close()


def _episode(
    t: Any,
    row: dict[str, Any],
    root: Path,
    info: dict[str, Any],
    plan: _Plan,
    mapping: ImportMapping,
    tasks: dict[int, str],
    fps: float,
    video_path: str,
    videos: _Videos,
    feats: dict[str, Any],
) -> Episode:
    idx = int(row["episode_index"])
    n = t.num_rows
    where = f"episode {idx}"
    if n == 0:
        raise ExportError(f"{where}: no frames in its data file")
    if int(row["length"]) != n:
        raise ExportError(f"{where}: the episodes table says {row['length']} frames, the data file has {n}")
    joint_pos = _vectors(
        t, mapping.state_key, plan.state_idx, int(feats[mapping.state_key]["shape"][0]), where
    )
    action = _vectors(
        t, mapping.action_key, plan.action_idx, int(feats[mapping.action_key]["shape"][0]), where
    )
    images: dict[str, list[bytes]] = {}
    for cam, key in plan.cameras.items():
        if plan.camera_dtype[key] == "image":
            images[cam] = _image_bytes(
                t.column(key).to_pylist(), root, mapping.jpeg_quality, f"{where} {key}"
            )
        else:
            k = f"videos/{key}/"
            if k + "chunk_index" not in row:
                raise ExportError(f"{where}: the episodes table has no {k}chunk_index for video {key}")
            vpath = root / video_path.format(
                video_key=key, chunk_index=int(row[k + "chunk_index"]), file_index=int(row[k + "file_index"])
            )
            start = int(round(float(row.get(k + "from_timestamp") or 0.0) * fps))
            images[cam] = videos.frames(vpath, start, n, mapping.jpeg_quality)
    cols = set(t.column_names)

    def col(name: str) -> np.ndarray:
        return t.column(name).to_numpy(zero_copy_only=False)

    own = row.get(LWD + "episode_id") is not None
    if "action_source" in cols:
        source = col("action_source").astype(np.int8)
    elif "intervention" in cols:
        source = np.where(col("intervention").astype(bool), ActionSource.TELEOP, ActionSource.POLICY).astype(
            np.int8
        )
    else:
        source = np.full(n, int(mapping.source), np.int8)
    if "policy_version" in cols:
        per_step = [str(v) for v in t.column("policy_version").to_pylist()]
    else:
        per_step = [mapping.policy_version] * n
    versions = list(dict.fromkeys(per_step))
    lookup = {v: i for i, v in enumerate(versions)}
    frame_index = col("frame_index").astype(np.int64)
    step = col("lwd.step").astype(np.int64) if "lwd.step" in cols else frame_index
    stamp = (
        col("lwd.stamp").astype(np.float64) if "lwd.stamp" in cols else col("timestamp").astype(np.float64)
    )
    chunk_id = col("chunk_id").astype(np.int64) if "chunk_id" in cols else frame_index // CHUNK_HORIZON
    task_text = tasks.get(int(col("task_index")[0]), "")
    if own:
        meta = EpisodeMeta(
            episode_id=check_episode_id(str(row[LWD + "episode_id"])),
            robot_id=str(row[LWD + "robot_id"]),
            task=str(row[LWD + "task"]),
            instruction=str(row.get(LWD + "instruction", task_text)),
            kind=EpisodeKind(row[LWD + "kind"]),
            started_at=float(row[LWD + "started_at"]),
            cameras=tuple(plan.cameras),
            extra=_extra_from_json(str(row.get(LWD + "extra") or "{}")),
            joint_names=plan.joint_names,
        )
        score = row.get(LWD + "subtask_score")
        outcome = EpisodeOutcome(
            label=Label(row[LWD + "label"]),
            num_steps=n,
            reason=str(row[LWD + "reason"]),
            note=str(row.get(LWD + "note") or ""),
            ended_at=float(row[LWD + "ended_at"]),
            subtask_score=None
            if score is None or (isinstance(score, float) and math.isnan(score))
            else float(score),
        )
    else:
        name = _slug(root.name)
        started = time.time()
        meta = EpisodeMeta(
            episode_id=check_episode_id(f"{_slug(mapping.robot_id)}-{name}-ep{idx:06d}"[:200]),
            robot_id=mapping.robot_id,
            task=name,
            instruction=task_text,
            kind=mapping.kind,
            started_at=started,
            cameras=tuple(plan.cameras),
            extra={
                "lerobot": {"dataset": root.name, "episode_index": idx, "robot_type": info.get("robot_type")},
                "control_hz": fps,  # what a re-export takes as its fps
            },
            joint_names=plan.joint_names,
        )
        if "next.success" in cols:
            label = Label.SUCCESS if bool(col("next.success").astype(bool).any()) else Label.FAILURE
        else:
            label = mapping.label
        outcome = EpisodeOutcome(label=label, num_steps=n, reason="imported", ended_at=started + n / fps)
    ep = Episode(
        meta=meta,
        outcome=outcome,
        step=step,
        stamp=stamp,
        joint_pos=joint_pos,
        action=action,
        source=source,
        chunk_id=chunk_id,
        policy_index=np.array([lookup[v] for v in per_step], np.int16),
        policy_versions=versions,
        images=images,
    )
    try:
        ep.validate()
    except ValueError as exc:
        raise ExportError(f"{where}: {exc}") from None
    return ep


def import_lerobot(
    dataset_dir: str | os.PathLike,
    store_dir: str | os.PathLike,
    progress: Progress,
    mapping: ImportMapping | None = None,
    episodes: Sequence[int] | None = None,
    commit: bool = True,
) -> list[str]:
    """Put the dataset's episodes into the lwd store at `store_dir` (created if absent); returns their ids.

    Episodes already in the store (same id) are skipped, so a re-run is idempotent; with `commit` a
    snapshot is committed at the end so the learner sees them.
    """
    store_root = Path(store_dir)
    if store_root.exists() and not store_root.is_dir():
        raise ExportError(f"{store_root} is a file, not an episode store directory")
    stored: list[str] = []
    store: EpisodeStore | None = None
    for ep in iter_lerobot_episodes(dataset_dir, mapping, episodes):
        if store is None:  # only once the dataset has proved readable
            store = EpisodeStore(store_root)
        new = store.put(ep)
        stored.append(ep.meta.episode_id)
        progress.episode(ep.meta.episode_id, ep.num_steps, "" if new else "already stored, skipped")
    if store is not None and commit:
        store.commit_snapshot()
    return stored


if __name__ == "__main__":  # `python -m lwd_common.export.lerobot_v3 import|export ...`: the package CLI
    import sys

    from lwd_common.export.__main__ import main

    argv = sys.argv[1:]
    if argv and argv[0] == "export":
        argv[0] = "lerobot"
    sys.exit(main(argv))
