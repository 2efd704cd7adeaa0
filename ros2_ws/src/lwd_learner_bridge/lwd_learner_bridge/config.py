"""The bridge's limits in one frozen object: every module checks the same numbers the server's flags set."""

from __future__ import annotations

from dataclasses import dataclass, field

from lwd_common.transport import protocol


@dataclass(frozen=True)
class BridgeConfig:
    root: str
    max_frame_bytes: int = protocol.DEFAULT_MAX_FRAME_BYTES
    max_episode_bytes: int = 1 << 30
    max_open_episodes_per_robot: int = 4
    max_buffered_bytes: int = 4 << 30  # all partial episodes together
    partial_timeout_s: float = 900.0  # drop a partial episode nobody sent to for this long
    session_timeout_s: float = 3600.0
    max_sessions: int = 4096
    policy_chunk_max: int = 4 << 20
    writer_threads: int = 2  # with background_writes (the server)
    config_hash: str = field(default_factory=protocol.config_hash)
