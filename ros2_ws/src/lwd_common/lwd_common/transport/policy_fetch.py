"""Robot-side policy delivery: get the bridge's newest policy onto this robot, verified (its one job).

Asks the bridge which policy is newest, downloads it in `policy_chunk_bytes`
pieces into the `PolicyCache` (sha256 checked before the file is used), rolls a
version back when the actor cannot load it, and tells the bridge what the robot
runs. Every request waits at most `policy_timeout_s`, and a socket of its own
keeps downloads out of the episode stream's way.

Prefetch: one background thread does all downloads that nobody waits for:
`prefetch()` (the actor asks at every episode end; `on_ready` gets the verified
file) and, with `policy_prefetch_s > 0`, a poll that often. Then
`fetch_policy_if_newer` only looks at the local directory, so an episode
boundary never waits on the network.

Two entries, one path: `prefetch` (push: the actor node, which must never block)
and `fetch_policy_if_newer` (pull: a loop without a thread to spare, such as
`benchmarks/fleet_stream.py` or an integrator's script) both end in
`_sync_newest`; versions that failed to load are remembered in one place, the
`PolicyCache`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from lwd_common.policy_store import PolicyInfo, is_newer
from lwd_common.store import check_episode_id
from lwd_common.transport import protocol
from lwd_common.transport.connection import BridgeError, ClientConfig, RequestChannel
from lwd_common.transport.policy_cache import LocalPolicy, PolicyCache, PolicyHashMismatch

log = logging.getLogger("lwd.transport")

OnReady = Callable[[LocalPolicy], None]
MAX_QUEUED_REPORTS = 16  # `policy_loaded` frames kept while the bridge is unreachable


class PolicyFetcher:
    """Newest verified policy from the bridge into the local cache; rollback and load reports."""

    def __init__(self, config: ClientConfig, ctx: zmq.Context | None = None):
        check_episode_id(config.robot_id)
        self.config = config
        self.cache = PolicyCache(config.policy_root)
        self.error: str | None = None  # last refused download, for the actor's diagnostics
        self.counters: dict[str, int] = {"policy_downloads": 0, "policy_rejected": 0}
        self.policy_ready_at: dict[str, float] = {}  # version -> when it was verified on disk here
        self._channel = RequestChannel(config, "policy", ctx)
        self._lock = threading.Lock()  # one user of the channel and the cache at a time
        self._jobs = threading.Lock()
        self._wanted: tuple[str | None, OnReady | None] | None = None  # newest prefetch request wins
        self._reports: list[bytes] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"policy-fetch-{config.robot_id}", daemon=True)
        self._thread.start()

    # --- at an episode boundary (caller's thread) ---------------------------------------------------------

    def fetch_policy_if_newer(self, current_version: str | None) -> LocalPolicy | None:
        """The newest verified policy if it is newer than `current_version`, else None.

        Without `policy_prefetch_s` this asks the bridge and downloads now; with it the
        background thread already did, and this only looks at the local directory. None
        also when the bridge is unreachable or the download failed its sha256 check (the
        previous policy stays in place; see `error`, `counters`).
        """
        with self._lock:
            if self.config.policy_prefetch_s <= 0:
                return self._sync_newest(current_version)
            local = self.cache.local()
            if local and is_newer(local[-1].version, current_version):
                return local[-1]
            return None

    def prefetch(self, current_version: str | None, on_ready: OnReady | None = None) -> None:
        """Fetch anything newer than `current_version` in the background; never blocks.

        `on_ready(policy)` runs on the fetch thread once a newer verified file is on disk.
        A second call before the first ran replaces it (only the newest request matters).
        """
        with self._jobs:
            self._wanted = (current_version, on_ready)
        self._wake.set()

    def rollback_policy(
        self, bad_version: str, message: str = "load failed; rolled back"
    ) -> LocalPolicy | None:
        """The actor could not load `bad_version`: never fetch or offer it again; return the previous policy."""
        self.report_policy_loaded(bad_version, ok=False, message=message)
        with self._lock:
            return self.cache.rollback(bad_version)

    def report_policy_loaded(self, version: str, ok: bool = True, message: str = "") -> None:
        """Tell the bridge which policy this robot now runs (fleet status, publish->load latency); never blocks."""
        msg = protocol.encode("policy_loaded", version=version, ok=ok, loaded_at=time.time(), message=message)
        with self._jobs:
            self._reports = [*self._reports, msg][-MAX_QUEUED_REPORTS:]
        self._wake.set()

    def latest_policy_info(self) -> PolicyInfo | None:
        """Ask the bridge which policy is newest (BridgeError if it cannot be reached)."""
        with self._lock:
            return self._latest_info()

    def counters_snapshot(self) -> dict[str, int]:
        return dict(self.counters)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2 * self.config.policy_timeout_s + 1)
        if not self._thread.is_alive():  # else it still uses the socket; it dies with the process
            self._channel.close()

    # --- background thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        period = self.config.policy_prefetch_s
        next_poll = time.monotonic() + period
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_poll - time.monotonic()) if period > 0 else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._jobs:
                reports, self._reports = self._reports, []
                wanted, self._wanted = self._wanted, None
            try:
                self._send_reports(reports)
                if wanted is not None:
                    self._prefetch_once(*wanted)
                if period > 0 and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + period
                    self._prefetch_once(None, None)
            except Exception:  # noqa: BLE001 - keep prefetching; the next round may succeed
                log.exception("policy prefetch failed")

    def _send_reports(self, reports: list[bytes]) -> None:
        for i, msg in enumerate(reports):
            try:
                with self._lock:
                    self._channel.send(msg, self.config.policy_timeout_s)
            except BridgeError as exc:
                log.warning("policy report not delivered yet: %s", exc)
                with self._jobs:  # keep it (and the rest) for the next round
                    self._reports = [*reports[i:], *self._reports][-MAX_QUEUED_REPORTS:]
                return

    def _prefetch_once(self, current_version: str | None, on_ready: OnReady | None) -> None:
        with self._lock:
            if current_version is None:  # the periodic poll: anything newer than what is here
                local = self.cache.local()
                current_version = local[-1].version if local else None
            got = self._sync_newest(current_version)
        if got is not None and on_ready is not None:
            on_ready(got)

    # --- network + cache (caller holds self._lock) -------------------------------------------------------

    def _latest_info(self) -> PolicyInfo | None:
        reply = self._channel.request(
            protocol.encode("policy_query", current_version=""), self.config.policy_timeout_s
        )
        if reply["t"] != "policy_info":
            raise BridgeError(f"expected policy_info, got {reply['t']}")
        return PolicyInfo.from_dict(reply["info"]) if reply["info"] else None

    def _sync_newest(self, current_version: str | None) -> LocalPolicy | None:
        try:
            info = self._latest_info()
        except (BridgeError, ValueError) as exc:
            log.warning("policy query failed: %s", exc)
            return None
        if (
            info is None
            or not is_newer(info.version, current_version)
            or info.version in self.cache.bad_versions()
        ):
            return None
        have = self.cache.get(info.version)
        if have is not None:
            return have
        try:
            self._download(info)
            local = self.cache.install(info, self.cache.tmp_path)
        except PolicyHashMismatch as exc:
            self.counters["policy_rejected"] += 1
            self.error = str(exc)
            log.error("refusing policy: %s", exc)
            return None
        except (BridgeError, OSError) as exc:
            log.warning("policy download failed: %s", exc)
            self.cache.tmp_path.unlink(missing_ok=True)
            return None
        self.counters["policy_downloads"] += 1
        self.policy_ready_at[local.version] = time.time()
        return local

    def _download(self, info: PolicyInfo) -> None:
        with open(self.cache.tmp_path, "wb") as f:
            offset = 0
            while offset < info.size:
                msg = protocol.encode(
                    "policy_fetch", version=info.version, offset=offset, length=self.config.policy_chunk_bytes
                )
                reply: dict[str, Any] = self._channel.request(msg, self.config.policy_timeout_s)
                if (
                    reply["t"] != "policy_data"
                    or reply["version"] != info.version
                    or reply["offset"] != offset
                ):
                    raise BridgeError(f"unexpected reply to policy_fetch: {reply['t']}")
                if not reply["data"]:
                    raise BridgeError(f"bridge sent no data at offset {offset} of {info.size}")
                f.write(reply["data"])
                offset += len(reply["data"])
