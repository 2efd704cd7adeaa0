"""Chunk scheduler: stitching by step index, merge modes, dropping the past, hold-on-dry counting."""

import numpy as np
import pytest

from lwd_common.execution.scheduler import ChunkScheduler, MergeMode, SchedulerConfig


def chunk(value: float, horizon: int = 30) -> np.ndarray:
    return np.full((horizon, 16), value)


def test_chunk_rows_are_served_by_step_index():
    s = ChunkScheduler()
    s.add_chunk(10, np.arange(30)[:, None] * np.ones(16), chunk_id=1, now_step=10)
    got = s.pop(12)
    assert got.chunk_id == 1 and got.target[0] == 2.0


def test_rows_already_in_the_past_are_dropped_on_arrival():
    s = ChunkScheduler()
    kept = s.add_chunk(10, chunk(1.0), chunk_id=1, now_step=14)
    assert kept == 26 and s.dropped_rows == 4
    assert s.remaining(14) == 26


def test_replace_merge_lets_the_newer_chunk_win_on_the_overlap():
    s = ChunkScheduler(SchedulerConfig(merge=MergeMode.REPLACE))
    s.add_chunk(0, chunk(1.0), chunk_id=1, now_step=0)
    s.add_chunk(20, chunk(2.0), chunk_id=2, now_step=20)
    assert s.pop(19).target[0] == 1.0
    got = s.pop(20)
    assert got.target[0] == 2.0 and got.chunk_id == 2
    assert s.remaining(21) == 29


def test_blend_merge_cross_fades_from_old_to_new_over_the_overlap():
    s = ChunkScheduler(SchedulerConfig(merge=MergeMode.BLEND, blend_steps=4))
    s.add_chunk(0, chunk(0.0), chunk_id=1, now_step=0)
    s.add_chunk(20, chunk(1.0), chunk_id=2, now_step=20)
    values = [s.pop(k).target[0] for k in range(20, 26)]
    assert values == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])


def test_next_chunk_is_needed_when_remaining_steps_reach_the_threshold():
    s = ChunkScheduler(SchedulerConfig(request_threshold=10))
    s.add_chunk(0, chunk(0.0), chunk_id=1, now_step=0)
    assert not s.needs_chunk(19)  # 11 left
    assert s.needs_chunk(20)  # 10 left


def test_dry_timeline_returns_none_and_counts_one_event_per_run_out():
    s = ChunkScheduler()
    s.add_chunk(0, chunk(0.0, horizon=2), chunk_id=1, now_step=0)
    assert s.pop(0) is not None and s.pop(1) is not None
    assert s.pop(2) is None and s.pop(3) is None
    assert s.dry_events == 1 and s.dry_ticks == 2


def test_waiting_for_the_first_chunk_is_not_a_stall():
    s = ChunkScheduler()
    assert s.pop(0) is None
    assert s.dry_events == 0 and s.dry_ticks == 1


def test_clear_discards_pending_targets():
    s = ChunkScheduler()
    s.add_chunk(0, chunk(0.0), chunk_id=1, now_step=0)
    s.clear()
    assert s.remaining(0) == 0 and s.pop(0) is None


def test_a_chunk_that_is_entirely_in_the_past_adds_nothing():
    s = ChunkScheduler()
    assert s.add_chunk(0, chunk(0.0), chunk_id=1, now_step=40) == 0
    assert s.remaining(40) == 0


def test_blending_does_not_modify_the_arriving_chunk():
    s = ChunkScheduler(SchedulerConfig(merge=MergeMode.BLEND))
    s.add_chunk(0, chunk(0.0), chunk_id=1, now_step=0)
    new = chunk(1.0)
    s.add_chunk(10, new, chunk_id=2, now_step=10)
    assert (new == 1.0).all()


def test_ensemble_averages_overlapping_predictions_with_exponential_weights_oldest_first():
    m = 0.5
    s = ChunkScheduler(SchedulerConfig(merge=MergeMode.ENSEMBLE, ensemble_decay=m))
    s.add_chunk(0, chunk(0.0), chunk_id=1, now_step=0)
    s.add_chunk(10, chunk(1.0), chunk_id=2, now_step=10)
    s.add_chunk(20, chunk(2.0), chunk_id=3, now_step=20)
    w = np.exp(-m * np.arange(3))  # age index 0 = the oldest prediction of the step
    assert s.pop(15).target[0] == pytest.approx((w[0] * 0.0 + w[1] * 1.0) / w[:2].sum())
    assert s.pop(25).target[0] == pytest.approx((w @ [0.0, 1.0, 2.0]) / w.sum())
    assert s.pop(35).target[0] == pytest.approx((w[0] * 1.0 + w[1] * 2.0) / w[:2].sum())
    assert s.pop(45).target[0] == pytest.approx(2.0)  # only the newest chunk predicts step 45


def test_ensemble_executes_a_single_chunk_as_is():
    s = ChunkScheduler(SchedulerConfig(merge=MergeMode.ENSEMBLE))
    rows = np.arange(30)[:, None] * np.ones(16) + 0.25
    s.add_chunk(5, rows, chunk_id=1, now_step=5)
    got = [s.pop(k) for k in range(5, 35)]
    assert all(g.chunk_id == 1 for g in got)
    np.testing.assert_array_equal(np.stack([g.target for g in got]), rows)


def test_ensemble_decay_must_be_non_negative():
    with pytest.raises(ValueError):
        SchedulerConfig(ensemble_decay=-0.1)
