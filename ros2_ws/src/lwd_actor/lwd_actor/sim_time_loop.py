"""The actor's control thread on simulated time (`use_sim_time`): woken by /clock, one tick a period.

An rclpy timer on ROS time missed most ticks when /clock advanced in small steps; this thread is
woken by every /clock update (a clock jump callback) and ticks when a simulated period has passed.
On wall time the control thread is `core.control_loop.ControlLoop` instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from rclpy.clock import Clock, JumpThreshold
from rclpy.duration import Duration as RosDuration


class SimTimeLoop:
    """`tick` every simulated period of `hz` on `clock`, on a thread of its own, while `running()`."""

    def __init__(
        self,
        clock: Clock,
        hz: float,
        tick: Callable[[], None],
        running: Callable[[], bool],
        on_error: Callable[[Exception], None],
    ):
        self._clock = clock
        self._hz = hz
        self._tick = tick
        self._running = running
        self._on_error = on_error
        self._thread = threading.Thread(target=self._run, name="lwd-control-sim", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait for the thread to end (`running()` turned false) for up to `timeout` s."""
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        clock = self._clock
        wake = threading.Event()
        handle = clock.create_jump_callback(
            JumpThreshold(
                min_forward=RosDuration(nanoseconds=1),
                min_backward=RosDuration(nanoseconds=-1),
                on_clock_change=True,
            ),
            post_callback=lambda jump: wake.set(),
        )
        period = int(round(1e9 / self._hz))
        next_ns: int | None = None
        try:
            while self._running():
                wake.wait(0.5)
                wake.clear()
                now = clock.now().nanoseconds
                if now == 0:
                    continue  # no /clock yet
                if next_ns is None or now < next_ns - period:  # first tick, or time went back (reset)
                    next_ns = now
                if now >= next_ns:
                    next_ns += ((now - next_ns) // period + 1) * period
                    try:
                        self._tick()
                    except Exception as exc:  # noqa: BLE001 - one bad tick must not end control
                        self._on_error(exc)
        finally:
            handle.unregister()
