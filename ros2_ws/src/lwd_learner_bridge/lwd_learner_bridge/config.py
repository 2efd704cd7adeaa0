"""The bridge's limits in one frozen object: every module checks the same numbers the server's flags set.

Byte limits on episodes count DECODED memory (arrays, image and version
strings with their object overheads, `protocol.chunk_nbytes`), not wire bytes:
many tiny steps used to cost 3.9x their wire size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lwd_common.transport import protocol


@dataclass(frozen=True)
class BridgeConfig:
    root: str
    store: str = ""  # where episodes go: a directory or s3://bucket/prefix; "" is <root>/store
    queue: str = ""  # NATS JetStream URL: announce stored episodes for a coordinator; "" commits here
    max_frame_bytes: int = protocol.DEFAULT_MAX_FRAME_BYTES
    max_episode_bytes: int = 1 << 30  # one partial episode
    max_robot_buffered_bytes: int = 1 << 30  # one robot: its partial episodes and those being written
    max_buffered_bytes: int = 4 << 30  # all partial episodes together
    max_open_episodes_per_robot: int = 4
    max_partials: int = 4096  # partial episodes of all robots together
    partial_timeout_s: float = 900.0  # drop a partial episode nobody sent a NEW frame to for this long
    session_timeout_s: float = 3600.0
    max_sessions: int = 4096
    max_robots: int = 1024  # robots the fleet status remembers (least recently seen idle ones go first)
    robot_forget_s: float = 7 * 86400.0  # an idle robot unseen this long leaves the fleet status
    policy_chunk_max: int = 4 << 20
    writer_threads: int = 2  # with background_writes (the server)
    require_episode_prefix: bool = (
        True  # episode ids must start with "<robot_id>-" (no squatting on others' ids)
    )
    status_cache_s: float = 0.5  # status_query answers are rebuilt at most this often
    rehash_bytes_per_s: float = 256e6  # re-reading stored episodes to answer duplicates of old ones
    max_connections: int = 1024  # TCP connections (server)
    max_connections_per_address: int = 128
    max_connection_pending_bytes: int = (
        0  # 0: 4 * max_frame_bytes + 1 MiB; bytes libzmq may hold per connection
    )
    max_pending_bytes: int = 1 << 30  # ...and for all connections together
    config_hash: str = field(default_factory=protocol.config_hash)  # the G1's unless --robot says otherwise
    extra_config_hashes: tuple[str, ...] = ()  # further robot descriptions this bridge accepts (--robot)

    def accepts_config(self, config_hash: str) -> bool:
        """A robot with this config hash (its description: joints, cameras, rates) may stream here."""
        return config_hash == self.config_hash or config_hash in self.extra_config_hashes

    @property
    def robot_cap(self) -> int:
        """One robot's byte budget (never more than the whole buffer)."""
        return min(self.max_robot_buffered_bytes, self.max_buffered_bytes)

    @property
    def episode_cap(self) -> int:
        """One episode's byte budget (never more than its robot's)."""
        return min(self.max_episode_bytes, self.robot_cap)

    @property
    def connection_pending_bytes(self) -> int:
        return self.max_connection_pending_bytes or 4 * self.max_frame_bytes + (1 << 20)
