"""The actor node's wiring of policy updates: `core.policy_switch.PolicySwitch` decides, this acts.

The fetcher is asked for a newer policy at activation and at every episode end (never blocking);
at an episode start a prepared newer policy is swapped in if the switch says so (under the node's
lock): the inference worker and the core take it, `policy_status` is published. Which execution
provider runs a policy is logged once, and again only when that changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwd_actor.core.policy_runtime import OnnxPolicy

if TYPE_CHECKING:
    from lwd_actor.actor_node import ActorNode


class NodePolicy:
    """Asks for policy updates and swaps them in at episode starts."""

    def __init__(self, node: ActorNode):
        self._node = node
        self._provider_logged: tuple[str, str, str] | None = None

    def log_provider(self, policy: OnnxPolicy) -> None:
        """Say once which execution provider runs the policy and, if not the preferred one, why
        (again only when that changes, e.g. a swapped-in policy lands on another provider)."""
        choice = policy.provider_choice
        key = (choice.active, choice.preferred, choice.why)
        if key == self._provider_logged:
            return
        self._provider_logged = key
        log = self._node.get_logger()
        if choice.fallback:
            log.warning(
                f"inference runs on {choice.active}: {choice.preferred} was preferred (prefer_cuda) "
                f"but is not used: {choice.why}"
            )
        else:
            log.info(
                f"inference runs on {choice.active}"
                + ("" if self._node.p("prefer_cuda") else " (prefer_cuda false)")
            )

    def request(self) -> None:
        """Activation or episode end: let the fetcher look for a newer policy (never blocks)."""
        switch = self._node._switch
        if switch is not None:
            switch.request()

    def swap_at_start(self) -> str:
        """At an episode start: run the prepared newer policy if `PolicySwitch` says so. Returns a note."""
        node = self._node
        core, switch = node._core, node._switch
        with node._lock:
            if core is None or switch is None or node._worker is None:
                return ""
            policy = switch.at_boundary(core.fsm.can_swap_policy, takeover=core.pedal)
            if policy is None:
                return ""
            node._worker.set_policy(policy)
            core.set_policy_version(policy.version)
            node._policy = policy
        node.get_logger().info(f"policy swapped to {policy.version} ({policy.provider})")
        self.log_provider(policy)
        node.outputs.policy_status()
        switch.swapped(policy)
        return f"; policy {policy.version}"
