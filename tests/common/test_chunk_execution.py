"""ChunkExecution: the one place that decides when a chunk is asked for, where its row 0 belongs,
when it arrives and how it is stitched (shared by ActorCore and the simulator's evaluation; how
ActorCore uses it: tests/actor/test_actor_core.py)."""

from __future__ import annotations

import numpy as np
import pytest

from lwd_common.execution.chunk_execution import ChunkExecution, delay_ticks_for_latency
from lwd_common.execution.scheduler import MergeMode, SchedulerConfig

H, J = 30, 16


def chunk(value: float) -> np.ndarray:
    """Rows value + k / 1000: which chunk and which row a target came from."""
    return value + np.arange(H)[:, None] / 1000 + np.zeros((H, J))


@pytest.mark.parametrize("delay", [0, 3, 6])
def test_with_delay_d_the_first_d_ticks_after_a_request_execute_the_old_chunk(delay):
    ex = ChunkExecution(SchedulerConfig(merge=MergeMode.REPLACE), H, J)  # timing alone, no cross-fade
    first = ex.request(0)
    assert first is not None and first.start_step == 1
    ex.answered()
    ex.stitch(first.start_step, chunk(1.0), 1, step=1)
    t = 0
    req = None
    while req is None:  # each tick takes its target, then asks if the plan is short
        t += 1
        assert ex.pop(t) is not None
        req = ex.request(t)
    assert req.step == t
    assert req.start_step == t + 1 and ex.scheduler.remaining(t + 1) == SchedulerConfig().request_threshold
    executed = []
    for s in range(t + 1, t + 1 + delay + 3):
        if s == t + 1 + delay:  # arrives before this tick takes its target
            ex.answered()
            kept = ex.stitch(req.start_step, chunk(2.0), 2, step=s)
            assert kept == H - delay and ex.last_delay == delay
        executed.append(ex.pop(s))
    assert [e.chunk_id for e in executed] == [1] * delay + [2] * 3
    np.testing.assert_allclose(executed[delay].target, chunk(2.0)[delay])  # its row `delay`, on time


def test_a_request_carries_the_planned_prefix_its_length_and_the_delay():
    ex = ChunkExecution(SchedulerConfig(request_threshold=12), H, J)
    ex.stitch(1, chunk(1.0), 1, step=1)
    for s in range(1, 19):
        ex.pop(s)
    req = ex.request(18, delay=3)
    assert req is not None and req.start_step == 19 and req.prefix_len == 12 and req.delay == 3
    assert req.prefix.shape == (H, J) and req.prefix.dtype == np.float32
    np.testing.assert_allclose(req.prefix[:12], chunk(1.0)[18:30].astype(np.float32))
    assert not req.prefix[12:].any()
    assert ex.request(19) is None  # one request in flight
    ex.answered()
    assert ex.request(19) is not None


def test_a_chunk_inferred_within_one_control_period_is_in_time():
    assert delay_ticks_for_latency(0.0, 30.0) == 0
    assert delay_ticks_for_latency(0.0064, 30.0) == 0
    assert delay_ticks_for_latency(1 / 30, 30.0) == 0
    assert delay_ticks_for_latency(0.034, 30.0) == 1
    assert delay_ticks_for_latency(0.2, 30.0) == 5


def test_dry_ticks_count_only_after_the_timeline_had_a_chunk():
    ex = ChunkExecution(SchedulerConfig(), H, J)
    assert ex.pop(0) is None and ex.dry_ticks == 0  # waiting for the first chunk is not dry
    ex.stitch(1, chunk(1.0)[:2], 1, step=1)
    assert ex.pop(1) is not None and ex.pop(2) is not None
    assert ex.pop(3) is None and ex.dry_ticks == 1
