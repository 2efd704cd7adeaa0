"""Where recorded episodes go, and where newer policies come from (ROS-free wiring).

`sink: directory` stores episodes in a local `EpisodeStore` (the learner's format)
and has no policy source. `sink: bridge` uses the transport's `BridgeClient`: its
`EpisodeStream` (spool + ZeroMQ stream) records the episodes and its
`PolicyFetcher` is the `PolicySource` that `PolicySwitch` asks at episode ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


def make_sink(kind: str, robot_id: str, store_dir: str, bridge_endpoint: str, spool_dir: str) -> SinkBundle:
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
        client = BridgeClient(ClientConfig(endpoint=bridge_endpoint, robot_id=robot_id, spool_dir=spool_dir))
        return SinkBundle(client, client.fetcher, client.close,
                          describe=f"bridge {bridge_endpoint} (spool {spool_dir})", stats=client.stats)
    raise ValueError(f"unknown sink {kind!r} (want 'directory' or 'bridge')")
