"""Asynchronous inference: a plain thread that runs the policy on the newest request.

The control loop never waits for the policy. It submits a request (observation,
the step the chunk starts at, a generation number) and later drains finished
results. Only the newest pending request is kept: if the loop submits again
before the worker picked the last one up, the older one is superseded (counted).
ONNX Runtime releases the GIL while it computes, so the control thread keeps
its timing while a chunk is being inferred.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lwd_actor.core.observation import Observation


@dataclass(frozen=True)
class InferenceRequest:
    obs: Observation
    start_step: int  # control step of the chunk's first row
    generation: int  # results of an older generation are discarded by the actor
    instruction: str
    # Real-time chunking inputs (`core.chunk_execution.ChunkRequest`); policies without them ignore these.
    prefix: np.ndarray | None = None  # float32 [H, J]: the planned targets from start_step on (0 beyond)
    prefix_len: int = 0  # rows of `prefix` that are planned
    delay: int = 0  # ticks the chunk is expected late: rows of `prefix` executed before it arrives


@dataclass(frozen=True)
class InferenceResult:
    request: InferenceRequest
    chunk_id: int
    actions: np.ndarray | None  # [30, 16] float64; None if inference failed
    latency_ms: float
    policy_version: str
    error: str = ""


class Policy(Protocol):  # the part of OnnxPolicy the worker needs (structural)
    version: str

    def infer(
        self,
        obs: Observation,
        instruction: str,
        prefix: np.ndarray | None = None,
        prefix_len: int | None = None,
        delay: int | None = None,
    ) -> np.ndarray: ...


class InferenceWorker:
    def __init__(self, policy: Policy, on_result: Callable[[InferenceResult], None] | None = None):
        self._policy = policy
        self._on_result = on_result
        self._cond = threading.Condition()
        self._pending: InferenceRequest | None = None
        self._results: deque[InferenceResult] = deque()
        self._stop = False
        self._busy = False
        self._chunk_ids = itertools.count(1)
        self.superseded = 0
        self.failures = 0
        self.latencies_ms: deque[float] = deque(maxlen=10000)
        self._thread = threading.Thread(target=self._run, name="lwd-inference", daemon=True)
        self._thread.start()

    @property
    def policy(self) -> Policy:
        return self._policy

    def set_policy(self, policy: Policy) -> None:
        """Swap the policy (the actor only does this between episodes); waits for a running inference."""
        with self._cond:
            while self._busy:
                self._cond.wait()
            self._policy = policy
            self._pending = None

    def submit(self, request: InferenceRequest) -> None:
        with self._cond:
            if self._pending is not None:
                self.superseded += 1
            self._pending = request
            self._cond.notify_all()

    def poll(self) -> list[InferenceResult]:
        """Finished results in completion order (thread-safe, non-blocking)."""
        with self._cond:
            out = list(self._results)
            self._results.clear()
            return out

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until nothing is pending or running (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the thread (an inference in flight finishes first); True if it ended within `timeout`."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                request, self._pending = self._pending, None
                assert request is not None, "the wait above ends only on a request or on stop"
                policy = self._policy
                self._busy = True
            t0 = time.perf_counter()
            actions, error = None, ""
            try:
                actions = policy.infer(
                    request.obs,
                    request.instruction,
                    prefix=request.prefix,
                    prefix_len=request.prefix_len,
                    delay=request.delay,
                )
            except Exception as exc:  # noqa: BLE001 - a failed inference must not kill the worker
                error = f"{type(exc).__name__}: {exc}"
            latency = (time.perf_counter() - t0) * 1e3
            result = InferenceResult(request, next(self._chunk_ids), actions, latency, policy.version, error)
            with self._cond:
                self._busy = False
                if error:
                    self.failures += 1
                else:
                    self.latencies_ms.append(latency)
                self._results.append(result)
                self._cond.notify_all()
            if self._on_result is not None:
                self._on_result(result)
