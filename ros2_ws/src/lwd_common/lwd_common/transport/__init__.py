"""Robot <-> learner-bridge transport (ROS-free): protocol, episode stream with spool, policy fetcher.

One module per job:
    protocol.py        the wire format (both sides)
    connection.py      ClientConfig, the socket and hello both robot channels share
    episode_stream.py  EpisodeStream: EpisodeSink that streams while recording, spooled until committed
    policy_fetch.py    PolicyFetcher: newest policy -> verified local file, prefetch, rollback, load reports
    policy_cache.py    the robot's policy directory;  spool.py  the episode spool
    client.py          BridgeClient: one robot's stream + fetcher on one config

Usage on the robot (the actor owns one client for its lifetime):

    from lwd_common.transport import BridgeClient, ClientConfig

    client = BridgeClient(ClientConfig(
        endpoint="tcp://bridge:5555", robot_id="robot0", spool_dir="/var/lib/lwd/spool",
        # with CURVE (see docs/transport.md):
        # curve_secret_key_file="keys/robot0.key_secret", server_public_key_file="keys/bridge.key",
    ))
    client.begin(meta)            # EpisodeSink: same calls as the actor's JournalSink
    client.add_step(step)         # cheap: steps are chunked, spooled and sent by a background thread
    client.end(outcome)           # returns once the episode is safe in the spool
    client.prefetch(current_version, on_ready)   # at the episode end: download in the background

    # at the episode boundary (never during an episode):
    new = client.fetch_policy_if_newer(current_version)   # LocalPolicy(path, info) | None
    if new is not None:
        try:
            runtime.load(new.path)
            client.report_policy_loaded(new.version)
        except Exception:
            previous = client.rollback_policy(new.version)    # marks it bad, returns the one before

    client.stats(); client.error    # counters and the last refusal, for diagnostics
    client.close()

Guarantees: every frame is on disk before it is sent and resent until acknowledged;
an episode leaves the spool only after the bridge committed it to a snapshot; a
restarted client re-sends what its spool holds. See docs/transport.md.
"""

from lwd_common.transport.client import BridgeClient
from lwd_common.transport.connection import BridgeError, ClientConfig
from lwd_common.transport.episode_stream import EpisodeStream
from lwd_common.transport.policy_cache import LocalPolicy, PolicyCache, PolicyHashMismatch
from lwd_common.transport.policy_fetch import PolicyFetcher
from lwd_common.transport.protocol import SCHEMA_VERSION, ProtocolError, config_hash

__all__ = [
    "SCHEMA_VERSION",
    "BridgeClient",
    "BridgeError",
    "ClientConfig",
    "EpisodeStream",
    "LocalPolicy",
    "PolicyCache",
    "PolicyFetcher",
    "PolicyHashMismatch",
    "ProtocolError",
    "config_hash",
]
