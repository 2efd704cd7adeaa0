"""Operators pin and revert the policy version the fleet runs; the pin lives in the policy store.

    python -m lwd_learner_bridge.policy_admin --root ROOT status [--json]
    python -m lwd_learner_bridge.policy_admin --root ROOT pin v000003 --why "v000004 drops cubes"
    python -m lwd_learner_bridge.policy_admin --root ROOT revert --why "..."   # the version before the served one
    python -m lwd_learner_bridge.policy_admin --root ROOT unpin --why "..."    # serve the newest again
    python -m lwd_learner_bridge.policy_admin --root ROOT log

The bridge reads the pin on every policy query, so a change reaches each robot
at its next episode boundary (or prefetch poll); no restart. The learner keeps
publishing meanwhile; robots get its versions again after `unpin`. Every change
is appended with who, when and why to `<root>/policies/pin_log.jsonl`.
`status` shows the newest and pinned versions and, from `<root>/status.json`
(written by the running bridge), which version each robot reports loaded.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from lwd_common.policy_store import PolicyStore, served_version
from lwd_common.text import printable


def operator() -> str:
    """Who is changing the pin: user@host, so the log says who did it from where."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def fleet_view(root: Path) -> dict[str, Any]:
    """Newest, pinned, served versions and each robot's loaded version (from the bridge's status.json)."""
    store = PolicyStore(root / "policies")
    latest = store.latest()
    pin = store.pin_state()
    serving = store.serving()
    target = serving[0].version if serving else None
    out: dict[str, Any] = {
        "newest": latest.version if latest else None,
        "pinned": pin.pinned,
        "pin": pin.to_dict() if pin.action else None,
        "serving": target,
        "serving_as": served_version(target, pin.epoch) if target else None,
        "robots": {},
        "status_time": None,
    }
    status_path = root / "status.json"
    if status_path.exists():
        status = json.loads(status_path.read_text())
        out["status_time"] = status.get("time")
        for rid, r in status.get("robots", {}).items():
            out["robots"][rid] = {
                "loaded": r.get("policy_version") or None,
                "served_as": r.get("policy_served_as") or None,
                "ok": r.get("policy_ok", True),
                "last_seen": r.get("last_seen", 0.0),
                "on_target": bool(target) and r.get("policy_version") == target,
            }
    return out


def format_view(v: dict[str, Any], now: float) -> str:
    lines = [f"newest   {v['newest'] or '-'}"]
    pin = v["pin"]
    if v["pinned"]:
        lines.append(
            f"pinned   {v['pinned']}  ({pin['action']} by {pin['by']} at {_when(pin['at'])}: {pin['why']})"
        )
    else:
        lines.append(
            "pinned   -  (serving the newest)"
            + (f"  last change: {pin['action']} by {pin['by']} at {_when(pin['at'])}" if pin else "")
        )
    served_as = f"  (robots see it as {v['serving_as']})" if v["serving_as"] != v["serving"] else ""
    lines.append(f"serving  {v['serving'] or '-'}{served_as}")
    if v["status_time"] is None:
        lines.append("robots   unknown: no status.json (has the bridge run with this --root?)")
        return printable("\n".join(lines))
    lines.append(f"robots   as the bridge last wrote status.json, {now - v['status_time']:.0f} s ago")
    lines.append(f"{'robot':<16}{'loaded':<10}{'served as':<14}{'target':<8}last seen")
    for rid, r in sorted(v["robots"].items()):
        loaded = (r["loaded"] or "-") + ("" if r["ok"] else " (last load FAILED)")
        seen = f"{now - r['last_seen']:.0f} s ago" if r["last_seen"] else "never"
        lines.append(
            f"{rid:<16}{loaded:<10}{r['served_as'] or '-':<14}{'yes' if r['on_target'] else 'NO':<8}{seen}"
        )
    return printable("\n".join(lines))


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lwd_learner_bridge.policy_admin", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--root", required=True, help="bridge root (holds policies/ and status.json)")
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="newest, pinned, served, and each robot's loaded version")
    status.add_argument("--json", action="store_true")
    sub.add_parser("log", help="every pin change, oldest first (JSON lines)")
    for name, what in (
        ("pin", "hold the fleet at VERSION"),
        ("revert", "pin the version before the served one"),
        ("unpin", "serve the newest version again"),
    ):
        p = sub.add_parser(name, help=what)
        if name == "pin":
            p.add_argument("version", help="a published version, e.g. v000003")
        p.add_argument("--why", "-m", required=True, help="the reason, kept in the pin log")
        p.add_argument("--by", default=operator(), help="who (default: user@host)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not (root / "policies").is_dir():
        print(f"{root / 'policies'} does not exist (is --root the bridge root?)", file=sys.stderr)
        return 2
    store = PolicyStore(root / "policies")
    try:
        if args.command == "status":
            view = fleet_view(root)
            print(json.dumps(view, indent=1) if args.json else format_view(view, time.time()))
            return 0
        if args.command == "log":
            for entry in store.pin_log():
                print(json.dumps(entry, sort_keys=True))
            return 0
        if args.command == "pin":
            state = store.pin(args.version, args.by, args.why)
        elif args.command == "revert":
            state = store.revert(args.by, args.why)
        else:
            state = store.unpin(args.by, args.why)
    except (KeyError, ValueError) as exc:
        print(f"{args.command} failed: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    target = state.pinned or (store.latest().version if store.latest() else None)
    print(
        f"{args.command}: fleet now served {target or '-'}"
        + (f" (pinned, as {served_version(target, state.epoch)})" if state.pinned and target else " (newest)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
