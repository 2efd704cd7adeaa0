"""The actor's executors: the e-stop on a thread of its own.

`main` (actor_node) serves the node with two single-threaded executors: one for the inputs,
episode services and status, and one, on its own thread, for the `safety_group` (the e-stop
topic and services), so a slow input callback (a large frame being decoded) never delays an
e-stop (docs/actor.md, "Threading"). Two single-threaded executors, not a MultiThreadedExecutor,
because that one cost 15-28 ms of p99 control jitter when measured.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from rclpy.callback_groups import CallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

if TYPE_CHECKING:
    from lwd_actor.actor_node import ActorNode


class GroupExecutor(SingleThreadedExecutor):
    """A SingleThreadedExecutor that serves only the callback groups `serves` accepts.

    Two of them on two threads split one node: `main` serves the actor's `safety_group` on one
    (`SafetyThread`) and everything else on the other, so a slow input callback never delays the
    e-stop. rclpy gives a node one executor (`add_node` takes it from any other), so the second
    one serves the node through `share`. The node has no guard conditions, whose ready check
    does not go through `can_execute`.
    """

    def __init__(self, serves: Callable[[CallbackGroup | None], bool], *, context=None):
        super().__init__(context=context)
        self._serves = serves
        self._shared: list[Node] = []

    def can_execute(self, entity) -> bool:
        return self._serves(entity.callback_group) and super().can_execute(entity)

    def share(self, node: Node) -> None:
        """Serve `node`'s accepted groups too, without becoming its executor."""
        self._shared.append(node)
        self.wake()

    def get_nodes(self) -> list[Node]:
        nodes = super().get_nodes()
        return nodes + [n for n in self._shared if n not in nodes]


class SafetyThread:
    """The actor's `safety_group` (the e-stop topic and services) on its own executor and thread:
    what the sensor callbacks do cannot delay an e-stop (docs/actor.md). Idle, it waits: no
    periodic wake-ups (the node wakes it when the group's entities change)."""

    def __init__(self, node: ActorNode):
        self.executor = GroupExecutor(lambda group: group is node.safety_group, context=node.context)
        self.executor.share(node)
        node.safety_executor = self.executor
        self._node = node
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lwd-safety", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        log = self._node.get_logger()
        while not self._stop.is_set() and self.executor.context.ok():
            try:
                self.executor.spin_once(timeout_sec=1.0)
            except ExternalShutdownException:
                return
            except Exception as exc:  # noqa: BLE001 - a failed callback must not end the e-stop's thread
                if self._stop.is_set():
                    return
                log.error(f"safety thread: callback failed: {exc!r}", throttle_duration_sec=2.0)
                self._stop.wait(0.01)  # never a busy loop

    def stop(self, timeout: float) -> bool:
        """Stop serving within `timeout` s (a callback running now finishes first); True if it did."""
        self._stop.set()
        self._node.safety_executor = None
        self.executor.shutdown(timeout_sec=timeout)  # ends the wait of spin_once at once
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)
        return not self._thread.is_alive()
