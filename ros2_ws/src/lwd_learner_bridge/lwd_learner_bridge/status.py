"""Print fleet state: robots, last seen, episodes, policy versions, counters, latencies.

    python -m lwd_learner_bridge.status --root DIR            # from <root>/status.json
    python -m lwd_learner_bridge.status --endpoint tcp://...  # ask the running bridge
    add --json for machine-readable output

Asking the bridge takes a session: the query says hello in the `monitor` role
(which may read the status and nothing else). With CURVE the key must be in
the bridge's `--monitor-keys` (or `--allow-keys`) directory under the name given
with `--id` (default: the key file's name).
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

from lwd_common.text import printable
from lwd_common.transport import protocol


def query(
    endpoint: str, timeout_s: float = 3.0, secret_key: str = "", server_key: str = "", monitor_id: str = ""
) -> dict[str, Any]:
    """The fleet status from a running bridge, asked as a `monitor` session named `monitor_id`."""
    monitor_id = monitor_id or (Path(secret_key).name.split(".")[0] if secret_key else "monitor")
    ctx: zmq.Context = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if secret_key:
        public, secret = zmq.auth.load_certificate(secret_key)
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.curve_serverkey = zmq.auth.load_certificate(server_key)[0]
    try:
        sock.connect(endpoint)
        hello = protocol.encode(
            "hello",
            robot_id=monitor_id,
            policy_version="",
            config_hash=protocol.config_hash(),
            role="monitor",
            open_episodes=[],
        )
        for request in (hello, protocol.encode("status_query")):
            sock.send(request)
            if not sock.poll(int(timeout_s * 1000)):
                raise TimeoutError(f"no status from {endpoint} in {timeout_s} s")
            msg = protocol.decode(sock.recv(), max_bytes=1 << 26, allowed=protocol.BRIDGE_TYPES, limits=None)
            if msg["t"] == "error":
                raise RuntimeError(f"bridge refused: {msg['code']}: {msg['message']}")
    finally:
        sock.close(0)
    if msg["t"] != "status":
        raise RuntimeError(f"bridge answered {msg['t']}")
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
    health = s.get("health") or {"level": "ok", "problems": []}
    lines = [
        f"bridge up {now - s['started_at']:.0f} s  health {health['level'].upper()}"
        + "".join(f"  ({p})" for p in health["problems"])
        + f"  snapshot v{s['snapshot_version']}  "
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
        lines.append(
            f"{rid:<16}{ago:>11}{r['episodes_committed']:>10}{r['open_episodes']:>6}"
            f"{r.get('spooled_episodes', 0):>9}{r.get('retries', 0):>9}"
            f"{r['duplicates_dropped']:>6}{r['rejected']:>10}  {policy}"
        )
    return printable("\n".join(lines))


OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


def fleet_health(
    s: dict[str, Any], stale_s: float = 10.0, now: float | None = None
) -> list[tuple[int, str, str, dict[str, str]]]:
    """(level, name, message, key values) for the bridge and each robot, for /diagnostics."""
    now = time.time() if now is None else now
    age = now - s["time"]
    problems = (s.get("health") or {}).get("problems") or []
    if age >= stale_s:
        bridge_level, bridge_msg = ERROR, f"status {age:.0f} s old: bridge down?"
    elif problems:  # e.g. an episode writer died (restarted, but episodes may have been refused meanwhile)
        bridge_level, bridge_msg = ERROR, "; ".join(problems)
    else:
        bridge_level, bridge_msg = OK, "ok"
    out = [
        (
            bridge_level,
            "lwd_bridge",
            bridge_msg,
            {
                "snapshot_version": str(s["snapshot_version"]),
                "episodes_in_store": str(s["episodes_in_store"]),
                "latest_policy": str(s["latest_policy"]),
                "pinned_policy": str(s.get("pinned_policy")),
                "sessions": str(s["sessions"]),
                "commit_latency_p99_s": str(s["commit_latency_s"]["p99"]),
                "policy_latency_p99_s": str(s["policy_latency_s"]["p99"]),
                **{k: str(v) for k, v in s["counters"].items()},
            },
        )
    ]
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
    parser.add_argument("--id", default="", help="name of this monitor session (with CURVE: its key's name)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.root:
        path = Path(args.root) / "status.json"
        if not path.exists():
            sys.exit(f"{path} does not exist (has the bridge run with --root {args.root}?)")
        status = json.loads(path.read_text())
    else:
        status = query(
            args.endpoint, secret_key=args.curve_secret_key, server_key=args.server_key, monitor_id=args.id
        )
    print(json.dumps(status, indent=1) if args.json else format_status(status))


if __name__ == "__main__":
    main()
