"""Who may read and steer through the dashboard: its token, the bind address, the request checks.

- A token is made once per run directory (`<run>/keys/dashboard.token`, mode 0600, beside the CURVE
  keys) and kept: the operator's URL (`http://host:port/#token=...`) stays valid across restarts.
  The token travels in the URL's fragment, which browsers never send to the server; the page keeps
  it in its session storage and sends it in the `X-LWD-Token` header.
- Every state-changing request (POST) needs the token in `X-LWD-Token`. A custom header cannot be
  sent cross-site without a CORS preflight, which the dashboard never grants, so another site open
  in the operator's browser cannot pin a policy (CSRF); an `Origin` that is not this server's and a
  body that is not JSON are refused as well.
- On a loopback bind the read-only API answers without the token; the `Host` header must then name
  a loopback address, so a web page cannot reach it through DNS rebinding. On any other bind every
  request but the static page and its scripts needs the token (header; the event stream may pass it
  as `?token=`, as `EventSource` cannot set headers), and the process refuses to start without TLS
  (`--tls-cert/--tls-key`) unless told `--allow-insecure`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_HEADER = "x-lwd-token"
TOKEN_FILE = "dashboard.token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
PUBLIC_PATHS = ("/", "/index.html", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)
QUERY_TOKEN_PATHS = ("/api/events",)

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; "
        b"connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def parse_bind(bind: str) -> tuple[str, int]:
    """ "127.0.0.1:8765", "[::1]:8765", "0.0.0.0:0" -> (host, port); ValueError otherwise."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--bind wants HOST:PORT, e.g. 127.0.0.1:8765, got {bind!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port} out of range")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_or_create_token(path: str | Path) -> str:
    """The token in `path`; made (32 random bytes, URL-safe, mode 0600) if the file does not exist."""
    path = Path(path)
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    else:
        if not token:
            raise ValueError(f"{path} is empty (delete it to make a new token)")
        if path.stat().st_mode & 0o077:
            raise PermissionError(f"{path} is readable by others (chmod 600 {path})")
        return token
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    try:
        os.link(
            tmp, path
        )  # create-only: a second dashboard starting at the same moment keeps the first token
    except FileExistsError:
        return load_or_create_token(path)
    finally:
        tmp.unlink()
    return token


def _hostname(host_header: str) -> str:
    return (urlsplit(f"//{host_header}").hostname or "").lower()


class Guard:
    """ASGI middleware: the checks of the module doc on every HTTP request, security headers on every
    answer. A refusal is a JSON `{"error": ...}` with 401 (token) or 403/415 (origin, host, body)."""

    def __init__(self, app: ASGIApp, token: str, bind_host: str, reads_need_token: bool | None = None):
        self.app = app
        self.token = token.encode()
        self.loopback = is_loopback(bind_host)
        self.reads_need_token = (not self.loopback) if reads_need_token is None else reads_need_token
        self.allowed_hosts = LOOPBACK_NAMES | {bind_host.lower()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.check(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        if refusal is not None:
            status, why = refusal
            body = json.dumps({"error": why}).encode()
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_headers)

    def _token_ok(self, provided: str | None) -> bool:
        return bool(provided) and hmac.compare_digest(provided.encode(), self.token)  # type: ignore[union-attr]

    def check(self, scope: Scope) -> tuple[int, str] | None:
        headers = Headers(scope=scope)
        path: str = scope["path"]
        method: str = scope["method"]
        host = headers.get("host", "")
        if self.loopback and _hostname(host) not in self.allowed_hosts:
            return 403, f"unexpected Host {host[:100]!r}: open the dashboard as 127.0.0.1 or localhost"
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        if method in ("GET", "HEAD"):
            if public or not self.reads_need_token:
                return None
            provided = headers.get(TOKEN_HEADER)
            if provided is None and path in QUERY_TOKEN_PATHS:
                provided = (
                    parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [None]
                )[0]
            return None if self._token_ok(provided) else (401, "missing or wrong dashboard token")
        # state-changing requests
        if not self._token_ok(headers.get(TOKEN_HEADER)):
            return 401, f"missing or wrong dashboard token (send it in the {TOKEN_HEADER} header)"
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            return 403, "cross-origin request refused"
        if headers.get("sec-fetch-site") == "cross-site":
            return 403, "cross-site request refused"
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return 415, "send JSON (Content-Type: application/json)"
        return None
