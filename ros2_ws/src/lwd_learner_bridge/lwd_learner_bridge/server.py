"""The bridge process: one ROUTER socket, one thread, BridgeCore behind it.

    python -m lwd_learner_bridge.server --root DIR --bind tcp://127.0.0.1:5555 \
        [--curve-secret-key bridge.key_secret --allow-keys DIR_OF_ROBOT_PUBLIC_KEYS [--monitor-keys DIR]]

Frames are read in batches without blocking, handled, a snapshot is committed
for the batch, and replies are sent with NOBLOCK: a peer whose queue is full
loses replies (it will retry) instead of stalling everyone. With CURVE, a ZAP
handler admits only public keys found in `--allow-keys` (file name = robot id)
or `--monitor-keys` (status readers), reloaded on SIGHUP, and logs refusals
(rate-limited). Without CURVE there is no authentication at all, so the bridge
refuses to listen on anything but loopback unless told `--allow-insecure`.
`connections.ConnectionGuard` bounds what libzmq holds per connection. Fleet
status is written to `<root>/status.json` once a second (read it with
`python -m lwd_learner_bridge.status`); episode writers are supervised. With `--queue`, a
thread mirrors the learner's policy feed into `<root>/policies` (`lwd_common.policy_feed`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import socket
import threading
import time
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from lwd_common.policy_feed import PolicyFollower
from lwd_common.store import atomic_write
from lwd_common.transport import protocol
from lwd_common.transport.curve import is_loopback
from lwd_description.robot import DEFAULT_ROBOT, load_robot
from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.connections import ConnectionGuard
from lwd_learner_bridge.core import BridgeCore

log = logging.getLogger("lwd.bridge")

BATCH = 256
RCVHWM = 8  # complete messages libzmq queues per connection (it stops reading the socket beyond)
SNDHWM = 256  # replies queued per connection; large ones only to peers that read (ConnectionGuard)


class InsecureBind(ValueError):
    """Plain TCP (no CURVE) on an address other machines can reach, without --allow-insecure."""


def load_allowlist(directory: str | Path) -> dict[str, str]:
    """z85 public key -> robot id, from `<robot_id>.key` certificate files."""
    out: dict[str, str] = {}
    for path in sorted(Path(directory).glob("*.key")):
        public, _ = zmq.auth.load_certificate(path)
        out[public.decode()] = path.stem
    return out


class _Allowlist:
    """ZAP credentials provider: allow known robot and monitor keys, log (rate-limited) and count the rest."""

    def __init__(self, directory: str | Path, core: BridgeCore, monitor_directory: str | Path = ""):
        self.directory = Path(directory)
        self.monitor_directory = Path(monitor_directory) if monitor_directory else None
        self.core = core
        self.reload()

    def reload(self) -> None:
        keys = load_allowlist(self.directory)
        monitors = load_allowlist(self.monitor_directory) if self.monitor_directory else {}
        self.core.admission.key_names = keys
        self.core.admission.monitor_keys = monitors
        log.info(
            "allowlist: %d robot keys from %s, %d monitor keys", len(keys), self.directory, len(monitors)
        )

    def callback(self, domain: str, key: bytes | str) -> bool:
        z85 = key.decode() if isinstance(key, bytes) else key
        if z85 in (self.core.admission.key_names or {}) or z85 in self.core.admission.monitor_keys:
            return True
        self.core.stats.counters["auth_denied"] += 1
        self.core.stats.note(
            logging.WARNING,
            "auth",
            "refused connection with unknown CURVE key %s (not in %s)",
            z85,
            str(self.directory),
        )
        return False


class BridgeServer:
    def __init__(
        self,
        config: BridgeConfig,
        bind: str,
        curve_secret_key: str = "",
        allow_keys: str = "",
        allow_insecure: bool = False,
        monitor_keys: str = "",
        bridge_id: str = "",
    ):
        if bool(curve_secret_key) != bool(allow_keys):
            raise ValueError("--curve-secret-key and --allow-keys go together")
        if monitor_keys and not allow_keys:
            raise ValueError("--monitor-keys needs CURVE (--curve-secret-key, --allow-keys)")
        if not allow_keys and not allow_insecure and not is_loopback(bind):
            raise InsecureBind(
                f"refusing to serve {bind} without CURVE: anyone who can reach it could store episodes as any "
                "robot and download every policy. Use --curve-secret-key/--allow-keys (python -m "
                "lwd_learner_bridge.keys), bind to 127.0.0.1, or pass --allow-insecure on a trusted network."
            )
        self.core = BridgeCore(config, key_names={} if allow_keys else None, background_writes=True)
        self.ctx = zmq.Context()
        self.stop_event = threading.Event()
        self.auth: ThreadAuthenticator | None = None
        self.allowlist: _Allowlist | None = None
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, RCVHWM)
        self.sock.setsockopt(zmq.SNDHWM, SNDHWM)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full or gone peer raises instead of a silent drop
        # Hard cap enforced by libzmq (peer disconnected); frames a little over the soft limit get an
        # explicit `frame_too_large` error from the core instead.
        self.sock.setsockopt(zmq.MAXMSGSIZE, config.max_frame_bytes + (64 << 10))
        self.guard = ConnectionGuard(self.sock, config, self.core.stats)
        self.core.large_reply_ok = self.guard.large_reply_ok
        self.core.connection_status = self.guard.status
        if allow_keys:
            if not zmq.has("curve"):
                raise RuntimeError("this libzmq has no CURVE support")
            self.auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("lwd.bridge.auth"))
            self.auth.start()
            self.allowlist = _Allowlist(allow_keys, self.core, monitor_keys)
            self.auth.configure_curve_callback(domain="*", credentials_provider=self.allowlist)
            public, secret = zmq.auth.load_certificate(curve_secret_key)
            if secret is None:
                raise ValueError(f"{curve_secret_key} holds no secret key")
            self.sock.curve_server = True
            self.sock.curve_publickey, self.sock.curve_secretkey = public, secret
        elif not is_loopback(bind):
            log.warning("serving %s in plain TCP (--allow-insecure): no authentication, no encryption", bind)
        self.sock.bind(bind)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.status_path = Path(config.root) / "status.json"
        self.policy_follower: PolicyFollower | None = None
        self._follower_thread: threading.Thread | None = None
        if config.queue:
            self.policy_follower = PolicyFollower(
                config.store or str(Path(config.root) / "store"),
                config.queue,
                self.core.policies,
                bridge_id or default_bridge_id(config.root),
            )
            self._follower_thread = threading.Thread(
                target=self.policy_follower.run, args=(self.stop_event,), name="lwd-policy-feed", daemon=True
            )

    def serve_forever(self) -> None:
        log.info("bridge serving %s on %s", self.core.root, self.endpoint)
        if self._follower_thread is not None:
            self._follower_thread.start()
        next_housekeeping = 0.0
        try:
            while not self.stop_event.is_set():
                # wake at least as often as the connection guard checks (what libzmq holds grows fast)
                if self.sock.poll(2 if self.core.busy() else max(2, int(1000 * self.guard.check_interval()))):
                    self._serve_batch()
                elif self.core.busy():
                    self._send(self._flush())
                for peer in self.guard.events():
                    self.core.disconnected(peer)
                self.guard.check()
                now = time.monotonic()
                if now >= next_housekeeping:
                    self.core.supervise()
                    self.core.expire()
                    self.write_status()
                    next_housekeeping = now + 1.0
        finally:
            self.write_status()
            self.close()

    def _serve_batch(self) -> None:
        replies: list[tuple[bytes, bytes]] = []
        self.guard.new_batch()
        for _ in range(BATCH):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            peer = frames[0].bytes
            fd = self.guard.delivered(peer, frames)
            if len(frames) != 2:
                self.core.stats.counters["rejected"] += 1
                self.core.stats.note(
                    logging.WARNING,
                    "multipart",
                    "dropped a %s-part message from %s (robots send one frame)",
                    len(frames),
                    peer.hex(),
                )
                continue  # not a DEALER single-frame message; nothing sensible to answer
            user_id = str(frames[1].get("User-Id")) if self.core.admission.key_names is not None else None
            conn = self.guard.conns.get(fd)
            address = conn.address if conn is not None else _peer_address(frames[1])
            for out in self.core.handle(peer, frames[1].bytes, user_id=user_id, address=address):
                replies.append((peer, out))
        replies += self._flush()
        self._send(replies)

    def _flush(self) -> list[tuple[bytes, bytes]]:
        try:
            return self.core.flush()
        except OSError:  # snapshot not written (disk?): episodes stay pending, robots keep retrying
            log.exception("cannot commit a snapshot")
            return []

    def _send(self, replies: list[tuple[bytes, bytes]]) -> None:
        for peer, data in replies:
            try:
                self.sock.send_multipart([peer, data], zmq.NOBLOCK)
            except zmq.ZMQError:  # EAGAIN: its queue is full; EHOSTUNREACH: it is gone
                self.core.stats.counters["replies_dropped"] += 1

    def write_status(self) -> None:
        try:
            atomic_write(self.status_path, json.dumps(self.core.status(), separators=(",", ":")).encode())
        except OSError as exc:
            log.error("cannot write %s: %s", self.status_path, exc)

    def reload_keys(self) -> None:
        if self.allowlist is not None:
            self.allowlist.reload()

    def close(self) -> None:
        self.stop_event.set()
        if self._follower_thread is not None and self._follower_thread.is_alive():
            self._follower_thread.join(timeout=15)
        if self.policy_follower is not None:
            self.policy_follower.close()
        self.core.close()
        self._send(self._flush())
        self.guard.close()
        self.sock.close(0)
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()


def default_bridge_id(root: str) -> str:
    """This host and bridge root: stable across restarts (a durable consumer resumes where it was),
    different for every bridge of a fleet (each gets every policy version)."""
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def _peer_address(frame: zmq.Frame) -> str | None:
    try:
        return str(frame.get("Peer-Address"))
    except zmq.ZMQError:
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lwd_learner_bridge.server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--root", required=True, help="bridge root: <root>/store, <root>/policies")
    parser.add_argument(
        "--store",
        default="",
        help="episode store: a directory or s3://bucket/prefix (S3 settings from AWS_ENDPOINT_URL, "
        "AWS_ACCESS_KEY_ID, ...); default <root>/store",
    )
    parser.add_argument(
        "--queue",
        default="",
        help="NATS JetStream server (nats://host:4222): announce stored episodes there for "
        "`python -m lwd_learner_bridge.coordinator` to commit, and mirror the learner's policy feed "
        "from it; default: this bridge commits",
    )
    parser.add_argument(
        "--bridge-id",
        default="",
        help="this bridge's name on the queue's policy feed (each bridge its own); default: host name "
        "and a hash of --root",
    )
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555")
    parser.add_argument("--curve-secret-key", default="", help="bridge secret certificate (keys gen)")
    parser.add_argument(
        "--allow-keys", default="", help="directory of allowed robot public certs <robot_id>.key"
    )
    parser.add_argument(
        "--monitor-keys",
        default="",
        help="directory of status readers' public certs <name>.key (role monitor only)",
    )
    parser.add_argument(
        "--allow-insecure",
        action="store_true",
        help="serve plain TCP (no CURVE) on a non-loopback address: no authentication at all",
    )
    parser.add_argument("--max-frame-bytes", type=int, default=BridgeConfig.max_frame_bytes)
    parser.add_argument("--max-episode-bytes", type=int, default=BridgeConfig.max_episode_bytes)
    parser.add_argument("--max-robot-buffered-bytes", type=int, default=BridgeConfig.max_robot_buffered_bytes)
    parser.add_argument("--max-open-episodes", type=int, default=BridgeConfig.max_open_episodes_per_robot)
    parser.add_argument("--max-buffered-bytes", type=int, default=BridgeConfig.max_buffered_bytes)
    parser.add_argument("--max-partials", type=int, default=BridgeConfig.max_partials)
    parser.add_argument("--partial-timeout", type=float, default=BridgeConfig.partial_timeout_s)
    parser.add_argument("--max-robots", type=int, default=BridgeConfig.max_robots)
    parser.add_argument("--max-connections", type=int, default=BridgeConfig.max_connections)
    parser.add_argument(
        "--max-connections-per-address", type=int, default=BridgeConfig.max_connections_per_address
    )
    parser.add_argument(
        "--max-pending-bytes",
        type=int,
        default=BridgeConfig.max_pending_bytes,
        help="bytes libzmq may hold for all connections together",
    )
    parser.add_argument(
        "--robot",
        action="append",
        default=[],
        help="robot description (lwd_description name or YAML path) whose robots may stream episodes "
        "here; repeat for several; default: g1_dual_arm",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:
        hashes = [protocol.robot_config_hash(load_robot(r)) for r in args.robot or [DEFAULT_ROBOT]]
    except (OSError, ValueError) as exc:
        raise SystemExit(f"lwd bridge: --robot: {exc}") from None
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = BridgeConfig(
        root=args.root,
        store=args.store,
        queue=args.queue,
        max_frame_bytes=args.max_frame_bytes,
        max_episode_bytes=args.max_episode_bytes,
        max_robot_buffered_bytes=args.max_robot_buffered_bytes,
        max_open_episodes_per_robot=args.max_open_episodes,
        max_buffered_bytes=args.max_buffered_bytes,
        max_partials=args.max_partials,
        partial_timeout_s=args.partial_timeout,
        max_robots=args.max_robots,
        max_connections=args.max_connections,
        max_connections_per_address=args.max_connections_per_address,
        max_pending_bytes=args.max_pending_bytes,
        config_hash=hashes[0],
        extra_config_hashes=tuple(hashes[1:]),
    )
    try:
        server = BridgeServer(
            config,
            args.bind,
            args.curve_secret_key,
            args.allow_keys,
            args.allow_insecure,
            args.monitor_keys,
            args.bridge_id,
        )
    except InsecureBind as exc:
        raise SystemExit(f"lwd bridge: {exc}") from None
    signal.signal(signal.SIGTERM, lambda *_: server.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: server.stop_event.set())
    signal.signal(signal.SIGHUP, lambda *_: server.reload_keys())
    print(f"lwd bridge listening on {server.endpoint}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
