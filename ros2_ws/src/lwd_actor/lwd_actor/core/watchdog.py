"""E-stop latch and command watchdog (ROS-free): the two ways the actor stops moving on its own.

E-stop: engaged by the `estop` topic (True) or the `~/estop` service and latched: only an
explicit reset clears it, and a reset is refused while the e-stop input still says engaged
(a button that is still pressed). While engaged the actor aborts the running episode, repeats
its last command for `hold_s` (so the controller gets a defined target, not a gap) and then
publishes nothing, and no episode can start. A hold is only sent if the actor was commanding
when the e-stop came: repeating an old command to a robot someone else moved since would move it.

Watchdog: the control step notices when it was itself not run for longer than
`control_stall_s` (the control thread stalled: GIL, a lock, the scheduler) and when the
inference in flight is older than `inference_stall_s`. Each trip holds the last command and
drops the plan, which was made for a moment long past, so the robot resumes only from a
fresh chunk. Inputs that stall are the `StaleGuard`'s job (`stale_input_timeout_s`).
`StallWatch` notices a stalled control thread while it is stalled, from a thread of its own
(the node reports it at once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lwd_actor.core.episode_fsm import TransitionError

CONTROL = "control"  # watchdog trip kinds (diagnostics keys `watchdog_<kind>_trips`)
INFERENCE = "inference"


@dataclass(frozen=True)
class WatchdogConfig:
    control_stall_s: float = 0.25  # a gap between control ticks longer than this trips (0: off)
    inference_stall_s: float = 1.0  # an inference in flight longer than this trips (0: off)

    def __post_init__(self) -> None:
        if self.control_stall_s < 0 or self.inference_stall_s < 0:
            raise ValueError("watchdog bounds must be >= 0 (0 turns a check off)")


@dataclass
class Watchdog:
    """Counts stalls of the control thread and of inference; the core decides what to do."""

    config: WatchdogConfig = field(default_factory=WatchdogConfig)
    trips: dict[str, int] = field(default_factory=lambda: {CONTROL: 0, INFERENCE: 0})
    last_trip: str = ""  # e.g. "control thread stalled 0.41 s", for logs and diagnostics
    last_trip_at: float | None = None

    def control_gap(self, gap_s: float, now: float) -> bool:
        """The previous tick was `gap_s` ago: True (counted) if that is beyond the bound."""
        bound = self.config.control_stall_s
        if bound <= 0 or gap_s <= bound:
            return False
        return self._trip(CONTROL, f"control thread stalled {gap_s:.2f} s (bound {bound:g} s)", now)

    def inference_age(self, age_s: float, now: float) -> bool:
        """The inference in flight was requested `age_s` ago: True (counted) if beyond the bound."""
        bound = self.config.inference_stall_s
        if bound <= 0 or age_s <= bound:
            return False
        return self._trip(INFERENCE, f"inference in flight for {age_s:.2f} s (bound {bound:g} s)", now)

    def _trip(self, kind: str, message: str, now: float) -> bool:
        self.trips[kind] += 1
        self.last_trip, self.last_trip_at = message, now
        return True


@dataclass
class EStop:
    """Latched emergency stop. Not thread-safe: the node calls it under its core lock."""

    hold_s: float = 0.5  # repeat the last command this long after engaging, then send nothing
    engaged: bool = False
    reason: str = ""
    since: float | None = None
    engagements: int = 0
    input_engaged: bool = False  # the e-stop topic's last value (a reset waits for it to clear)
    hold_command: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.hold_s < 0:
            raise ValueError("estop hold_s must be >= 0")

    def engage(self, reason: str, now: float, commanding: np.ndarray | None) -> bool:
        """Latch; `commanding` is the command the actor was sending (None if it sent nothing).
        True if this engaged it (False: it already was)."""
        if self.engaged:
            return False
        self.engaged, self.reason, self.since = True, reason or "e-stop", now
        self.hold_command = None if commanding is None else np.array(commanding, np.float64)
        self.engagements += 1
        return True

    def set_input(self, engaged: bool, now: float, commanding: np.ndarray | None, source: str) -> bool:
        """The e-stop topic said `engaged`; True engages (latched), False only allows a reset."""
        self.input_engaged = bool(engaged)
        return self.engage(f"{source} engaged", now, commanding) if engaged else False

    def reset(self) -> str:
        """Clear the latch (an explicit operator action); returns why it had engaged."""
        if not self.engaged:
            raise TransitionError("e-stop is not engaged")
        if self.input_engaged:
            raise TransitionError("cannot reset the e-stop: its input still says engaged (release it first)")
        reason = self.reason
        self.engaged, self.reason, self.since, self.hold_command = False, "", None, None
        return reason

    def command(self, now: float) -> np.ndarray | None:
        """What to send while engaged: the held command during `hold_s`, then nothing."""
        if not self.engaged or self.hold_command is None or self.since is None:
            return None
        return self.hold_command if 0.0 <= now - self.since < self.hold_s else None


class StallWatch:
    """A thread that notices a heartbeat stopping while it has stopped: `on_stall(age_s)` once per
    stall, when `last_beat()` (a `time.monotonic` time, None before the first beat) is more than
    `bound_s` old; checked every `period_s`. A plain thread (a wake-up costs microseconds), so
    no other callback of the process can delay it; only the GIL is shared."""

    def __init__(
        self,
        last_beat: Callable[[], float | None],
        bound_s: float,
        on_stall: Callable[[float], None],
        period_s: float = 0.05,
        name: str = "lwd-stall-watch",
    ):
        if bound_s <= 0 or period_s <= 0:
            raise ValueError("bound_s and period_s must be > 0")
        self.last_beat = last_beat
        self.bound_s = bound_s
        self.on_stall = on_stall
        self.period_s = period_s
        self.stalls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        reported = False
        while not self._stop.wait(self.period_s):
            last = self.last_beat()
            age = 0.0 if last is None else time.monotonic() - last
            stalled = last is not None and age > self.bound_s
            if stalled and not reported:
                self.stalls += 1
                try:
                    self.on_stall(age)
                except Exception:  # noqa: BLE001 - reporting must never end the watch
                    pass
            reported = stalled
