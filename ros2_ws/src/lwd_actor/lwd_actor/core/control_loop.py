"""A fixed-rate loop on its own thread, scheduled against absolute deadlines.

rclpy's executor wakes timers through a Python wait-set loop that shares the GIL
with every subscription callback; on a busy 2-core machine that costs
milliseconds of jitter and skipped ticks. This loop sleeps to the next absolute
deadline on `time.monotonic` (no drift), and if it wakes late by more than a
period it skips to the next future deadline and counts the missed ticks (the
core derives the control step from the clock, so skipped steps are not
stretched in time). The node uses it on wall time; with `use_sim_time` it uses
an rclpy timer on the node clock instead.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np


def set_fifo_priority(priority: int) -> str:
    """SCHED_FIFO for the calling thread (threads it starts later inherit it); returns what happened.

    Used for the whole actor process (`chrt -f` from inside) so that no thread holding the GIL is
    preempted by unrelated load while the control thread waits for it.
    """
    if priority <= 0:
        return "SCHED_OTHER"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (PermissionError, OSError, AttributeError) as exc:
        return f"realtime priority unavailable: {exc}"
    return f"SCHED_FIFO {priority}"


class ControlLoop:
    def __init__(
        self,
        rate_hz: float,
        fn: Callable[[], None],
        name: str = "lwd-control",
        realtime_priority: int = 0,
        on_error: Callable[[BaseException], None] | None = None,
        keep: int = 100_000,
        spin_s: float = 0.001,
    ):
        if rate_hz <= 0:
            raise ValueError("rate_hz must be > 0")
        self.period = 1.0 / rate_hz
        self.fn = fn
        self.realtime_priority = realtime_priority
        self.spin_s = spin_s  # busy-wait this long before each deadline (~3% of a core at 30 Hz)
        self.on_error = on_error
        self.starts: deque[float] = deque(maxlen=keep)  # monotonic start time of every tick
        self.durations: deque[float] = deque(maxlen=keep)
        self.missed_ticks = 0
        self.errors = 0
        self.priority_note = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        # Let the control thread get the GIL back quickly from busy Python threads (default 5 ms).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _set_priority(self) -> None:
        if self.realtime_priority > 0:
            self.priority_note = set_fifo_priority(self.realtime_priority)

    def _run(self) -> None:
        self._set_priority()
        deadline = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now < deadline:
                if deadline - now > self.spin_s:
                    self._stop.wait(deadline - now - self.spin_s)
                while (now := time.monotonic()) < deadline:  # the last spin_s: spin, precise wake-up
                    pass
                if self._stop.is_set():
                    return
            late = now - deadline
            if late >= self.period:
                skipped = int(late // self.period)
                self.missed_ticks += skipped
                deadline += skipped * self.period
            self.starts.append(now)
            try:
                self.fn()
            except Exception as exc:  # noqa: BLE001 - one bad tick must not end control
                self.errors += 1
                if self.on_error is not None:
                    self.on_error(exc)
            self.durations.append(time.monotonic() - now)
            deadline += self.period

    def stats(self) -> dict[str, float]:
        """Tick period percentiles and jitter (|period - nominal|), ms."""
        t = np.asarray(self.starts)
        if len(t) < 3:
            return {}
        periods = np.diff(t) * 1e3
        jitter = np.abs(periods - self.period * 1e3)
        d = np.asarray(self.durations) * 1e3
        return {
            "ticks": float(len(t)),
            "period_p50_ms": float(np.percentile(periods, 50)),
            "jitter_p50_ms": float(np.percentile(jitter, 50)),
            "jitter_p99_ms": float(np.percentile(jitter, 99)),
            "jitter_max_ms": float(jitter.max()),
            "tick_p99_ms": float(np.percentile(d, 99)),
            "missed_ticks": float(self.missed_ticks),
        }
