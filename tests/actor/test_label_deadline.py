"""An episode stopped without a label no longer blocks every new start forever: after the label
deadline it is stored without one (failure, reason label_timeout or unlabelled)."""

from __future__ import annotations

import pytest
from test_actor_core import DT, Rig

from lwd_actor.core.actor import ActorConfig
from lwd_actor.core.episode_fsm import EpisodeState, EpisodeStateMachine, TransitionError
from lwd_common.episode import Label


def awaiting(deadline: float, reason: str = "label_timeout") -> EpisodeStateMachine:
    fsm = EpisodeStateMachine(time_limit_s=60.0, label_deadline_s=deadline, label_timeout_reason=reason)
    fsm.start("ep1", "pick", "", now=0.0)
    fsm.stop(abort=False, now=5.0)
    return fsm


def test_waiting_state_and_time_left_are_reported_and_a_start_says_when_it_clears():
    fsm = awaiting(30.0)
    assert fsm.label_wait_s(12.0) == pytest.approx(7.0) and fsm.label_deadline_in_s(12.0) == pytest.approx(
        23.0
    )
    with pytest.raises(
        TransitionError, match=r"label it first, or in 23 s it is stored as a failure \(label_timeout\)"
    ):
        fsm.start("ep2", "pick", "", now=12.0)


def test_after_the_deadline_the_episode_is_stored_as_failure_and_starts_are_allowed():
    fsm = awaiting(30.0)
    assert fsm.check_label_deadline(34.9) is None
    ending = fsm.check_label_deadline(35.0)
    assert ending.label is Label.FAILURE and ending.reason == "label_timeout" and "30 s" in ending.note
    assert fsm.state is EpisodeState.DONE and fsm.label_wait_s(40.0) is None
    fsm.start("ep2", "pick", "", now=36.0)


def test_unlabelled_outcome_keeps_the_reason_learners_can_leave_out():
    ending = awaiting(1.0, "unlabelled").check_label_deadline(6.0)
    assert ending.reason == "unlabelled" and ending.label is Label.FAILURE


def test_deadline_zero_waits_for_the_label_forever():
    fsm = awaiting(0.0)
    assert fsm.check_label_deadline(1e9) is None and fsm.label_deadline_in_s(1e9) is None
    with pytest.raises(TransitionError, match=r"\(label it first\)$"):
        fsm.start("ep2", "pick", "", now=1e9)


def test_bad_deadline_settings_are_refused():
    with pytest.raises(ValueError, match="label_deadline_s"):
        EpisodeStateMachine(label_deadline_s=-1.0)
    with pytest.raises(ValueError, match="label_timeout_reason"):
        EpisodeStateMachine(label_deadline_s=1.0, label_timeout_reason="success")


def test_the_core_stores_an_unlabelled_episode_at_the_deadline_and_the_next_start_works(tmp_path, limits):
    r = Rig(tmp_path, limits, ActorConfig(label_deadline_s=1.0))
    try:
        r.start()
        for _ in range(10):
            r.tick()
        r.core.stop_episode(abort=False, now=r.core.step * DT)
        ended = [r.tick().ended for _ in range(40)]
        ending = next(e for e in ended if e is not None)
        assert ending.reason == "label_timeout" and r.core.state is EpisodeState.DONE
        assert ended.index(ending) == 30  # the tick 1 s after the stop (tick 0 is at the stop)
        r.recorder.flush()
        ep = r.store.get("robot0-ep1")
        assert ep.outcome.reason == "label_timeout" and not ep.success and ep.num_steps == 10
        r.core.start_episode("robot0-ep2", "pick", "", r.core.step * DT)
        assert r.core.state is EpisodeState.RUNNING
    finally:
        r.close()
