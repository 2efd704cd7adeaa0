"""Policy swaps at episode boundaries: ask a provider for a newer policy, load and check it.

The provider is the integration point for the transport's fetcher: called with
the running version, it returns a newer verified file (`PolicyUpdate`, or a
bare path whose ONNX metadata names the version) or None. A file that fails to
load is refused, reported, and never tried again, so a broken checkpoint costs
one log line, not one per episode; the current policy stays in charge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lwd_actor.core.policy_runtime import OnnxPolicy, PolicyError, RuntimeConfig


@dataclass(frozen=True)
class PolicyUpdate:
    """A newer verified policy file and the version under which it was published."""

    path: str
    version: str  # e.g. the PolicyStore version "v000042"; recorded in episodes


PolicyProvider = Callable[[str], "PolicyUpdate | str | None"]


class PolicySwitcher:
    def __init__(self, provider: PolicyProvider | None, runtime: RuntimeConfig | None = None,
                 report: Callable[[str, bool, str], None] | None = None,
                 log: Callable[[str], None] | None = None):
        self.provider = provider
        self.runtime = runtime or RuntimeConfig()
        self.report = report  # (version, ok, message), e.g. BridgeClient.report_policy_loaded
        self.log = log or (lambda msg: None)
        self.refused: set[str] = set()

    def newer_policy(self, current_version: str) -> OnnxPolicy | None:
        """A loaded, contract-checked newer policy, or None (nothing newer, provider failed, refused)."""
        if self.provider is None:
            return None
        try:
            update = self.provider(current_version)
        except Exception as exc:  # noqa: BLE001 - a failing fetcher must not block episodes
            self.log(f"policy provider failed: {exc}")
            return None
        if not update:
            return None
        path, version = (update.path, update.version) if isinstance(update, PolicyUpdate) else (str(update), None)
        key = version or path
        if key in self.refused:
            return None
        try:
            policy = OnnxPolicy(path, self.runtime, version)
        except PolicyError as exc:
            self.refused.add(key)
            self.log(f"refusing new policy {key}, keeping {current_version}: {exc}")
            if self.report is not None:
                self.report(key, False, str(exc))
            return None
        return policy

    def loaded(self, policy: OnnxPolicy) -> None:
        if self.report is not None:
            self.report(policy.version, True, "")
