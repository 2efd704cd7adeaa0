"""The bridge process: one ROUTER socket, one thread, BridgeCore behind it.

    python -m lwd_learner_bridge.server --root DIR --bind tcp://127.0.0.1:5555 \
        [--curve-secret-key bridge.key_secret --allow-keys DIR_OF_ROBOT_PUBLIC_KEYS]

Frames are read in batches without blocking, handled, a snapshot is committed
for the batch, and replies are sent with NOBLOCK: a peer whose queue is full
loses replies (it will retry) instead of stalling everyone. With CURVE, a ZAP
handler admits only public keys found in `--allow-keys` (file name = robot id,
reloaded on SIGHUP) and logs every refusal. Fleet status is written to
`<root>/status.json` once a second (read it with `python -m lwd_learner_bridge.status`).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from lwd_common.store import atomic_write
from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.core import BridgeCore

log = logging.getLogger("lwd.bridge")

BATCH = 256


def load_allowlist(directory: str | Path) -> dict[str, str]:
    """z85 public key -> robot id, from `<robot_id>.key` certificate files."""
    out: dict[str, str] = {}
    for path in sorted(Path(directory).glob("*.key")):
        public, _ = zmq.auth.load_certificate(path)
        out[public.decode()] = path.stem
    return out


class _Allowlist:
    """ZAP credentials provider: allow known keys, log and count the rest."""

    def __init__(self, directory: str | Path, core: BridgeCore):
        self.directory = Path(directory)
        self.core = core
        self.reload()

    def reload(self) -> None:
        keys = load_allowlist(self.directory)
        self.core.admission.key_names = keys
        log.info("allowlist: %d robot keys from %s", len(keys), self.directory)

    def callback(self, domain: str, key: bytes | str) -> bool:
        z85 = key.decode() if isinstance(key, bytes) else key
        names = self.core.admission.key_names or {}
        if z85 in names:
            return True
        self.core.stats.counters["auth_denied"] += 1
        log.warning("refused connection with unknown CURVE key %s (not in %s)", z85, self.directory)
        return False


class BridgeServer:
    def __init__(self, config: BridgeConfig, bind: str, curve_secret_key: str = "", allow_keys: str = ""):
        if bool(curve_secret_key) != bool(allow_keys):
            raise ValueError("--curve-secret-key and --allow-keys go together")
        self.core = BridgeCore(config, key_names={} if allow_keys else None, background_writes=True)
        self.ctx = zmq.Context()
        self.stop_event = threading.Event()
        self.auth: ThreadAuthenticator | None = None
        self.allowlist: _Allowlist | None = None
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 2000)
        self.sock.setsockopt(zmq.SNDHWM, 2000)
        # Hard cap enforced by libzmq (peer disconnected); frames between the soft limit and this
        # get an explicit `frame_too_large` error from the core instead.
        self.sock.setsockopt(zmq.MAXMSGSIZE, 2 * config.max_frame_bytes)
        if allow_keys:
            if not zmq.has("curve"):
                raise RuntimeError("this libzmq has no CURVE support")
            self.auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("lwd.bridge.auth"))
            self.auth.start()
            self.allowlist = _Allowlist(allow_keys, self.core)
            self.auth.configure_curve_callback(domain="*", credentials_provider=self.allowlist)
            public, secret = zmq.auth.load_certificate(curve_secret_key)
            if secret is None:
                raise ValueError(f"{curve_secret_key} holds no secret key")
            self.sock.curve_server = True
            self.sock.curve_publickey, self.sock.curve_secretkey = public, secret
        self.sock.bind(bind)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.status_path = Path(config.root) / "status.json"

    def serve_forever(self) -> None:
        log.info("bridge serving %s on %s", self.core.root, self.endpoint)
        next_housekeeping = 0.0
        try:
            while not self.stop_event.is_set():
                if self.sock.poll(2 if self.core.busy() else 100):
                    self._serve_batch()
                elif self.core.busy():
                    self._send(self._flush())
                now = time.monotonic()
                if now >= next_housekeeping:
                    self.core.expire()
                    self.write_status()
                    next_housekeeping = now + 1.0
        finally:
            self.write_status()
            self.close()

    def _serve_batch(self) -> None:
        replies: list[tuple[bytes, bytes]] = []
        for _ in range(BATCH):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            peer = frames[0].bytes
            if len(frames) != 2:
                self.core.stats.counters["rejected"] += 1
                continue  # not a DEALER single-frame message; nothing sensible to answer
            user_id = frames[1].get("User-Id") if self.core.admission.key_names is not None else None
            for out in self.core.handle(peer, frames[1].bytes, user_id=user_id):
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
            except zmq.Again:
                self.core.stats.counters["replies_dropped"] += 1

    def write_status(self) -> None:
        try:
            atomic_write(self.status_path, json.dumps(self.core.status(), indent=1).encode())
        except OSError as exc:
            log.error("cannot write %s: %s", self.status_path, exc)

    def reload_keys(self) -> None:
        if self.allowlist is not None:
            self.allowlist.reload()

    def close(self) -> None:
        self.core.close()
        self._send(self._flush())
        self.sock.close(0)
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lwd_learner_bridge.server", description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="bridge root: <root>/store, <root>/policies")
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555")
    parser.add_argument("--curve-secret-key", default="", help="bridge secret certificate (keys gen)")
    parser.add_argument("--allow-keys", default="", help="directory of allowed robot public certs <robot_id>.key")
    parser.add_argument("--max-frame-bytes", type=int, default=BridgeConfig.max_frame_bytes)
    parser.add_argument("--max-episode-bytes", type=int, default=BridgeConfig.max_episode_bytes)
    parser.add_argument("--max-open-episodes", type=int, default=BridgeConfig.max_open_episodes_per_robot)
    parser.add_argument("--max-buffered-bytes", type=int, default=BridgeConfig.max_buffered_bytes)
    parser.add_argument("--partial-timeout", type=float, default=BridgeConfig.partial_timeout_s)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = BridgeConfig(
        root=args.root, max_frame_bytes=args.max_frame_bytes, max_episode_bytes=args.max_episode_bytes,
        max_open_episodes_per_robot=args.max_open_episodes, max_buffered_bytes=args.max_buffered_bytes,
        partial_timeout_s=args.partial_timeout)
    server = BridgeServer(config, args.bind, args.curve_secret_key, args.allow_keys)
    signal.signal(signal.SIGTERM, lambda *_: server.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: server.stop_event.set())
    signal.signal(signal.SIGHUP, lambda *_: server.reload_keys())
    print(f"lwd bridge listening on {server.endpoint}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
