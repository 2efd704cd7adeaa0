"""The actor node's services: episodes (`~/start_episode`, `~/stop_episode`, `~/label_episode`) and
the e-stop (`~/estop`, `~/reset_estop`).

Each runs its episode transition on the core under the node's lock and answers with what happened
(a refused transition is `accepted: false` with the reason). The episode services share one
mutually exclusive group; the e-stop services are the node's `safety_group`, on the safety thread.
A start may swap in a prepared newer policy first (`node_policy`) and checks the instruction
against the policy's (`UnknownInstructions`: warn once, or refuse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwd_actor.core.episode_fsm import EpisodeState, TransitionError
from lwd_actor.core.instructions import UnknownInstructions
from lwd_common.episode import new_episode_id
from lwd_msgs.srv import LabelEpisode, StartEpisode, StopEpisode

if TYPE_CHECKING:
    from lwd_actor.actor_node import ActorNode


class NodeServices:
    """The node's episode and e-stop services, and the instruction check of an episode start."""

    def __init__(self, node: ActorNode):
        self._node = node
        self.instructions = UnknownInstructions()  # replaced at configure (`unknown_instruction`)
        self.unknown_running = ""  # the running episode's instruction, if its policy does not know it

    def create(self, episodes, safety) -> list:
        """The episode services on the `episodes` group, the e-stop's on `safety`."""
        node = self._node
        return [
            node.create_service(StartEpisode, "~/start_episode", self.start, callback_group=episodes),
            node.create_service(StopEpisode, "~/stop_episode", self.stop, callback_group=episodes),
            node.create_service(LabelEpisode, "~/label_episode", self.label, callback_group=episodes),
            # No std_srvs in this install: StopEpisode's `reason` says why (engage) or who reset; `abort` is ignored.
            node.create_service(StopEpisode, "~/estop", self.estop, callback_group=safety),
            node.create_service(StopEpisode, "~/reset_estop", self.reset_estop, callback_group=safety),
        ]

    def start(self, req: StartEpisode.Request, resp: StartEpisode.Response) -> StartEpisode.Response:
        node = self._node
        core = node._core
        if core is None or not node._active:
            resp.accepted, resp.message = False, "actor is not active"
            return resp
        note = node.policy_updates.swap_at_start()
        policy = node._policy
        verdict = (
            self.instructions.check(req.instruction, policy.signature.instructions, policy.version)
            if policy is not None
            else None
        )
        log = node.get_logger()
        if verdict is not None and verdict.refuse:
            log.warning(verdict.message)
            resp.accepted, resp.message = False, verdict.message
            return resp
        episode_id = new_episode_id(core.config.robot_id)
        try:
            with node._lock:
                core.start_episode(episode_id, req.task, req.instruction, node.now_s())
        except TransitionError as exc:
            resp.accepted, resp.message = False, str(exc)
            return resp
        resp.accepted, resp.episode_id = True, episode_id
        resp.message = f"started {req.task}{note}"
        log.info(f"episode {episode_id} started: {req.task} / {req.instruction!r}")
        self.unknown_running = ""
        if verdict is not None and not verdict.known:
            self.instructions.started(verdict)
            self.unknown_running = req.instruction
            resp.message += f"; {verdict.message}"
            if verdict.first_time:
                log.warning(f"UNKNOWN INSTRUCTION: {verdict.message} (logged once per instruction)")
        node.outputs.episode_status()
        return resp

    def _transition(self, resp, transition):
        """Run an episode transition under the lock and fill `resp`; returns (accepted, result)."""
        core = self._node._core
        if core is None:
            resp.accepted, resp.message = False, "actor is not configured"
            return False, None
        try:
            with self._node._lock:
                episode_id = core.fsm.episode_id
                result = transition(core)
        except TransitionError as exc:
            resp.accepted, resp.message = False, str(exc)
            return False, None
        resp.accepted, resp.episode_id = True, episode_id
        return True, result

    def stop(self, req: StopEpisode.Request, resp: StopEpisode.Response) -> StopEpisode.Response:
        node = self._node
        now = node.now_s()
        ok, ending = self._transition(resp, lambda core: core.stop_episode(req.abort, req.reason, now))
        if not ok:
            return resp
        resp.message = "aborted (failure)" if ending is not None else "stopped; awaiting label"
        core = node._core
        left = core.fsm.label_deadline_in_s(now) if core is not None else None
        if ending is not None:
            node.policy_updates.request()
        elif left is not None:
            resp.message += f" (stored without a label in {left:.0f} s: {core.fsm.label_timeout_reason})"
        node.outputs.episode_status()
        return resp

    def label(self, req: LabelEpisode.Request, resp: LabelEpisode.Response) -> LabelEpisode.Response:
        ok, ending = self._transition(resp, lambda core: core.label_episode(req.success, req.note))
        if not ok:
            return resp
        resp.message = f"labelled {ending.label.value}"
        self._node.policy_updates.request()
        self._node.outputs.episode_status()
        return resp

    def estop(self, req: StopEpisode.Request, resp: StopEpisode.Response) -> StopEpisode.Response:
        """Engage the e-stop (latched); `reason` is recorded. Accepted even if it already was engaged."""
        node = self._node
        with node._lock:
            core = node._core
            if core is None:
                resp.accepted, resp.message = False, "actor is not configured"
                return resp
            episode_id = core.fsm.episode_id if core.state is EpisodeState.RUNNING else ""
            was = core.estop.engaged
            now = node.now_s()
            ending = core.engage_estop(req.reason or "estop service", now)
            if not was:
                node.safety.hold_now(core, now)
        resp.accepted, resp.episode_id = True, episode_id if ending is not None else ""
        resp.message = (
            f"e-stop already engaged ({core.estop.reason})"
            if was
            else "e-stop engaged" + (f"; episode {episode_id} aborted" if ending is not None else "")
        )
        if not was:
            node.safety.after_estop(ending)
        return resp

    def reset_estop(self, req: StopEpisode.Request, resp: StopEpisode.Response) -> StopEpisode.Response:
        """Clear the e-stop (the explicit operator action); refused while the e-stop input is engaged."""
        ok, reason = self._transition(resp, lambda core: core.reset_estop())
        resp.episode_id = ""
        if ok:
            resp.message = f"e-stop reset (it was: {reason})"
            self._node.get_logger().warning(
                f"e-stop reset{f' by {req.reason}' if req.reason else ''} (it was: {reason})"
            )
            self._node.diagnostics.publish()
        return resp
