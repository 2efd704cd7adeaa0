"""CURVE pieces both ends need: key pairs, and whether an endpoint is reachable from other machines.

The bridge refuses plain TCP beyond loopback, and the fleet bring-up turns CURVE on for
exactly those endpoints, so both must agree on what "loopback" means: this module decides.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import zmq.auth


def is_loopback(endpoint: str) -> bool:
    """True for endpoints only this machine can reach: ipc://, inproc://, tcp:// on a loopback address."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name: reachable from elsewhere
        return False


def generate_key_pair(out_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Create `<name>.key` (public) / `<name>.key_secret` (mode 600) in `out_dir`; refuses to overwrite."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = out / f"{name}.key", out / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise FileExistsError(f"{public} or {secret} exists; not overwriting keys")
    public_file, secret_file = zmq.auth.create_certificates(out, name)
    os.chmod(secret_file, 0o600)
    return Path(public_file), Path(secret_file)
