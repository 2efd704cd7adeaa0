"""The actor node's `/diagnostics`: its counters and state, and the level they add up to.

Published by the 1 Hz status timer (with the forced `episode_status`), at every e-stop, at an
e-stop reset and when the stall watch reports a stalled control thread. ERROR while the e-stop is
engaged or the wall-time control thread is stalled now; WARN on drops, a dry timeline, a full
spool, stale inputs, inference off the preferred provider, an episode running an instruction its
policy does not know, watchdog trips and an episode awaiting its label; else OK.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from lwd_actor.core.episode_fsm import EpisodeState

if TYPE_CHECKING:
    from lwd_actor.actor_node import ActorNode


class NodeDiagnostics:
    """The node's `/diagnostics` publisher and 1 Hz status timer, and the values they report."""

    def __init__(self, node: ActorNode):
        self._node = node

    def create_publisher(self):
        self._pub = self._node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        return self._pub

    def create_timer(self, group):
        """The 1 Hz status: the episode status (forced) and the diagnostics."""
        return self._node.create_timer(1.0, self.status_tick, callback_group=group)

    def status_tick(self) -> None:
        self._node.outputs.episode_status(force=True)
        self.publish()

    def publish(self) -> None:
        node = self._node
        core, worker, rec = node._core, node._worker, node._recorder
        if core is None or worker is None or rec is None:
            return
        inputs, instructions = node.inputs, node.servers.instructions
        c = core.counters
        lat = np.asarray(worker.latencies_ms) if worker.latencies_ms else np.zeros(1)
        values = {
            "state": core.state.name.lower(),
            "active": node._active,
            "policy_version": core.policy_version,
            "ticks": c.ticks,
            "missed_ticks": c.missed_ticks,
            "policy_steps": c.policy_steps,
            "teleop_steps": c.teleop_steps,
            "hold_steps": sum(c.hold_steps.values()),
            **{f"hold_{k}": v for k, v in c.hold_steps.items()},
            "timeline_dry_events": core.scheduler.dry_events,
            "stale_chunks_discarded": c.stale_chunks,
            "failed_inferences": c.failed_inferences,
            "stale_events": c.stale_events,
            "inference_superseded": worker.superseded,
            "inference_p50_ms": float(np.percentile(lat, 50)),
            "inference_p99_ms": float(np.percentile(lat, 99)),
            "position_clamps": core.safety.position_clamps,
            "velocity_clamps": core.safety.velocity_clamps,
            "nonfinite_holds": core.safety.nonfinite_holds,
            "input_errors": inputs.input_errors,
            **{f"frames_received_{cam}": n for cam, n in inputs.frames_received.items()},
            "unsynced_sets": inputs.sync.unsynced_sets,
            "recorder_dropped_steps": rec.dropped_steps,
            "recorder_pending": rec.pending,
            "recorder_errors": rec.errors,
            "tick_overruns": node.control.tick_overruns,
            **node.control.tick_stats(),
            **self.safety_values(),
            **self.provider_values(),
            "unknown_instruction_episodes": instructions.episodes,
            "unknown_instruction_refused": instructions.refused,
            "unknown_instructions": instructions.distinct,
            "unknown_instruction_last": instructions.last,
            **self.spool_values(),
        }
        errors = self.safety_errors(values)
        problems = []
        if rec.dropped_steps or rec.errors:
            problems.append("recorder lost steps")
        if core.scheduler.dry_events:
            problems.append("timeline ran dry")
        if values.get("spool_dropped_episodes") or values.get("spool_over_cap"):
            problems.append(
                f"spool full: {values.get('spool_dropped_episodes')} unsent episodes dropped, "
                f"{values.get('spool_over_cap')} frames over its cap (is the bridge reachable?)"
            )
        if c.hold_steps.get("stale_input"):
            problems.append("stale inputs")
        if node._policy is not None and node._policy.provider_choice.fallback:
            choice = node._policy.provider_choice
            problems.append(f"inference on {choice.active}, not the preferred {choice.preferred}")
        unknown = node.servers.unknown_running
        if unknown and core.state is EpisodeState.RUNNING:
            problems.append(f"episode runs instruction {unknown!r} unknown to its policy")
        if any(core.watchdog.trips.values()):
            problems.append(f"watchdog tripped ({core.watchdog.last_trip})")
        if values.get("awaiting_label_s") is not None:
            problems.append(
                f"episode {core.fsm.episode_id} awaiting its label for {values['awaiting_label_s']} s"
            )
        level = (
            DiagnosticStatus.ERROR if errors else DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        )
        status = DiagnosticStatus(
            level=level,
            name=f"{core.config.robot_id}/actor",
            hardware_id=core.config.robot_id,
            message="; ".join(errors + problems) or "ok",
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = node.get_clock().now().to_msg()
        self._pub.publish(msg)

    def provider_values(self) -> dict[str, object]:
        """The policy's execution provider for diagnostics: what runs, what was preferred, why not."""
        policy = self._node._policy
        if policy is None:
            return {}
        choice = policy.provider_choice
        return {
            "inference_provider": choice.active,
            "inference_provider_preferred": choice.preferred,
            "inference_provider_why": choice.why,
        }

    def spool_values(self) -> dict[str, object]:
        """The bridge sink's spool sizes and drop counters (spool_*), for diagnostics; {} otherwise.

        Here and not only in the bridge's fleet status, because a full spool means the bridge
        is not hearing from this robot."""
        sinks = self._node._sinks
        if sinks is None or sinks.stats is None:
            return {}
        return {k: v for k, v in sinks.stats().items() if k.startswith("spool_")}

    def safety_values(self) -> dict[str, object]:
        """E-stop, watchdog and label-wait state for diagnostics (also read by tests and operators)."""
        node = self._node
        core = node._core
        if core is None:
            return {}
        now = node.now_s()
        stop, dog, fsm = core.estop, core.watchdog, core.fsm
        last_tick = node.control.last_tick_mono
        tick_age = time.monotonic() - last_tick if last_tick is not None else None
        wait, left = fsm.label_wait_s(now), fsm.label_deadline_in_s(now)
        return {
            "estop": stop.engaged,
            "estop_reason": stop.reason,
            "estop_engagements": stop.engagements,
            "estop_input_engaged": stop.input_engaged,
            "policy_faults": core.counters.policy_faults,
            "watchdog_control_trips": dog.trips["control"],
            "watchdog_inference_trips": dog.trips["inference"],
            "watchdog_last_trip": dog.last_trip,
            "last_tick_age_ms": None if tick_age is None else round(tick_age * 1e3, 1),
            "awaiting_label_s": None if wait is None else round(wait, 1),
            "label_deadline_in_s": None if left is None else round(left, 1),
        }

    def safety_errors(self, values: dict[str, object]) -> list[str]:
        """What makes the actor's diagnostics ERROR: an engaged e-stop, a control thread stalled now."""
        node = self._node
        errors = []
        core = node._core
        if core is not None and core.estop.engaged:
            errors.append(f"E-STOP engaged ({core.estop.reason}); reset with actor/reset_estop")
        age = values.get("last_tick_age_ms")
        bound = float(node.p("watchdog_control_stall_s"))
        wall = node.control.on_wall_time  # on /clock a paused simulator stops ticks, rightly
        if node._active and wall and isinstance(age, float) and bound > 0 and age > bound * 1e3:
            errors.append(f"control thread stalled: no tick for {age:.0f} ms")
        return errors
