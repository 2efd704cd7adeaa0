"""`python -m lwd_actor.dashboard --run-dir RUN ...`: serve the dashboard (docs/dashboard.md).

Prints one line when it listens, `lwd dashboard: <URL>`, the URL carrying the token in its fragment
(`http://127.0.0.1:8765/#token=...`); Ctrl-C or SIGTERM stops it. Exit code 2 for a refused
configuration (a non-loopback bind without TLS, a missing run directory, an unreadable token).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from pathlib import Path

import uvicorn

from lwd_actor.dashboard import DEFAULT_BIND
from lwd_actor.dashboard.app import create_app
from lwd_actor.dashboard.security import TOKEN_FILE, is_loopback, load_or_create_token, parse_bind


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lwd_actor.dashboard",
        description="Watch and steer a learning fleet live in a browser (docs/dashboard.md).",
    )
    p.add_argument("--run-dir", required=True, type=Path, help="the fleet's run directory")
    p.add_argument("--bridge-root", type=Path, help="bridge root (default RUN/bridge)")
    p.add_argument(
        "--store", help="episode store location, a directory or s3://bucket/prefix (default BRIDGE/store)"
    )
    p.add_argument("--learner-dir", type=Path, help="online learner run (default RUN/online_learner)")
    p.add_argument(
        "--bind", default=DEFAULT_BIND, help=f"HOST:PORT to listen on (default {DEFAULT_BIND}; port 0: any)"
    )
    p.add_argument(
        "--token-file", type=Path, help=f"the access token (default RUN/keys/{TOKEN_FILE}; made if absent)"
    )
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS")
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument(
        "--allow-insecure",
        action="store_true",
        help="serve plain HTTP on a non-loopback address (the token then crosses the network in clear)",
    )
    return p


def url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return socket.getfqdn()
    return f"[{host}]" if ":" in host else host


class _Server(uvicorn.Server):
    """Prints the URL once the socket listens (the actual port when --bind asked for port 0), and ends
    the pages' event streams when it stops (else it would wait for them to time out)."""

    def __init__(self, config: uvicorn.Config, scheme: str, host: str, token: str, closing: threading.Event):
        super().__init__(config)
        self.scheme, self.display_host, self.token, self.closing = scheme, host, token, closing

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.closing.set()  # open event streams end within a second
        await super().shutdown(sockets=sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit or not self.servers:
            return
        port = self.servers[0].sockets[0].getsockname()[1]
        print(f"lwd dashboard: {self.scheme}://{self.display_host}:{port}/#token={self.token}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        host, port = parse_bind(args.bind)
    except ValueError as exc:
        parser.error(str(exc))
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    tls = bool(args.tls_cert)
    if not is_loopback(host) and not tls and not args.allow_insecure:
        parser.error(
            f"refusing to serve {host} without TLS: anyone on the network could read the token; give "
            "--tls-cert/--tls-key (or --allow-insecure on a network you trust, or bind 127.0.0.1 and tunnel)"
        )
    if not args.run_dir.is_dir():
        parser.error(f"{args.run_dir} is not a directory (the fleet's --run-dir)")
    token_file = args.token_file or args.run_dir / "keys" / TOKEN_FILE
    try:
        token = load_or_create_token(token_file)
    except (OSError, ValueError) as exc:
        parser.error(f"token: {exc}")
    app = create_app(
        args.run_dir,
        token=token,
        bridge_root=args.bridge_root,
        store=args.store,
        learner_dir=args.learner_dir,
        bind_host=host,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,  # the event stream's URL carries the token
        ssl_certfile=str(args.tls_cert) if tls else None,
        ssl_keyfile=str(args.tls_key) if tls else None,
        timeout_graceful_shutdown=3,
        lifespan="on",
    )
    server = _Server(config, "https" if tls else "http", url_host(host), token, app.state.closing)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
