"""The actor node's control thread and its tick: the core's step, wired to the node's topics.

On wall time a `ControlLoop` thread on absolute deadlines (optional SCHED_FIFO) with a `StallWatch`
that reports a stalled control thread at once; with `use_sim_time` a `SimTimeLoop` woken by /clock.
Each tick takes the newest synchronised inputs and the inference results, runs `ActorCore.tick`
under the node's lock (and publishes its command under it), then submits the next request,
publishes the new chunks and the status, and logs holds, watchdog trips and episode ends.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from lwd_actor.core.control_loop import ControlLoop
from lwd_actor.core.watchdog import StallWatch
from lwd_actor.sim_time_loop import SimTimeLoop

if TYPE_CHECKING:
    from lwd_actor.actor_node import ActorNode


class NodeControl:
    """Starts and stops the node's control thread; `tick` is one control step."""

    def __init__(self, node: ActorNode):
        self._node = node
        self._loop: ControlLoop | None = None  # wall time
        self._sim: SimTimeLoop | None = None  # use_sim_time
        self._stall_watch: StallWatch | None = None  # wall time: the control thread's stall watch
        self._period = 0.0
        self.tick_overruns = 0
        self.last_tick_mono: float | None = None  # monotonic time of the last control tick

    @property
    def on_wall_time(self) -> bool:
        """A wall-time control thread runs (on /clock a paused simulator stops ticks, rightly)."""
        return self._loop is not None

    def start(self, hz: float) -> str:
        """Start the control thread at `hz` (the node is active); returns how it runs, for the log."""
        node = self._node
        self._period = 1.0 / hz
        if node.get_parameter("use_sim_time").value:
            self._sim = SimTimeLoop(
                node.get_clock(),
                hz,
                self.tick,
                running=lambda: node._active and node.context.ok(),
                on_error=lambda e: node.get_logger().error(f"control tick failed: {e!r}"),
            )
            self._sim.start()
            return "control thread on /clock"
        self._loop = ControlLoop(
            hz,
            self.tick,
            realtime_priority=int(node.p("realtime_priority")),
            on_error=lambda e: node.get_logger().error(f"control tick failed: {e!r}"),
        )
        self._loop.start()
        bound = float(node.p("watchdog_control_stall_s"))
        if bound > 0:
            self._stall_watch = StallWatch(lambda: self.last_tick_mono, bound, node.safety.on_stall)
            self._stall_watch.start()
        return "control thread on wall time"

    def stop(self) -> None:
        """Stop the control thread (the node is no longer active)."""
        if self._stall_watch is not None:
            self._stall_watch.stop()
            self._stall_watch = None
        if self._loop is not None:
            self._loop.stop()
            self._loop = None
        if self._sim is not None:
            self._sim.join(timeout=2.0)
            self._sim = None

    def tick_stats(self) -> dict[str, float]:
        loop = self._loop
        stats = loop.stats() if loop is not None else {}
        stats.pop("missed_ticks", None)  # the core counts missed steps for both timer kinds
        if loop is not None and loop.priority_note:
            stats["scheduling"] = loop.priority_note
        return stats

    def tick(self) -> None:
        t0 = time.perf_counter()
        node = self._node
        core, worker = node._core, node._worker
        if not node._active or core is None or worker is None:
            return
        log, outputs, sync = node.get_logger(), node.outputs, node.inputs.sync
        now = node.now_s()
        self.last_tick_mono = time.monotonic()
        obs = sync.latest()
        with node._lock:
            res = core.tick(now, obs, worker.poll(), sync.newest_stamps())
            if res.command is not None:
                # Under the lock: an e-stop latched after this tick's step (its callback takes the
                # lock) comes after this command on the wire; no command of before it follows it.
                outputs.command(res.command)
        if res.request is not None:
            worker.submit(res.request)
        for chunk in res.new_chunks:
            outputs.chunk(chunk)
        if res.stale_inputs:
            why = sync.explain(now, core.stale_guard.max_age_s)
            log.warning(
                f"holding: stale inputs {list(res.stale_inputs)}" + (f" ({why})" if why else ""),
                throttle_duration_sec=2.0,
            )
        if res.watchdog:
            log.error(
                f"watchdog: {res.watchdog}; holding, re-planning from a fresh chunk",
                throttle_duration_sec=2.0,
            )
        if res.intervention_changed:
            outputs.intervention(core.pedal, now)
        if res.policy_fault:
            node.safety.after_estop(res.ended)  # logs it once, ends the episode's status, ERROR diagnostics
        elif res.ended is not None:
            node.policy_updates.request()
            log.warning(f"episode {core.fsm.episode_id} ended: {res.ended.reason} ({res.ended.note})")
        outputs.episode_status(res)
        if time.perf_counter() - t0 > self._period:
            self.tick_overruns += 1
