"""Per-feature statistics of an export: meta/stats.json and the episodes table's `stats/*` columns.

min/max/mean/std/count per feature and episode (images: per channel, in [0, 1], from a sample of
frames), pooled over episodes the way LeRobot's aggregate_stats does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lwd_common.episode import Episode
from lwd_common.export.lerobot_v3.schema import IMAGE_PREFIX
from lwd_common.preprocessing import decode_jpeg

IMAGE_STATS_SAMPLES = 100  # frames per episode decoded for image stats (LeRobot samples ~100 too)

Stats = dict[str, dict[str, np.ndarray]]  # feature -> stat name -> value


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


def aggregate_stats(per_episode: Sequence[Stats]) -> Stats:
    """Dataset stats from episode stats (count-weighted mean, pooled variance: LeRobot's aggregate_stats)."""
    out: Stats = {}
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


def jsonable(stats: Stats) -> dict[str, dict[str, Any]]:
    """Stats as JSON-ready lists (meta/stats.json)."""
    return {k: {s: v.tolist() for s, v in d.items()} for k, d in stats.items()}


def episode_stats(ep: Episode, table: Any, features: dict[str, Any]) -> Stats:
    """Stats of one episode's features, from its data table (`table`) and its JPEG frames."""
    out: Stats = {}
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
