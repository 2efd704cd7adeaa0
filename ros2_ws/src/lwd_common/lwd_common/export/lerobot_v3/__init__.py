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

One module per job: `schema` (paths, features, the data files' Arrow schema: what both directions
share), `stats` (per-feature statistics), `exporter` (store -> dataset), `mapping` (how a
dataset's features become lwd's), `importer` (dataset -> episodes, store). This package exports
their public names; `python -m lwd_common.export.lerobot_v3 export|import ...` is the CLI.
"""

from __future__ import annotations

from lwd_common.export.lerobot_v3.exporter import export_lerobot
from lwd_common.export.lerobot_v3.importer import import_lerobot, iter_lerobot_episodes
from lwd_common.export.lerobot_v3.mapping import ImportMapping, load_mapping, mapping_from_dict
from lwd_common.export.lerobot_v3.schema import (
    ACTION,
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_FILES_SIZE_IN_MB,
    DATA_PATH,
    DEFAULT_FEATURES,
    EPISODES_DIR,
    EPISODES_PATH,
    IMAGE_PREFIX,
    IMAGE_STRUCT,
    INFO_PATH,
    LWD,
    LWD_FEATURES,
    ROBOT_TYPE,
    STATE,
    STATS_PATH,
    TASKS_PATH,
    UNKNOWN_ROBOT,
    VIDEO_CODEC,
    VIDEO_FILES_SIZE_IN_MB,
    VIDEO_FOURCC,
    VIDEO_PATH,
    data_schema,
    lwd_features,
)
from lwd_common.export.lerobot_v3.stats import IMAGE_STATS_SAMPLES, aggregate_stats

__all__ = [
    "ACTION",
    "CHUNKS_SIZE",
    "CODEBASE_VERSION",
    "DATA_FILES_SIZE_IN_MB",
    "DATA_PATH",
    "DEFAULT_FEATURES",
    "EPISODES_DIR",
    "EPISODES_PATH",
    "IMAGE_PREFIX",
    "IMAGE_STATS_SAMPLES",
    "IMAGE_STRUCT",
    "INFO_PATH",
    "LWD",
    "LWD_FEATURES",
    "ROBOT_TYPE",
    "STATE",
    "STATS_PATH",
    "TASKS_PATH",
    "UNKNOWN_ROBOT",
    "VIDEO_CODEC",
    "VIDEO_FILES_SIZE_IN_MB",
    "VIDEO_FOURCC",
    "VIDEO_PATH",
    "ImportMapping",
    "aggregate_stats",
    "data_schema",
    "export_lerobot",
    "import_lerobot",
    "iter_lerobot_episodes",
    "load_mapping",
    "lwd_features",
    "mapping_from_dict",
]
