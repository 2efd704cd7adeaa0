"""Generate CURVE key pairs for the bridge and for each robot.

    python -m lwd_learner_bridge.keys gen --out keys/ bridge robot0 robot1

writes `<name>.key` (public, safe to copy) and `<name>.key_secret` (secret, stays
on its machine) for each name. The bridge's allowlist is a directory holding the
robots' `<robot_id>.key` files; the file name is the robot id the key may use.
"""

from __future__ import annotations

import argparse

import zmq

from lwd_common.transport.curve import generate_key_pair

generate = generate_key_pair  # the name the CLI and older callers use


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
