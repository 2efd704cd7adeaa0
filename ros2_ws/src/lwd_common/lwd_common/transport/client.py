"""One robot's link to the bridge: an `EpisodeStream` and a `PolicyFetcher` on one config.

A thin composition for callers that need both (the actor's bridge sink, the
fleet benchmark, tests): the sink calls go to the stream, the boundary calls to
the fetcher. All it adds is the wiring between the two: the fetcher's counters
ride along in the stream's `robot_stats`, and `stats`, `error` and `close`
cover both.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import zmq

from lwd_common.episode import EpisodeMeta, EpisodeOutcome, StepRecord
from lwd_common.transport.connection import ClientConfig
from lwd_common.transport.episode_stream import EpisodeStream
from lwd_common.transport.policy_cache import LocalPolicy, PolicyCache
from lwd_common.transport.policy_fetch import OnReady, PolicyFetcher
from lwd_common.transport.spool import Spool


class BridgeClient:
    """EpisodeSink that streams to the bridge, plus the policy fetcher's boundary calls."""

    def __init__(self, config: ClientConfig, ctx: zmq.Context | None = None):
        self.config = config
        self.fetcher = PolicyFetcher(config, ctx)
        try:
            self.stream = EpisodeStream(config, ctx, extra_counters=self.fetcher.counters_snapshot)
        except BaseException:
            self.fetcher.close()
            raise

    # --- EpisodeSink (the stream) ---------------------------------------------------------------------------

    def begin(self, meta: EpisodeMeta) -> None:
        self.stream.begin(meta)

    def add_step(self, step: StepRecord) -> None:
        self.stream.add_step(step)

    def end(self, outcome: EpisodeOutcome) -> None:
        self.stream.end(outcome)

    def pending_episodes(self) -> list[str]:
        return self.stream.pending_episodes()

    def wait_idle(self, timeout: float) -> bool:
        return self.stream.wait_idle(timeout)

    def wait_connected(self, timeout: float) -> None:
        self.stream.wait_connected(timeout)

    @property
    def spool(self) -> Spool:
        return self.stream.spool

    @property
    def commit_latencies(self) -> deque[float]:
        return self.stream.commit_latencies

    # --- policies (the fetcher) -----------------------------------------------------------------------------

    def fetch_policy_if_newer(self, current_version: str | None) -> LocalPolicy | None:
        return self.fetcher.fetch_policy_if_newer(current_version)

    def prefetch(self, current_version: str | None, on_ready: OnReady | None = None) -> None:
        self.fetcher.prefetch(current_version, on_ready)

    def rollback_policy(
        self, bad_version: str, message: str = "load failed; rolled back"
    ) -> LocalPolicy | None:
        return self.fetcher.rollback_policy(bad_version, message)

    def report_policy_loaded(self, version: str, ok: bool = True, message: str = "") -> None:
        self.fetcher.report_policy_loaded(version, ok, message)

    @property
    def policies(self) -> PolicyCache:
        return self.fetcher.cache

    @property
    def policy_ready_at(self) -> dict[str, float]:
        return self.fetcher.policy_ready_at

    # --- both ---------------------------------------------------------------------------------------------

    @property
    def error(self) -> str | None:
        """The last refusal: the stream's (connection, episodes) first, else the fetcher's (downloads)."""
        return self.stream.error or self.fetcher.error

    def stats(self) -> dict[str, Any]:
        return {**self.stream.stats(), **self.fetcher.counters_snapshot(), "error": self.error}

    def close(self) -> None:
        self.stream.close()
        self.fetcher.close()
