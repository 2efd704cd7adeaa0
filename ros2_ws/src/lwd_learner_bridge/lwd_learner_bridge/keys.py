"""Generate CURVE key pairs for the bridge and for each robot.

    python -m lwd_learner_bridge.keys gen --out keys/ bridge robot0 robot1

writes `<name>.key` (public, safe to copy) and `<name>.key_secret` (secret, stays
on its machine) for each name. The bridge's allowlist is a directory holding the
robots' `<robot_id>.key` files; the file name is the robot id the key may use.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import zmq
import zmq.auth


def generate(out_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Create `<name>.key` / `<name>.key_secret` in `out_dir` (refuses to overwrite)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = out / f"{name}.key", out / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise FileExistsError(f"{public} or {secret} exists; not overwriting keys")
    public_file, secret_file = zmq.auth.create_certificates(out, name)
    os.chmod(secret_file, 0o600)
    return Path(public_file), Path(secret_file)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lwd_learner_bridge.keys")
    sub = parser.add_subparsers(dest="cmd", required=True)
    gen = sub.add_parser("gen", help="generate key pairs")
    gen.add_argument("--out", required=True)
    gen.add_argument("names", nargs="+", help="bridge and/or robot ids")
    args = parser.parse_args(argv)
    if not zmq.has("curve"):
        raise SystemExit("this libzmq has no CURVE support")
    for name in args.names:
        public, secret = generate(args.out, name)
        print(f"{name}: public {public}  secret {secret}")


if __name__ == "__main__":
    main()
