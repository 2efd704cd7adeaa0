"""Robot <-> learner-bridge transport (ROS-free): protocol, streaming sink with spool, policy fetcher.

Usage on the robot (the actor owns one client for its lifetime):

    from lwd_common.transport import BridgeClient, ClientConfig

    client = BridgeClient(ClientConfig(
        endpoint="tcp://bridge:5555", robot_id="robot0", spool_dir="/var/lib/lwd/spool",
        # with CURVE (see docs/transport.md):
        # curve_secret_key_file="keys/robot0.key_secret", server_public_key_file="keys/bridge.key",
    ))
    client.begin(meta)            # EpisodeSink: same calls as store.DirectorySink
    client.add_step(step)         # cheap: steps are chunked, spooled and sent by a background thread
    client.end(outcome)           # returns once the episode is safe in the spool

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

from lwd_common.transport.client import BridgeClient, BridgeError, ClientConfig
from lwd_common.transport.policy_cache import LocalPolicy, PolicyCache, PolicyHashMismatch
from lwd_common.transport.protocol import SCHEMA_VERSION, ProtocolError, config_hash

__all__ = [
    "SCHEMA_VERSION",
    "BridgeClient",
    "BridgeError",
    "ClientConfig",
    "LocalPolicy",
    "PolicyCache",
    "PolicyHashMismatch",
    "ProtocolError",
    "config_hash",
]
