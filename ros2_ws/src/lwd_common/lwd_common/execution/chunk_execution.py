"""One robot's chunk execution, ROS-free: when to ask for the next chunk, which control step its
row 0 belongs to, when it arrives and how it is stitched onto the timeline.

The actor (`core.actor.ActorCore`) and the simulator's held-out evaluation
(`lwd_sim.env.evaluate`, execution "actor") both drive the policy through this class, so a
held-out success figure is what a robot with the same scheduler settings would do.

Timing, one convention everywhere. Tick `t` first stitches the chunks that arrived, then takes
its target (`pop(t)`), then asks for the next chunk (`request(t, ...)`) on the observation of
step t when `request_threshold` planned steps or fewer remain from step t + 1. The chunk's row 0
belongs to step t + 1 (`ChunkRequest.start_step`). A chunk `d` ticks late (`delay`) is stitched
before tick t + 1 + d takes its target: its first d rows are in the past then and are dropped,
and the robot executed d rows of the old plan meanwhile (those are the rows real-time chunking
must keep: `rtc_inputs`). On the robot, inference of latency L is taken by the first tick at or
after it finished, tick t + ceil(L * hz), so d = ceil(L * hz) - 1 (`delay_ticks_for_latency`):
a chunk inferred within one control period is in time (d = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lwd_common.execution.scheduler import ChunkScheduler, ScheduledTarget, SchedulerConfig


def delay_ticks_for_latency(latency_s: float, control_hz: float) -> int:
    """Ticks late a chunk is when its inference takes `latency_s` (see the module docstring)."""
    if latency_s < 0 or control_hz <= 0:
        raise ValueError(f"latency_s must be >= 0 and control_hz > 0, got {latency_s}, {control_hz}")
    return max(0, math.ceil(latency_s * control_hz - 1e-9) - 1)


@dataclass(frozen=True)
class ChunkRequest:
    """What to ask the policy for, made after tick `step` took its target."""

    step: int  # the tick (and observation step) that made the request
    start_step: int  # control step of the chunk's row 0: step + 1
    prefix: np.ndarray  # float32 [H, J]: the planned targets of steps start_step .. start_step+H-1 (0 beyond)
    prefix_len: int  # how many rows of `prefix` are planned (the timeline's `remaining(start_step)`)
    delay: int  # ticks the chunk is expected late: rows of `prefix` executed before it arrives


class ChunkExecution:
    """Not thread-safe: owned by the control loop (or one simulated robot). One request in flight."""

    def __init__(self, config: SchedulerConfig, horizon: int, num_joints: int):
        if horizon < 1 or num_joints < 1:
            raise ValueError(f"horizon and num_joints must be >= 1, got {horizon}, {num_joints}")
        self.scheduler = ChunkScheduler(config)
        self.horizon = horizon
        self.num_joints = num_joints
        self.in_flight: ChunkRequest | None = None
        self.last_delay = 0  # ticks late the last stitched chunk was (the actor's estimate for the next)
        self.dry_ticks = 0  # ticks with no target while a chunk stitched since the last clear() ran out
        self._supplied = False  # a chunk was stitched since clear()

    @property
    def config(self) -> SchedulerConfig:
        return self.scheduler.config

    def clear(self) -> None:
        """Forget the plan and the request in flight (takeover, episode boundary, re-plan)."""
        self.scheduler.clear()
        self.in_flight = None
        self._supplied = False

    def answered(self) -> None:
        """The request in flight was answered (a chunk or a failure): another may be made."""
        self.in_flight = None

    def stitch(self, start_step: int, actions: np.ndarray, chunk_id: int, step: int) -> int:
        """Stitch a chunk whose row 0 belongs to `start_step`, arriving before tick `step` takes
        its target (rows already in the past are dropped). Returns the rows kept."""
        self.last_delay = max(0, step - start_step)
        self._supplied = True
        return self.scheduler.add_chunk(start_step, actions, chunk_id, now_step=step)

    def pop(self, step: int) -> ScheduledTarget | None:
        """Tick `step`'s target; None if the timeline is dry (the caller holds its last command)."""
        target = self.scheduler.pop(step)
        if target is None and self._supplied:
            self.dry_ticks += 1
        return target

    def wants_chunk(self, step: int) -> bool:
        """After tick `step` took its target: is the plan from step + 1 on short enough to ask?"""
        return self.in_flight is None and self.scheduler.needs_chunk(step + 1)

    def request(self, step: int, delay: int | None = None) -> ChunkRequest | None:
        """The request tick `step` makes (after its target), or None; it is then in flight.
        `delay`: ticks the chunk is expected late (default: what the last chunk was)."""
        if not self.wants_chunk(step):
            return None
        start = step + 1
        prefix, prefix_len = self.planned(start)
        d = self.last_delay if delay is None else int(delay)
        self.in_flight = ChunkRequest(step, start, prefix, prefix_len, d)
        return self.in_flight

    def planned(self, start_step: int) -> tuple[np.ndarray, int]:
        """The timeline's targets of steps start_step .. start_step+H-1 as float32 [H, J] (zero
        rows beyond what is planned) and how many rows are planned."""
        n = min(self.scheduler.remaining(start_step), self.horizon)
        prefix = np.zeros((self.horizon, self.num_joints), np.float32)
        for k in range(n):
            prefix[k] = self.scheduler.target_at(start_step + k)
        return prefix, n
