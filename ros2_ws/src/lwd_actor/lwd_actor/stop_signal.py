"""SIGINT/SIGTERM for the actor process: a request to stop within a bound, never an exception."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time


class StopSignal:
    """SIGINT/SIGTERM as a request to stop, never an exception.

    rclpy's own handlers shut the context down from a signal while the executor may be taking a
    message and let KeyboardInterrupt hit whatever Python code runs: now and then inside rclpy's
    message conversion in `take_message`, which turned it into `RuntimeError: Unable to convert call
    argument '0' to Python object` and exit code 1. Here a signal only sets an event that the spin
    loop checks; the node is then stopped in order (executor, episode and recorder, node, context).
    The first signal also arms a last-resort exit `timeout_s` later, whatever is still running.
    """

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.event = threading.Event()
        self.at: float | None = None  # monotonic time of the first signal
        self.name = ""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        if self.event.is_set():
            return  # already stopping, within the bound
        self.at, self.name = time.monotonic(), signal.Signals(signum).name
        self.event.set()
        last_resort = threading.Timer(self.timeout_s, self._force_exit)
        last_resort.daemon = True
        last_resort.start()

    def left(self) -> float:
        """Seconds left of the shutdown bound (the whole bound before any signal)."""
        return self.timeout_s if self.at is None else max(0.0, self.at + self.timeout_s - time.monotonic())

    def _force_exit(self) -> None:
        sys.stderr.write(
            f"actor: still stopping {self.timeout_s:g} s after {self.name} (shutdown_timeout_s): exiting now; "
            "an episode not stored yet is stored from its journal/spool at the next start\n"
        )
        sys.stderr.flush()
        os._exit(1)
