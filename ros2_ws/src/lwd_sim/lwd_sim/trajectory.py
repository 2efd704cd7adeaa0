"""Joint-trajectory following (what a JointTrajectoryController does), ROS-free.

A trajectory is a list of (time_from_start, positions) points over a subset of
the joints; joints it does not name keep their current command. Sampling between
points interpolates linearly; after the last point it holds the last point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class TrajectoryFollower:
    def __init__(self, joint_names: Sequence[str]):
        self.joint_names = tuple(joint_names)
        self._start = 0.0
        self._times: np.ndarray | None = None
        self._points: np.ndarray | None = None

    def clear(self) -> None:
        self._times = self._points = None

    def set(
        self,
        names: Sequence[str],
        times: Sequence[float],
        positions: Sequence[Sequence[float]],
        now: float,
        current: np.ndarray,
    ) -> None:
        """Start following from `now`; `current` fills joints the trajectory does not name."""
        unknown = [n for n in names if n not in self.joint_names]
        if unknown:
            raise ValueError(f"unknown joints {unknown}")
        if not times:
            raise ValueError("trajectory has no points")
        t = np.asarray(times, float)
        if (np.diff(t) <= 0).any():
            raise ValueError("time_from_start must increase strictly")
        pts = np.repeat(np.asarray(current, float)[None], len(t), axis=0)
        idx = [self.joint_names.index(n) for n in names]
        for k, pos in enumerate(positions):
            if len(pos) != len(names):
                raise ValueError(f"point {k} has {len(pos)} positions for {len(names)} joints")
            pts[k, idx] = pos
        if not np.isfinite(pts).all():
            raise ValueError("trajectory contains NaN/inf")
        self._start, self._times, self._points = now, t, pts

    def sample(self, now: float) -> np.ndarray | None:
        if self._times is None:
            return None
        t = now - self._start
        if t <= self._times[0]:
            return self._points[0].copy()
        if t >= self._times[-1]:
            return self._points[-1].copy()
        k = int(np.searchsorted(self._times, t)) - 1
        a = (t - self._times[k]) / (self._times[k + 1] - self._times[k])
        return self._points[k] + a * (self._points[k + 1] - self._points[k])
