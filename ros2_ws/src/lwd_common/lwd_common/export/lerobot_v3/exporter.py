"""lwd episode store -> LeRobot v3.0 dataset directory (`export_lerobot`).

Frames go into rolling data parquet files (and, with `video=True`, one rolling mp4 per camera),
one row per episode into meta/episodes (LeRobot's columns, `stats/*` and `lwd/*`), then
meta/tasks.parquet, meta/info.json and meta/stats.json. The layout is in `schema`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from lwd_common.episode import Episode
from lwd_common.export import ExportError, Progress, episode_robot, load_episode
from lwd_common.export.lerobot_v3.schema import (
    ACTION,
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_FILES_SIZE_IN_MB,
    DATA_PATH,
    EPISODES_PATH,
    IMAGE_PREFIX,
    IMAGE_STRUCT,
    INFO_PATH,
    LWD,
    ROBOT_TYPE,
    STATE,
    STATS_PATH,
    TASKS_PATH,
    UNKNOWN_ROBOT,
    VIDEO_FILES_SIZE_IN_MB,
    VIDEO_FOURCC,
    VIDEO_PATH,
    data_schema,
    extra_to_json,
    lwd_features,
)
from lwd_common.export.lerobot_v3.stats import Stats, aggregate_stats, episode_stats, jsonable
from lwd_common.preprocessing import bgr_to_rgb, decode_jpeg
from lwd_common.store import EpisodeStore


class _Rolling:
    """chunk-XXX/file-YYY numbering of a file series (LeRobot's rule): the writer starts a new file
    once the current one reaches `max_mb`, and every CHUNKS_SIZE files a new chunk directory."""

    def __init__(self, root: Path, max_mb: float):
        self.root, self.max_bytes = root, max_mb * 1024**2
        self.chunk = self.file = 0

    def _next_file(self) -> None:
        self.close()
        self.file += 1
        if self.file == CHUNKS_SIZE:
            self.chunk, self.file = self.chunk + 1, 0

    def _new_path(self, template: str, **keys: str) -> Path:
        """The current file's path from `template` (its directory created)."""
        path = self.root / template.format(chunk_index=self.chunk, file_index=self.file, **keys)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        raise NotImplementedError


class _RollingParquet(_Rolling):
    """Appends tables to the data parquet files; returns where each went (chunk, file)."""

    def __init__(self, root: Path, template: str, schema: Any, max_mb: float):
        super().__init__(root, max_mb)
        self.template, self.schema = template, schema
        self.bytes = 0
        self.writer: Any = None

    def write(self, table: Any) -> tuple[int, int]:
        if self.writer is not None and self.bytes + table.nbytes >= self.max_bytes:
            self._next_file()
        if self.writer is None:
            path = self._new_path(self.template)
            self.writer = pq.ParquetWriter(path, self.schema, compression="snappy", use_dictionary=True)
            self.bytes = 0
        self.writer.write_table(table)
        self.bytes += table.nbytes
        return self.chunk, self.file

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _RollingVideo(_Rolling):
    """One camera's mp4 files: episodes appended frame by frame; returns the episode row's videos/* columns."""

    def __init__(self, root: Path, key: str, fps: int, size: tuple[int, int], max_mb: float):
        super().__init__(root, max_mb)
        self.key, self.fps, self.size = key, fps, size
        self.frames = 0  # frames in the current file
        self.writer: cv2.VideoWriter | None = None
        self.path: Path | None = None

    def write(self, frames: Sequence[bytes]) -> dict[str, Any]:
        if self.writer is not None and self.path is not None and self.path.stat().st_size >= self.max_bytes:
            self._next_file()
        if self.writer is None:
            self.path = self._new_path(VIDEO_PATH, video_key=self.key)
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
    n = values.shape[1]
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


def _lwd_columns(ep: Episode) -> dict[str, Any]:
    """The episode row's `lwd/*` columns: what import needs to restore the lwd episode exactly."""
    m, o = ep.meta, ep.outcome
    return {
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
        LWD + "extra": extra_to_json(m.extra),
        LWD + "schema_version": m.schema_version,
        LWD + "joint_names": list(m.joint_names),
        LWD + "cameras": list(m.cameras),
    }


def _image_size(ep: Episode, cam: str) -> tuple[int, int]:
    """(height, width) of the episode's first frame of `cam`."""
    h, w = decode_jpeg(ep.images[cam][0]).shape[:2]
    return h, w


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
    shapes = {cam: _image_size(first, cam) if first.num_steps else (0, 0) for cam in cameras}
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
    all_stats: list[Stats] = []
    total = 0
    done = False
    try:
        for index, eid in enumerate(episode_ids):
            ep = first if index == 0 else load_episode(store, eid)
            robot.check_same(episode_ids[0], ep)
            if ep.num_steps == 0:
                raise ExportError(f"episode {eid} has no steps")
            for cam in cameras:
                h, w = _image_size(ep, cam)
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
            stats = episode_stats(ep, table, features)
            all_stats.append(stats)
            for key, st in stats.items():
                for name, value in st.items():
                    row[f"stats/{key}/{name}"] = value.tolist()
            row.update(_lwd_columns(ep))
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
    (out_dir / STATS_PATH).write_text(json.dumps(jsonable(aggregate_stats(all_stats)), indent=4))
    return info
