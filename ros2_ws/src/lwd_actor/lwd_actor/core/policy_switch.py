"""The actor's policy-update decisions: what to prepare, when to swap, what to give up on (ROS-free).

Downloads belong to the `PolicySource` (the transport's `PolicyFetcher`): the
actor calls `request()` at activation and at every episode end, the source
fetches in the background and hands each newer verified file to `offer()` on
its own thread, where it is loaded and contract-checked, so neither the control
loop nor a service ever waits on the network or on ONNX Runtime. The swap
itself happens only in `at_boundary()`: an episode start, no takeover in
progress, and a prepared policy newer than the one running. A file that fails
to load is rolled back at the source (never fetched again, the bridge is told)
and the running policy stays in charge: a broken checkpoint costs one log line.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Protocol

from lwd_actor.core.policy_runtime import OnnxPolicy, PolicyError, RuntimeConfig
from lwd_common.policy_store import is_newer


class PolicyFile(Protocol):
    """A verified policy file and the version it was published under (the transport's `LocalPolicy`)."""

    @property
    def path(self) -> str | os.PathLike[str]: ...

    @property
    def version(self) -> str: ...


class PolicySource(Protocol):
    """Where newer policies come from: the transport's `PolicyFetcher` fits as is."""

    def prefetch(
        self, current_version: str | None, on_ready: Callable[[PolicyFile], None] | None = None
    ) -> None:
        """Look for a policy newer than `current_version` in the background; call `on_ready` with it."""

    def rollback_policy(self, bad_version: str, message: str = ...) -> object:
        """`bad_version` could not be loaded: never offer it again, tell the bridge."""

    def report_policy_loaded(self, version: str, ok: bool = True, message: str = "") -> None:
        """Tell the bridge which policy this robot now runs."""


def _newer(candidate: str, current: str) -> bool:
    try:
        return is_newer(candidate, current)
    except ValueError:  # not a published version ("v000042"): any other name counts as a change
        return candidate != current


class PolicySwitch:
    """Decides whether and when the actor swaps policies; `actor_node.py` only wires it."""

    def __init__(
        self,
        current_version: str,
        source: PolicySource | None,
        runtime: RuntimeConfig | None = None,
        info: Callable[[str], None] | None = None,
        error: Callable[[str], None] | None = None,
    ):
        self.current_version = current_version  # the policy running now
        self.source = source
        self.runtime = runtime or RuntimeConfig()
        self.info = info or (lambda msg: None)
        self.error = error or (lambda msg: None)
        self.refused: set[str] = set()  # versions that failed to load here
        self._lock = threading.Lock()  # `offer` runs on the source's thread, `at_boundary` on the caller's
        self._ready: OnnxPolicy | None = None  # loaded and checked, waiting for the next boundary

    @property
    def ready_version(self) -> str | None:
        with self._lock:
            return self._ready.version if self._ready is not None else None

    def request(self) -> None:
        """Ask the source for anything newer than what runs or waits (activation, episode end); never blocks."""
        if self.source is None:
            return
        try:
            self.source.prefetch(self.ready_version or self.current_version, self._on_ready)
        except Exception as exc:  # noqa: BLE001 - a failing source must not disturb the episode
            self.error(f"policy prefetch request failed: {exc}")

    def _on_ready(self, update: PolicyFile) -> None:
        """The source's callback: `offer`, whose result the source has no use for."""
        self.offer(update)

    def offer(self, update: PolicyFile) -> OnnxPolicy | None:
        """A newer verified file arrived: load and check it now, keep it for the next boundary.

        Returns the prepared policy, or None when it is not newer than what runs or waits,
        was refused before, or fails to load (then it is rolled back at the source).
        """
        version = update.version
        if version in self.refused or not _newer(version, self.ready_version or self.current_version):
            return None
        try:
            policy = OnnxPolicy(update.path, self.runtime, version)
        except PolicyError as exc:
            self.refused.add(version)
            self.error(f"refusing new policy {version}, keeping {self.current_version}: {exc}")
            if self.source is not None:
                self.source.rollback_policy(version, str(exc))
            return None
        with self._lock:
            if self._ready is not None and not _newer(version, self._ready.version):
                return None  # a newer one got ready meanwhile
            self._ready = policy
        self.info(f"policy {version} ready; it takes over at the next episode start")
        return policy

    def at_boundary(self, can_swap: bool, takeover: bool) -> OnnxPolicy | None:
        """At an episode start: the policy to run from now on, or None to keep the current one.

        Swaps only where the episode state allows it (`can_swap`: no episode running or
        awaiting its label) and never while the operator has taken over; the prepared
        policy then waits for the next boundary.
        """
        if not can_swap or takeover:
            return None
        with self._lock:
            policy, self._ready = self._ready, None
        if policy is None or not _newer(policy.version, self.current_version):
            return None
        self.current_version = policy.version
        return policy

    def swapped(self, policy: OnnxPolicy) -> None:
        """The actor runs `policy` now: tell the source (the bridge's fleet status)."""
        if self.source is not None:
            self.source.report_policy_loaded(policy.version, True, "")
