"""Snapshot commit and read cost against the store's history, on a directory and on a real S3 server.

    ./lwd py benchmarks/store_commits.py [--episodes 1000,10000,100000] [--batch 100] [--s3]

Builds a store's history in commits of `--batch` episodes up to each size in `--episodes`, then
times at that size: 50 commits of one episode each (what the bridge does at a quiet moment), a
reader that keeps up (`changes_since` the previous version: what the learner and the monitor do),
and a reader that starts cold (`latest_snapshot`: the whole history, through the segments). For
comparison, "full list (before)" is the least a commit cost before incremental snapshots: read
the previous list and write every id once more (JSON, atomic replace, local disk; the old commit
also listed the whole episodes folder, not counted here). The snapshot cost is measured alone: commits name their episodes' ids
and sha256 (as the bridge does), so no episode payload is uploaded. `--s3` runs the same against a
SeaweedFS server it starts on loopback (lwd_testing.s3_server).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from lwd_common.store import SEGMENT_VERSIONS, EpisodeStore, atomic_write

HASH = "0" * 64


def ms(samples: list[float]) -> str:
    s = sorted(samples)
    return f"p50 {1e3 * statistics.median(s):7.2f} / p99 {1e3 * s[int(0.99 * (len(s) - 1))]:7.2f} ms"


def run(location: str, sizes: list[int], batch: int, scratch: Path) -> None:
    store = EpisodeStore(location)
    n = 0
    for size in sizes:
        t0 = time.perf_counter()
        while n < size:
            k = min(batch, size - n)
            store.commit_snapshot({f"e{n + i:08d}": HASH for i in range(k)})
            n += k
        built = time.perf_counter() - t0
        commits, follow = [], []
        reader = EpisodeStore(location)
        seen = reader.head_version()
        for _ in range(50):
            t = time.perf_counter()
            store.commit_snapshot({f"e{n:08d}": HASH})
            commits.append(time.perf_counter() - t)
            n += 1
            t = time.perf_counter()
            new = reader.changes_since(seen)
            follow.append(time.perf_counter() - t)
            assert len(new.episode_ids) == 1
            seen = new.version
        t = time.perf_counter()
        snap = EpisodeStore(location).latest_snapshot()
        cold = time.perf_counter() - t
        assert snap is not None and len(snap.episode_ids) == n
        legacy = []
        full = scratch / "full.json"
        atomic_write(full, json.dumps({"version": 1, "episode_ids": list(snap.episode_ids)}).encode())
        for _ in range(5):
            t = time.perf_counter()
            ids = json.loads(full.read_bytes())["episode_ids"] + [f"x{n}"]
            atomic_write(full, json.dumps({"version": 1, "episode_ids": ids}).encode())
            legacy.append(time.perf_counter() - t)
        print(
            f"{n:>7} episodes, {snap.version:>6} versions (history built in {built:5.1f} s):\n"
            f"    commit of 1 episode   {ms(commits)}\n"
            f"    reader keeping up     {ms(follow)}\n"
            f"    cold reader, all      {1e3 * cold:9.1f} ms\n"
            f"    full-list commit (before) {ms(legacy)}",
            flush=True,
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", default="1000,10000,100000", help="history sizes, comma-separated")
    p.add_argument("--batch", type=int, default=100, help="episodes per commit while building the history")
    p.add_argument("--s3", action="store_true", help="against a SeaweedFS S3 server started here")
    a = p.parse_args()
    sizes = sorted(int(x) for x in a.episodes.split(","))
    print(f"segments of {SEGMENT_VERSIONS} versions; history built in commits of {a.batch} episodes")
    with tempfile.TemporaryDirectory(prefix="lwd_store_bench_") as tmp:
        scratch = Path(tmp)
        if not a.s3:
            print(f"directory store in {tmp}")
            run(str(scratch / "store"), sizes, a.batch, scratch)
            return 0
        from lwd_testing.s3_server import seaweedfs

        with seaweedfs(scratch / "seaweedfs") as s3:
            print(f"S3 store on SeaweedFS at {s3.endpoint}")
            run(s3.url("lwd/bench"), sizes, a.batch, scratch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
