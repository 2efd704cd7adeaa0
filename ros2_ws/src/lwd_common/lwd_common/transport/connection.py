"""What both robot-side channels share: their config, the socket they open, and the hello they say.

The episode stream (`episode_stream.py`) and the policy fetcher (`policy_fetch.py`)
each hold their own DEALER socket to the bridge, so a long policy download never
delays an episode frame. Both must open that socket the same way (CURVE keys,
size limits, no queueing for an absent peer) and introduce themselves with the
same identity, which is why that code lives here once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from lwd_common.transport import protocol

# Error codes after which saying hello again cannot help (wrong schema, config or key).
# "forbidden": this role may not send that (a misconfigured client); retrying cannot help.
FATAL_CODES = frozenset({"schema_version", "config_mismatch", "key_mismatch", "bad_hello", "forbidden"})


class BridgeError(RuntimeError):
    """The bridge refused us (version/config/key mismatch, auth failure) or did not answer."""


class NoSession(BridgeError):
    """The bridge does not know this connection (it restarted)."""


@dataclass(frozen=True)
class ClientConfig:
    """One robot's connection to the bridge: identity and keys, plus the knobs of both channels."""

    endpoint: str  # e.g. "tcp://bridge-host:5555"
    robot_id: str
    spool_dir: str
    policy_dir: str = ""  # default: <spool_dir>/policies
    steps_per_chunk: int = 15  # 0.5 s of steps per ep_chunk frame at 30 Hz
    max_chunk_bytes: int = 4 << 20  # ...or fewer steps when their images reach this (stay under frame limits)
    ack_timeout_s: float = 1.0  # first resend after this long without an ack
    max_backoff_s: float = 8.0
    max_in_flight: int = 64  # unacknowledged frames on the wire at once
    policy_timeout_s: float = 3.0  # per policy request; a boundary never waits longer than a few of these
    policy_chunk_bytes: int = 1 << 20
    stats_every_s: float = 5.0  # how often the robot's counters go to the bridge's fleet status
    policy_prefetch_s: float = 0.0  # > 0: poll + download newer policies in the background this often
    curve_secret_key_file: str = ""  # robot's secret cert (from `lwd_learner_bridge.keys`)
    server_public_key_file: str = ""  # bridge's public cert
    config_hash: str = field(default_factory=protocol.config_hash)
    fsync: bool = True
    # Byte caps of the spool (0: none; policy in spool.py): the send path drops its oldest unsent
    # episodes over `spool_max_bytes`, rejected/ and orphaned/ their oldest over theirs.
    spool_max_bytes: int = 4 << 30
    rejected_max_bytes: int = 256 << 20
    orphaned_max_bytes: int = 256 << 20
    max_frame_bytes: int = protocol.DEFAULT_MAX_FRAME_BYTES

    @property
    def policy_root(self) -> Path:
        return Path(self.policy_dir) if self.policy_dir else Path(self.spool_dir) / "policies"


def new_socket(ctx: zmq.Context, config: ClientConfig) -> zmq.Socket:
    """A DEALER socket set up for the bridge (CURVE if configured); not yet connected."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue frames for a peer that is not connected
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    sock.setsockopt(zmq.MAXMSGSIZE, 4 * config.max_frame_bytes)
    if config.curve_secret_key_file:
        public, secret = zmq.auth.load_certificate(config.curve_secret_key_file)
        server_public, _ = zmq.auth.load_certificate(config.server_public_key_file)
        if secret is None:
            raise ValueError(f"{config.curve_secret_key_file} holds no secret key")
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_public
    return sock


def hello(config: ClientConfig, role: str, open_episodes: Iterable[str] = ()) -> bytes:
    """The first frame of every session: who we are, which config we speak, what this socket is for."""
    return protocol.encode(
        "hello",
        robot_id=config.robot_id,
        policy_version="",
        config_hash=config.config_hash,
        role=role,
        open_episodes=list(open_episodes),
    )


def decode_reply(config: ClientConfig, data: bytes) -> dict[str, Any]:
    """Parse a bridge frame (ProtocolError if it is not one the bridge may send)."""
    return protocol.decode(data, max_bytes=4 * config.max_frame_bytes, allowed=protocol.BRIDGE_TYPES)


def auth_failure(config: ClientConfig, status: int) -> str:
    """What to tell the operator when the bridge's ZAP handler refused our CURVE key."""
    return (
        f"bridge {config.endpoint} refused our CURVE key (status {status}): "
        "is this robot's public key in the bridge allowlist?"
    )


