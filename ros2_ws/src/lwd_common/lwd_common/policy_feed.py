"""Policy fan-out through the object store and the queue: the learner offers, every bridge follows.

When the learner and the bridges share no filesystem (the S3 + queue data plane), the learner puts
each published version into the object store beside the episodes (`policies/<version>.onnx`, then
`policies/<version>.json`, both create-only) and announces it on the stream `LWD_POLICIES`
(message id = the version, so a repeated announcement is stored once). Each bridge pulls the
stream with a durable consumer of its own name (every bridge gets every version), downloads the
version, checks its sha256 and mirrors it into its local `PolicyStore` under the same name; only
then does it acknowledge. Robots fetch from their bridge as before (verified again, swapped at an
episode boundary), so nothing downstream of the bridge changes.

Failures: a queue that is down leaves the learner's announcements pending (sent with the next
offer, or `flush`); a store or queue that is down leaves a bridge's message unacknowledged, and it
is delivered again. A version whose bytes do not match its announced hash is refused for good
(logged and acknowledged): it is never served.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import asdict, dataclass

from lwd_common.blobs import BlobMissing, open_blobs
from lwd_common.policy_store import PolicyInfo, PolicyStore
from lwd_common.queue import JetStream, PullConsumer, QueueError

log = logging.getLogger("lwd.policy_feed")

STREAM = "LWD_POLICIES"
SUBJECT = "lwd.policies"
RETRY_S = 1.0


def onnx_key(version: str) -> str:
    return f"policies/{version}.onnx"


def info_key(version: str) -> str:
    return f"policies/{version}.json"


def consumer_name(bridge_id: str) -> str:
    """A durable consumer name (letters, digits, '-' and '_') for one bridge: each bridge its own."""
    return "bridge-" + re.sub(r"[^A-Za-z0-9_-]", "_", bridge_id)


@dataclass(frozen=True)
class PolicyAnnouncement:
    version: str
    sha256: str

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @staticmethod
    def decode(data: bytes) -> PolicyAnnouncement:
        d = json.loads(data)
        return PolicyAnnouncement(str(d["version"]), str(d["sha256"]))


class PolicyFeed:
    """The learner's side: upload each version its policy store published, then announce it (process 0).

    Versions wait in `pending` until both are done: a store or queue that is down delays the feed
    and never stops the learner."""

    def __init__(self, published: PolicyStore, store_location: str, queue_url: str):
        self.published = published
        self.blobs = open_blobs(store_location)
        self.queue_url = queue_url
        self._queue: JetStream | None = None
        self.pending: list[str] = []  # versions not yet announced, oldest first
        self._uploaded: set[str] = set()

    def offer(self, version: str) -> bool:
        """Feed `version` (and whatever is still pending); True once everything is announced."""
        self.pending.append(version)
        return self.flush()

    def flush(self) -> bool:
        """Upload and announce what is pending; False (kept for the next call) while either is down."""
        try:
            for version in self.pending:
                if version not in self._uploaded:
                    info = self.published.get(version)
                    self.blobs.create(onnx_key(version), self.published.path_of(version).read_bytes())
                    self.blobs.create(info_key(version), info.to_json())
                    self._uploaded.add(version)  # the bytes first: a reader of the info finds them
            if self.pending:
                if self._queue is None:
                    self._queue = JetStream(self.queue_url, "lwd-learner-policies", {STREAM: SUBJECT})
                announcements = [PolicyAnnouncement(v, self.published.get(v).sha256) for v in self.pending]
                self._queue.publish([(SUBJECT, a.encode(), a.version) for a in announcements])
        except Exception as exc:  # noqa: BLE001 - store or queue down: keep them for the next call
            log.warning(
                "policy feed: %d versions pending (%s: %s)", len(self.pending), type(exc).__name__, exc
            )
            return False
        self._uploaded.difference_update(self.pending)
        self.pending.clear()
        return True

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()


class PolicyFollower:
    """A bridge's side: mirror every announced version into its local policy store, verified."""

    def __init__(self, store_location: str, queue_url: str, policies: PolicyStore, bridge_id: str):
        self.blobs = open_blobs(store_location)
        self.queue_url = queue_url
        self.policies = policies
        self.durable = consumer_name(bridge_id)
        self._queue: JetStream | None = None
        self._consumer: PullConsumer | None = None
        self.mirrored = 0
        self.refused = 0

    def step(self, wait_s: float = 1.0, batch: int = 16) -> list[str]:
        """Fetch and mirror one batch; the versions newly mirrored. Raises QueueError or the store's
        error while either is down (nothing is acknowledged then, so nothing is lost)."""
        if self._consumer is None:
            self._queue = JetStream(self.queue_url, f"lwd-{self.durable}", {STREAM: SUBJECT})
            self._consumer = PullConsumer(self._queue, STREAM, SUBJECT, self.durable)
        messages = self._consumer.fetch(batch, wait_s)
        new = []
        for message in messages:
            version = self._mirror(PolicyAnnouncement.decode(message.data))
            if version:
                new.append(version)
        if messages:
            self._consumer.ack(messages)
        return new

    def _mirror(self, a: PolicyAnnouncement) -> str | None:
        try:
            info = PolicyInfo.from_dict(json.loads(self.blobs.read(info_key(a.version))))
            if info.sha256 != a.sha256:
                raise ValueError(f"its info says sha256 {info.sha256[:12]}, the announcement {a.sha256[:12]}")
            if self.policies.mirror(info, self.blobs.read(onnx_key(a.version))):
                self.mirrored += 1
                log.info("policy %s mirrored from the feed", a.version)
                return a.version
            return None
        except (ValueError, KeyError, BlobMissing) as exc:  # never servable: refused, acknowledged, logged
            self.refused += 1
            log.error("policy %s refused: %s", a.version, exc)
            return None

    def run(self, stop: threading.Event, wait_s: float = 1.0) -> None:
        """Follow until `stop` is set, waiting RETRY_S after a failure of the queue or the store."""
        while not stop.is_set():
            try:
                self.step(wait_s)
            except Exception as exc:  # noqa: BLE001 - queue or store down: wait, nothing was acknowledged
                log.warning("policy feed: %s: %s; retrying in %.0f s", type(exc).__name__, exc, RETRY_S)
                if isinstance(exc, QueueError):
                    self._reset()
                stop.wait(RETRY_S)

    def _reset(self) -> None:
        if self._queue is not None:
            self._queue.close()
        self._queue = self._consumer = None

    def close(self) -> None:
        self._reset()
