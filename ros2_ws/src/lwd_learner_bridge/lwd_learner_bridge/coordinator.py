"""The coordinator: announced episodes in, snapshot versions out (its one job).

    python -m lwd_learner_bridge.coordinator --store s3://bucket/fleet --queue nats://127.0.0.1:4222

Pulls announcements (`announcements.py`) in batches, commits each batch as one snapshot version
of the store (`lwd_common.store`: create-only delta, then HEAD), and only then acknowledges the
batch. Killed at any point, it loses nothing and duplicates nothing: unacknowledged announcements
are delivered again and ids already committed are skipped; a delta written without its HEAD is
rolled forward by the next start. A store or queue that is down is waited for, not skipped. One
coordinator per store (a second one's commit is refused with StoreConflict, never interleaved).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from typing import Any

from lwd_common.queue import QueueError
from lwd_common.store import EpisodeStore, StoreConflict
from lwd_learner_bridge.announcements import AnnouncementConsumer

log = logging.getLogger("lwd.coordinator")
RETRY_S = 1.0


def commit_batch(store: EpisodeStore, batch: list[tuple[Any, Any]], stop: threading.Event) -> int | None:
    """Commit a batch's episodes as one version (retrying while the store is unreachable); its version."""
    added = {a.episode_id: a.sha256 for a, _ in batch}
    while not stop.is_set():
        try:
            return store.commit_snapshot(added).version
        except StoreConflict as exc:
            log.error("%s; is a second coordinator running on this store?", exc)
        except Exception as exc:  # noqa: BLE001 - an object store that is down: wait for it
            log.warning("commit failed (%s: %s); retrying in %.0f s", type(exc).__name__, exc, RETRY_S)
        stop.wait(RETRY_S)
    return None


def run(
    store_location: str,
    queue_url: str,
    stop: threading.Event,
    batch_size: int = 512,
    wait_s: float = 0.5,
) -> None:
    """Commit announcements until `stop` is set (the batch in hand is finished first)."""
    store = EpisodeStore(store_location)
    consumer: AnnouncementConsumer | None = None
    committed = 0
    try:
        while not stop.is_set():
            try:
                if consumer is None:
                    consumer = AnnouncementConsumer(queue_url)
                    log.info("coordinating %s from %s", store.location, queue_url)
                batch = consumer.fetch(batch_size, wait_s)
            except QueueError as exc:
                log.warning("queue unavailable (%s); retrying in %.0f s", exc, RETRY_S)
                stop.wait(RETRY_S)
                continue
            if not batch:
                continue
            version = commit_batch(store, batch, stop)
            if version is None:
                return  # stopped before the commit: the batch is delivered again next time
            try:
                consumer.ack([m for _, m in batch])
            except QueueError as exc:  # redelivered later and skipped as committed: no harm
                log.warning("ack failed (%s); the batch will be delivered again", exc)
            committed += len(batch)
            log.info("snapshot v%d: %d announcements (%d this run)", version, len(batch), committed)
    finally:
        if consumer is not None:
            consumer.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, help="episode store: a directory or s3://bucket/prefix")
    p.add_argument("--queue", required=True, help="NATS server with JetStream, e.g. nats://127.0.0.1:4222")
    p.add_argument("--batch", type=int, default=512, help="most announcements per snapshot version")
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    run(a.store, a.queue, stop, a.batch)
    log.info("stopped after %.0f s", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
