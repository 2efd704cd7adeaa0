"""Approximate time synchronisation of the robot's cameras (the G1: three) and the joint states.

`message_filters` is not available on pip ROS, and we only ever need the newest
consistent set, so this is a small thread-safe buffer per input: the pivot is
the newest stamp of the slowest input, every other input contributes the entry
closest to it, and the set is accepted if its stamps span at most `slop_s`.

The node also tells it about messages it refused (`reject`), so that `explain` can
say why no fresh set exists, input by input: the words an operator needs when a
start is refused or the robot holds.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from lwd_actor.core.observation import JOINTS_INPUT, Observation, all_inputs, input_label


class ApproximateSync:
    def __init__(self, slop_s: float = 0.05, depth: int = 10, inputs: tuple[str, ...] = all_inputs()):
        if slop_s <= 0 or depth < 1:
            raise ValueError("slop_s must be > 0 and depth >= 1")
        self.slop_s = slop_s
        self.inputs = inputs
        # input -> (stamp, value): an HxWx3 RGB frame for a camera, the (J,) joint positions for JOINTS_INPUT
        self._buf: dict[str, deque[tuple[float, np.ndarray]]] = {n: deque(maxlen=depth) for n in inputs}
        self._lock = threading.Lock()
        self._last: Observation | None = None
        self._refused: dict[str, str] = {}  # input -> why its newest message was refused
        self.unsynced_sets = 0  # times a newest set existed but spanned more than the slop

    def add(self, name: str, stamp: float, value: np.ndarray) -> None:
        with self._lock:
            buf = self._buf[name]
            if buf and stamp < buf[-1][0]:
                buf.clear()  # time went backwards (sim reset / clock jump): start over
            buf.append((stamp, value))
            self._refused.pop(name, None)

    def reject(self, name: str, reason: str) -> None:
        """A message of input `name` was refused for `reason` (kept until a good one arrives)."""
        with self._lock:
            if name in self._buf:
                self._refused[name] = reason

    def explain(self, now: float | None = None, max_age_s: float | None = None) -> str:
        """Why there is no fresh synchronised set, naming each input at fault ("" if none is).

        An input is at fault if its messages are refused (the reason), if nothing arrived, or,
        given `now` and `max_age_s`, if its newest message is older than that; if every input
        is fine the stamps themselves do not line up within the slop."""
        with self._lock:
            newest = {n: (b[-1][0] if b else None) for n, b in self._buf.items()}
            refused = dict(self._refused)
        parts = []
        for name in self.inputs:
            t = newest[name]
            if name in refused:
                parts.append(f"{input_label(name)}: messages refused: {refused[name]}")
            elif t is None:
                parts.append(f"{input_label(name)}: nothing received")
            elif now is not None and max_age_s is not None and now - t > max_age_s:
                parts.append(f"{input_label(name)}: newest message {now - t:.2f} s old")
        if parts:
            return "; ".join(parts)
        stamps = [t for t in newest.values() if t is not None]
        if stamps and max(stamps) - min(stamps) > self.slop_s:
            return (
                f"newest stamps of the inputs span {max(stamps) - min(stamps):.3f} s, more than "
                f"sync_slop_s {self.slop_s:g} s"
            )
        return ""

    def newest_stamps(self) -> dict[str, float | None]:
        with self._lock:
            return {n: (b[-1][0] if b else None) for n, b in self._buf.items()}

    def latest(self) -> Observation | None:
        """The newest synchronised observation (the previous one if no newer set matches)."""
        with self._lock:
            if any(not b for b in self._buf.values()):
                return self._last
            pivot = min(b[-1][0] for b in self._buf.values())
            chosen = {n: min(b, key=lambda e: abs(e[0] - pivot)) for n, b in self._buf.items()}
        stamps = {n: e[0] for n, e in chosen.items()}
        if max(stamps.values()) - min(stamps.values()) > self.slop_s:
            self.unsynced_sets += 1
            return self._last
        last = self._last
        if last is not None and last.stamps == stamps:
            return last
        obs = Observation(
            images={n: e[1] for n, e in chosen.items() if n != JOINTS_INPUT},
            joint_pos=np.asarray(chosen[JOINTS_INPUT][1], np.float64),
            stamps=stamps,
        )
        self._last = obs
        return obs
