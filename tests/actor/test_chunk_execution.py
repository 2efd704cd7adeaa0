"""ChunkExecution: the one place that decides when a chunk is asked for, where its row 0 belongs,
when it arrives and how it is stitched (shared by ActorCore and the simulator's evaluation)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_obs

from lwd_actor.actor_node import PARAMETERS
from lwd_actor.core.actor import ActorConfig, ActorCore
from lwd_actor.core.chunk_execution import ChunkExecution, delay_ticks_for_latency
from lwd_actor.core.scheduler import MergeMode, SchedulerConfig

H, J = 30, 16


def chunk(value: float) -> np.ndarray:
    """Rows value + k / 1000: which chunk and which row a target came from."""
    return value + np.arange(H)[:, None] / 1000 + np.zeros((H, J))


def test_scheduler_defaults_are_the_actor_parameters_defaults():
    cfg = SchedulerConfig()
    assert PARAMETERS["request_threshold"][0] == cfg.request_threshold
    assert PARAMETERS["merge"][0] == cfg.merge.value and type(PARAMETERS["merge"][0]) is str
    assert PARAMETERS["blend_steps"][0] == cfg.blend_steps
    assert PARAMETERS["ensemble_decay"][0] == cfg.ensemble_decay


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


def test_actor_core_requests_carry_the_real_time_chunking_inputs(limits):
    core = ActorCore(ActorConfig(), limits, None, "v1")
    core.tick(0.0, make_obs(0.0))
    core.start_episode("e", "pick", "", now=core.step / 30)
    first = core.tick(core.step / 30, make_obs(core.step / 30)).request
    assert first is not None and first.prefix_len == 0 and first.delay == 0
    assert first.prefix is not None and first.prefix.shape == (H, J) and not first.prefix.any()