class RequestChannel:
    """Request/reply with the bridge on one DEALER socket, introduced with `role` on first use.

    Not thread-safe: the owner serialises calls. A socket that timed out or got an
    error is dropped together with any late reply, so replies never get out of step
    with requests; after a bridge restart (`no_session`) it says hello again once.
    """

    def __init__(self, config: ClientConfig, role: str, ctx: zmq.Context | None = None):
        self.config = config
        self.role = role
        self._ctx = ctx or zmq.Context.instance()
        self._sock: zmq.Socket | None = None

    def request(self, msg: bytes, timeout: float) -> dict[str, Any]:
        """Send `msg`, return the bridge's answer; BridgeError if it refuses or is silent for `timeout`."""
        try:
            return self._request_once(msg, timeout)
        except NoSession:  # the bridge restarted since our hello: say hello again, once
            return self._request_once(msg, timeout)

    def send(self, msg: bytes, timeout: float) -> None:
        """Send a frame the bridge does not answer (`policy_loaded`); BridgeError if it cannot go out."""
        try:
            sock = self._connected(timeout)
        except NoSession:
            sock = self._connected(timeout)
        try:
            if not sock.poll(int(timeout * 1000), zmq.POLLOUT):
                raise BridgeError(f"bridge at {self.config.endpoint} not reachable")
            sock.send(msg, zmq.NOBLOCK)
        except (BridgeError, zmq.ZMQError) as exc:
            self.close()
            raise exc if isinstance(exc, BridgeError) else BridgeError(f"{self.role} channel: {exc}") from exc

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def _request_once(self, msg: bytes, timeout: float) -> dict[str, Any]:
        self._connected(timeout)
        return self._exchange(msg, timeout)

    def _connected(self, timeout: float) -> zmq.Socket:
        if self._sock is None:
            sock = new_socket(self._ctx, self.config)
            sock.connect(self.config.endpoint)
            self._sock = sock
            self._exchange(hello(self.config, self.role), timeout, expect="welcome")
        else:
            self._drop_stale()
        assert self._sock is not None
        return self._sock

    def _drop_stale(self) -> None:
        """Read what arrived unasked (the answer to a notice after a bridge restart) before the next request."""
        sock = self._sock
        assert sock is not None
        while sock.poll(0):
            try:
                stale = decode_reply(self.config, sock.recv())
            except protocol.ProtocolError:
                continue
            if stale["t"] == "error" and stale["code"] == "no_session":
                self.close()
                raise NoSession(f"bridge: {stale['message']}")

    def _exchange(self, msg: bytes, timeout: float, expect: str | None = None) -> dict[str, Any]:
        sock = self._sock
        assert sock is not None
        try:
            if not sock.poll(int(timeout * 1000), zmq.POLLOUT):
                raise BridgeError(f"bridge at {self.config.endpoint} not reachable")
            sock.send(msg, zmq.NOBLOCK)
            if not sock.poll(int(timeout * 1000), zmq.POLLIN):
                raise BridgeError(f"no answer from bridge in {timeout:.1f} s")
            reply = decode_reply(self.config, sock.recv())
        except (BridgeError, zmq.ZMQError, protocol.ProtocolError) as exc:
            self.close()  # drop any late reply with the socket
            raise exc if isinstance(exc, BridgeError) else BridgeError(f"{self.role} channel: {exc}") from exc
        if reply["t"] == "error":
            self.close()
            raise (NoSession if reply["code"] == "no_session" else BridgeError)(f"bridge: {reply['message']}")
        if expect and reply["t"] != expect:
            raise BridgeError(f"expected {expect} from bridge, got {reply['t']}")
        return reply
