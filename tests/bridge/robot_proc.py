"""A robot process for the tests and the benchmark: streams episodes through a real BridgeClient.

    python robot_proc.py --endpoint E --robot-id R --spool DIR --episodes K --steps N [--step-delay S]

After each `end()` returns it appends {"episode_id", "content_hash"} to <spool>/../<robot>.done.jsonl:
those are the episodes the store must end up holding exactly once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bridgeutil import make_meta, make_steps, outcome  # noqa: E402

from lwd_common.episode import Episode, content_hash  # noqa: E402
from lwd_common.transport import BridgeClient, ClientConfig  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--robot-id", required=True)
    p.add_argument("--spool", required=True)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--step-delay", type=float, default=0.0)
    p.add_argument("--ack-timeout", type=float, default=0.3)
    p.add_argument("--wait-idle", type=float, default=60.0)
    args = p.parse_args()
    done_log = Path(args.spool).parent / f"{args.robot_id}.done.jsonl"
    client = BridgeClient(
        ClientConfig(
            endpoint=args.endpoint,
            robot_id=args.robot_id,
            spool_dir=args.spool,
            steps_per_chunk=10,
            ack_timeout_s=args.ack_timeout,
            max_backoff_s=1.0,
            stats_every_s=0.2,
        )
    )
    for k in range(args.first, args.first + args.episodes):
        meta, steps = make_meta(args.robot_id, k), make_steps(args.steps, seed=k)
        client.begin(meta)
        for s in steps:
            client.add_step(s)
            if args.step_delay:
                time.sleep(args.step_delay)
        client.end(outcome(len(steps), k))
        digest = content_hash(Episode.from_steps(meta, steps, outcome(len(steps), k)))
        with open(done_log, "a") as f:
            f.write(json.dumps({"episode_id": meta.episode_id, "content_hash": digest}) + "\n")
        print(f"ended {meta.episode_id}", flush=True)
    idle = client.wait_idle(args.wait_idle)
    time.sleep(0.3)  # let the last robot_stats reach the bridge
    print(f"idle={idle} stats={json.dumps(client.stats())}", flush=True)
    client.close()
    sys.exit(0 if idle else 3)


if __name__ == "__main__":
    main()
