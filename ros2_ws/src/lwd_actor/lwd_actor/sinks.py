"""Where recorded episodes go, and where newer policies come from (ROS-free wiring).

`sink: directory` stores episodes in a local `EpisodeStore` (the learner's format)
and has no policy source. `sink: bridge` uses the transport's `BridgeClient`: its
`EpisodeStream` (spool + ZeroMQ stream) records the episodes and its
`PolicyFetcher` is the `PolicySource` that `PolicySwitch` asks at episode ends.
With CURVE key files (`lwd_learner_bridge.keys gen`: the robot's `<robot_id>.key_secret`
and the bridge's public `bridge.key`) the link is encrypted and the bridge admits the
robot only if its public key is in its allowlist under the same robot id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lwd_actor.core.policy_switch import PolicySource
from lwd_common.episode import EpisodeSink
from lwd_common.store import DirectorySink, EpisodeStore


@dataclass
class SinkBundle:
    sink: EpisodeSink
    policy_source: PolicySource | None = None
    closer: Callable[[], None] | None = None
    describe: str = ""
    stats: Callable[[], dict[str, Any]] | None = None


def curve_files(secret_key_file: str, bridge_public_key_file: str) -> tuple[str, str]:
    """Both CURVE key files or neither; each must exist. ValueError says what is wrong."""
    if bool(secret_key_file) != bool(bridge_public_key_file):
        raise ValueError(
            "CURVE needs both curve_secret_key_file (this robot's <robot_id>.key_secret) and "
            "bridge_public_key_file (the bridge's public .key), or neither"
        )
    for name, path in (
        ("curve_secret_key_file", secret_key_file),
        ("bridge_public_key_file", bridge_public_key_file),
    ):
        if path and not Path(path).is_file():
            raise ValueError(f"{name} {path} does not exist")
    return secret_key_file, bridge_public_key_file


def make_sink(
    kind: str,
    robot_id: str,
    store_dir: str,
    bridge_endpoint: str,
    spool_dir: str,
    curve_secret_key_file: str = "",
    bridge_public_key_file: str = "",
) -> SinkBundle:
    """The sink (and policy source) of kind `directory` or `bridge`; CURVE keys apply to `bridge`."""
    if kind == "directory":
        if not store_dir:
            raise ValueError("sink 'directory' needs store_dir")
        return SinkBundle(DirectorySink(EpisodeStore(store_dir)), describe=f"directory {store_dir}")
    if kind == "bridge":
        if not (bridge_endpoint and spool_dir):
            raise ValueError("sink 'bridge' needs bridge_endpoint and spool_dir")
        try:
            from lwd_common.transport import BridgeClient, ClientConfig
        except ImportError as exc:  # the transport is a separate component; say what is missing
            raise ValueError(f"sink 'bridge' unavailable: {exc}") from exc
        secret, public = curve_files(curve_secret_key_file, bridge_public_key_file)
        client = BridgeClient(
            ClientConfig(
                endpoint=bridge_endpoint,
                robot_id=robot_id,
                spool_dir=spool_dir,
                curve_secret_key_file=secret,
                server_public_key_file=public,
            )
        )
        security = f", CURVE with {secret}" if secret else ", unencrypted"
        return SinkBundle(
            client,
            client.fetcher,
            client.close,
            describe=f"bridge {bridge_endpoint} (spool {spool_dir}{security})",
            stats=client.stats,
        )
    raise ValueError(f"unknown sink {kind!r} (want 'directory' or 'bridge')")
