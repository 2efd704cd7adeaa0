"""LeRobot v3 dataset directory -> lwd episodes (`iter_lerobot_episodes`) and an episode store (`import_lerobot`).

Reads info.json, the tasks and episodes tables, then each episode's rows from its data file
(images from the `datasets.Image` cells, or frame ranges of the mp4 files), mapped to lwd's
joints and cameras by `mapping.make_plan`. Episodes an lwd export wrote come back exactly (their
`lwd/*` columns); others get the mapping's defaults.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from lwd_common.episode import ActionSource, Episode, EpisodeKind, EpisodeMeta, EpisodeOutcome, Label
from lwd_common.export import ExportError, Progress
from lwd_common.export.lerobot_v3.mapping import ImportMapping, Plan, make_plan, target_robot
from lwd_common.export.lerobot_v3.schema import (
    DATA_PATH,
    EPISODES_DIR,
    INFO_PATH,
    JPEG_MAGIC,
    LWD,
    LWD_FEATURES,
    TASKS_PATH,
    VIDEO_PATH,
    extra_from_json,
)
from lwd_common.preprocessing import bgr_to_rgb, encode_jpeg
from lwd_common.store import EpisodeStore, check_episode_id
from lwd_description.robot import CHUNK_HORIZON

# --- the dataset's tables -----------------------------------------------------------------------------


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


# --- frames -----------------------------------------------------------------------------------------


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
            out.append(_jpeg(bgr, quality))
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
        if not data.startswith(JPEG_MAGIC):
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ExportError(f"{where}: a frame is not a decodable image")
            data = _jpeg(bgr, quality)
        out.append(data)
    return out


def _jpeg(bgr: np.ndarray, quality: int) -> bytes:
    """An image OpenCV decoded (BGR) as lwd's JPEG bytes."""
    return encode_jpeg(bgr_to_rgb(bgr), quality)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "dataset"


# --- episodes ---------------------------------------------------------------------------------------


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
    plan = make_plan(info, mapping, *target_robot(mapping, rows))
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
            yield _episode(ep_rows, row, root, info, plan, mapping, tasks, fps, video_path, videos)
    finally:
        videos.close()


def _episode(
    t: Any,
    row: dict[str, Any],
    root: Path,
    info: dict[str, Any],
    plan: Plan,
    mapping: ImportMapping,
    tasks: dict[int, str],
    fps: float,
    video_path: str,
    videos: _Videos,
) -> Episode:
    """Episode `row` of the episodes table from its frames `t` (sorted by frame_index), checked."""
    idx = int(row["episode_index"])
    feats = info["features"]
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
    if row.get(LWD + "episode_id") is not None:  # exported by lwd: its own metadata
        meta, outcome = _own_meta(row, plan, n, task_text)
    else:
        success = bool(col("next.success").astype(bool).any()) if "next.success" in cols else None
        meta, outcome = _foreign_meta(idx, root, info, plan, mapping, n, fps, task_text, success)
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


def _own_meta(row: dict[str, Any], plan: Plan, n: int, task_text: str) -> tuple[EpisodeMeta, EpisodeOutcome]:
    """Meta and outcome of an episode an lwd export wrote: back from its `lwd/*` columns."""
    meta = EpisodeMeta(
        episode_id=check_episode_id(str(row[LWD + "episode_id"])),
        robot_id=str(row[LWD + "robot_id"]),
        task=str(row[LWD + "task"]),
        instruction=str(row.get(LWD + "instruction", task_text)),
        kind=EpisodeKind(row[LWD + "kind"]),
        started_at=float(row[LWD + "started_at"]),
        cameras=tuple(plan.cameras),
        extra=extra_from_json(str(row.get(LWD + "extra") or "{}")),
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
    return meta, outcome


def _foreign_meta(
    idx: int,
    root: Path,
    info: dict[str, Any],
    plan: Plan,
    mapping: ImportMapping,
    n: int,
    fps: float,
    task_text: str,
    success: bool | None,
) -> tuple[EpisodeMeta, EpisodeOutcome]:
    """Meta and outcome of an episode of any other dataset: the mapping's defaults, the label from
    `next.success` where the dataset has it (`success` None: it does not)."""
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
    if success is None:
        label = mapping.label
    else:
        label = Label.SUCCESS if success else Label.FAILURE
    outcome = EpisodeOutcome(label=label, num_steps=n, reason="imported", ended_at=started + n / fps)
    return meta, outcome


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
