"""Stored episodes announced on a durable queue (NATS JetStream), for a coordinator to commit (its one job).

The bridge stores an episode (lwd_common.store: a directory or S3), then publishes one
`Announcement` on the stream `LWD_EPISODES` (subject `lwd.episodes.<robot>`) and waits for
JetStream's acknowledgement: only then is the episode durable twice over (object + announcement)
and only then is the robot told `committed`. The coordinator (`coordinator.py`) pulls
announcements with explicit acknowledgement, commits a snapshot, then acknowledges them; one it
never acknowledged (it died) is delivered again, and committing an id twice adds it once. The
connection itself is `lwd_common.queue`'s (why NATS is said there).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from lwd_common.queue import DEFAULT_TIMEOUT_S, JetStream, PullConsumer

STREAM = "LWD_EPISODES"
SUBJECTS = "lwd.episodes.>"


@dataclass(frozen=True)
class Announcement:
    """One stored episode: where it is and what its bytes hash to."""

    episode_id: str
    sha256: str
    robot_id: str
    ended_at: float

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @staticmethod
    def decode(data: bytes) -> Announcement:
        d = json.loads(data)
        return Announcement(str(d["episode_id"]), str(d["sha256"]), str(d["robot_id"]), float(d["ended_at"]))


class Announcer:
    """The bridge's side: publish announcements and wait for JetStream to store them."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S):
        self._conn = JetStream(url, "lwd-bridge", {STREAM: SUBJECTS}, timeout_s)

    def publish(self, announcements: list[Announcement]) -> None:
        """All of them stored by the queue, or QueueError (then none may be assumed stored).
        An episode announced twice (within the queue's duplicate window) is stored once."""
        self._conn.publish([(f"lwd.episodes.{a.robot_id}", a.encode(), a.episode_id) for a in announcements])

    def close(self) -> None:
        self._conn.close()


class AnnouncementConsumer:
    """The coordinator's side: a durable pull consumer; nothing is gone until it is acknowledged."""

    def __init__(self, url: str, durable: str = "coordinator", timeout_s: float = DEFAULT_TIMEOUT_S):
        self._conn = JetStream(url, f"lwd-{durable}", {STREAM: SUBJECTS}, timeout_s)
        self._consumer = PullConsumer(self._conn, STREAM, SUBJECTS, durable)

    def fetch(self, max_messages: int, wait_s: float) -> list[tuple[Announcement, Any]]:
        """Up to `max_messages` announcements (waiting at most `wait_s`), each with its message for `ack`."""
        return [(Announcement.decode(m.data), m) for m in self._consumer.fetch(max_messages, wait_s)]

    def ack(self, messages: list[Any]) -> None:
        self._consumer.ack(messages)

    def close(self) -> None:
        self._conn.close()
