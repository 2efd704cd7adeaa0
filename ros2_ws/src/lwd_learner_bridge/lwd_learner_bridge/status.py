"""Print fleet state: robots, last seen, episodes, policy versions, counters, latencies.

    python -m lwd_learner_bridge.status --root DIR            # from <root>/status.json
    python -m lwd_learner_bridge.status --endpoint tcp://...  # ask the running bridge
    add --json for machine-readable output
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from lwd_common.transport import protocol


def query(endpoint: str, timeout_s: float = 3.0, secret_key: str = "", server_key: str = "") -> dict[str, Any]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if secret_key:
        public, secret = zmq.auth.load_certificate(secret_key)
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.curve_serverkey = zmq.auth.load_certificate(server_key)[0]
    try:
        sock.connect(endpoint)
        sock.send(protocol.encode("status_query"))
        if not sock.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"no status from {endpoint} in {timeout_s} s")
        msg = protocol.decode(sock.recv(), max_bytes=1 << 26, allowed=protocol.BRIDGE_TYPES)
    finally:
        sock.close(0)
    if msg["t"] != "status":
        raise RuntimeError(f"bridge answered {msg['t']}: {msg.get('message')}")
    return msg["fleet"]


def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


def _pin(s: dict[str, Any]) -> str:
    """' PINNED to v000003' while an operator holds the fleet at a version (policy_admin)."""
    if s.get("pin_error"):
        return f" (pin file unreadable: {s['pin_error']})"
    return f" PINNED to {s['pinned_policy']}" if s.get("pinned_policy") else ""


def format_status(s: dict[str, Any]) -> str:
    now = s.get("time", time.time())
    lines = [
        f"bridge up {now - s['started_at']:.0f} s  snapshot v{s['snapshot_version']}  "
        f"episodes in store {s['episodes_in_store']}  latest policy {s['latest_policy'] or '-'}{_pin(s)}  "
        f"sessions {s['sessions']}  buffered {s['buffered_bytes'] / 1e6:.1f} MB",
        f"episode end->committed p50 {_fmt_s(s['commit_latency_s']['p50'])} p99 {_fmt_s(s['commit_latency_s']['p99'])}"
        f"   policy published->loaded p50 {_fmt_s(s['policy_latency_s']['p50'])} "
        f"p99 {_fmt_s(s['policy_latency_s']['p99'])}",
        "counters: " + " ".join(f"{k}={v}" for k, v in s["counters"].items()),
        f"{'robot':<16}{'last seen':>11}{'episodes':>10}{'open':>6}{'spooled':>9}{'retries':>9}{'dups':>6}"
        f"{'rejected':>10}  policy",
    ]
    for rid, r in s["robots"].items():
        ago = f"{now - r['last_seen']:.1f}s ago" if r["last_seen"] else "never"
        policy = (r["policy_version"] or "-") + ("" if r["policy_ok"] else " (load FAILED)")
        lines.append(f"{rid:<16}{ago:>11}{r['episodes_committed']:>10}{r['open_episodes']:>6}"
                     f"{r.get('spooled_episodes', 0):>9}{r.get('retries', 0):>9}"
                     f"{r['duplicates_dropped']:>6}{r['rejected']:>10}  {policy}")
    return "\n".join(lines)


OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


def fleet_health(s: dict[str, Any], stale_s: float = 10.0, now: float | None = None
                 ) -> list[tuple[int, str, str, dict[str, str]]]:
    """(level, name, message, key values) for the bridge and each robot, for /diagnostics."""
    now = time.time() if now is None else now
    age = now - s["time"]
    bridge_level = OK if age < stale_s else ERROR
    out = [(bridge_level, "lwd_bridge", "ok" if bridge_level == OK else f"status {age:.0f} s old: bridge down?", {
        "snapshot_version": str(s["snapshot_version"]), "episodes_in_store": str(s["episodes_in_store"]),
        "latest_policy": str(s["latest_policy"]), "pinned_policy": str(s.get("pinned_policy")),
        "sessions": str(s["sessions"]),
        "commit_latency_p99_s": str(s["commit_latency_s"]["p99"]),
        "policy_latency_p99_s": str(s["policy_latency_s"]["p99"]),
        **{k: str(v) for k, v in s["counters"].items()}})]
    for rid, r in s["robots"].items():
        silent = now - r["last_seen"]
        if not r["policy_ok"]:
            level, msg = WARN, f"failed to load a policy; runs {r['policy_version'] or '-'}"
        elif silent > stale_s:
            level, msg = WARN, f"silent for {silent:.0f} s"
        else:
            level, msg = OK, f"{r['episodes_committed']} episodes, policy {r['policy_version'] or '-'}"
        out.append((level, f"lwd_bridge/{rid}", msg, {k: str(v) for k, v in r.items()}))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lwd_learner_bridge.status")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--root", help="bridge root (reads status.json the server writes every second)")
    src.add_argument("--endpoint", help="ask a running bridge, e.g. tcp://127.0.0.1:5555")
    parser.add_argument("--curve-secret-key", default="")
    parser.add_argument("--server-key", default="")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.root:
        path = Path(args.root) / "status.json"
        if not path.exists():
            sys.exit(f"{path} does not exist (has the bridge run with --root {args.root}?)")
        status = json.loads(path.read_text())
    else:
        status = query(args.endpoint, secret_key=args.curve_secret_key, server_key=args.server_key)
    print(json.dumps(status, indent=1) if args.json else format_status(status))


if __name__ == "__main__":
    main()
