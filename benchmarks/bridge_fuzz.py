"""Bridge under attack, longer: hostile frames from several peers while a real robot client streams.

    .venv/bin/python benchmarks/bridge_fuzz.py --frames 30000 --duration 120 [--seed 7] [--keep DIR]

The same harness as `tests/bridge/test_fuzz.py` (`tests/bridge/fuzzing.py`): a real
`python -m lwd_learner_bridge.server` on loopback with its address space capped
(`--mem-limit-mb`), the limits of `fuzzing.FUZZ_LIMITS` unless `--default-limits`,
random + mutated + structured-hostile frames, an unterminated raw multipart
sender, and the project's robot client streaming good episodes meanwhile.
Prints the figures: frames sent by kind, status round trip of a monitor session
(p50 / p99 / max), bridge RSS (after start, peak, growth), log size, whether the
store holds exactly the good episodes, and the bridge's counters.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "bridge"))

from fuzzing import FUZZ_LIMITS, run_fuzz, start_server  # noqa: E402


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=30_000, help="hostile messages (each may be several frames)")
    p.add_argument(
        "--duration", type=float, default=120.0, help="seconds to spread them (and the good robot) over"
    )
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--peers", type=int, default=6, help="hostile sockets")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--zmtp-mb", type=int, default=512, help="bytes the unterminated multipart sender tries")
    p.add_argument("--mem-limit-mb", type=int, default=3000, help="address space cap of the bridge process")
    p.add_argument(
        "--default-limits", action="store_true", help="the bridge's default limits, not the fuzz ones"
    )
    p.add_argument("--keep", default="", help="keep the bridge root and log here")
    args = p.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bridge-fuzz-"))
    tmp.mkdir(parents=True, exist_ok=True)
    root, log_path, endpoint = tmp / "bridge", tmp / "bridge.log", free_endpoint()
    limits = () if args.default_limits else FUZZ_LIMITS
    max_frame = 16 << 20 if args.default_limits else 1 << 20
    proc = start_server(root, endpoint, log_path, args.mem_limit_mb, *limits)
    try:
        result = run_fuzz(
            root,
            endpoint,
            proc.pid,
            log_path,
            frames=args.frames,
            seed=args.seed,
            episodes=args.episodes,
            steps=args.steps,
            duration_s=args.duration,
            hostile_peers=args.peers,
            max_frame=max_frame,
            zmtp_bytes=args.zmtp_mb << 20,
            time_limit_s=args.duration * 3 + 60,
        )
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)
    summary = {"bridge_alive": alive, "limits": list(limits) or "defaults", **result.summary()}
    print(json.dumps(summary, indent=1))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    ok = alive and result.good_idle and result.stored == result.expected and result.probe_failures == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
