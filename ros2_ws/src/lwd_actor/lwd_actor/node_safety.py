"""The actor node's e-stop reaction and stall report, on the safety thread (docs/actor.md).

The `estop` topic (True latches the e-stop) and the `~/estop` service engage it through here:
under the node's lock the held command goes out at once, not at the next tick; then the engagement
is logged, the policy fetcher asked (an episode was aborted), the episode status and /diagnostics
published. A policy fault seen by the tick ends the same way. The wall-time `StallWatch` reports a
stalled control thread here at once, not at the next 1 Hz status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from std_msgs.msg import Bool

from lwd_actor.core.actor import ActorCore
from lwd_actor.core.episode_fsm import Ending

if TYPE_CHECKING:
    from lwd_actor.actor_node import ActorNode


class NodeSafety:
    """What the node does when the e-stop engages, and when the control thread stalls."""

    def __init__(self, node: ActorNode):
        self._node = node

    def on_input(self, msg: Bool) -> None:
        """The `estop` topic (the node's safety group): True latches the e-stop."""
        node = self._node
        with node._lock:
            core = node._core
            if core is None:
                return
            was = core.estop.engaged
            now = node.now_s()
            ending = core.set_estop_input(bool(msg.data), now)
            engaged_now = core.estop.engaged and not was
            if engaged_now:
                self.hold_now(core, now)
        if engaged_now:
            self.after_estop(ending)

    def hold_now(self, core: ActorCore, now: float) -> None:
        """The e-stop has just engaged (called under the lock, on the safety thread): the command
        output changes now, not at the next tick. The held command goes out at once (nothing if the
        actor was not commanding); every tick after this sends the hold, then nothing."""
        held = core.estop.command(now)
        if held is not None and self._node._active:
            self._node.outputs.command(held)

    def after_estop(self, ending: Ending | None) -> None:
        node = self._node
        core = node._core
        if core is None:
            return
        aborted = (
            f"; episode {core.fsm.episode_id} aborted (failure, {ending.reason})"
            if ending is not None
            else ""
        )
        node.get_logger().error(
            f"E-STOP engaged: {core.estop.reason}{aborted}; holding "
            f"{core.estop.hold_s:g} s, then no commands until actor/reset_estop"
        )
        if ending is not None:
            node.policy_updates.request()
        node.outputs.episode_status(force=True)
        node.diagnostics.publish()

    def on_stall(self, age_s: float) -> None:
        """`StallWatch` (its own thread): the wall-time control thread has not ticked for longer than
        `watchdog_control_stall_s`, now: logged and /diagnostics ERROR at once, not at the next 1 Hz
        status (which runs with the input callbacks). The core's watchdog holds and re-plans when the
        ticks resume; until then nothing is published."""
        node = self._node
        node.get_logger().error(
            f"watchdog: control thread stalled: no tick for {age_s * 1e3:.0f} ms "
            f"(watchdog_control_stall_s {node.p('watchdog_control_stall_s'):g})"
        )
        node.diagnostics.publish()
