"""Episode state machine: idle -> running -> awaiting label -> done, time limit, abort, swap window."""

import pytest

from lwd_actor.core.episode_fsm import EpisodeState, EpisodeStateMachine, TransitionError
from lwd_common.episode import Label


def running(limit: float = 10.0) -> EpisodeStateMachine:
    fsm = EpisodeStateMachine(time_limit_s=limit)
    fsm.start("ep1", "pick", "pick up the cube", now=0.0)
    return fsm


def test_stop_then_label_walks_running_awaiting_label_done():
    fsm = running()
    assert fsm.state is EpisodeState.RUNNING
    assert fsm.stop(abort=False) is None
    assert fsm.state is EpisodeState.AWAITING_LABEL
    ending = fsm.label(success=True, note="ok")
    assert fsm.state is EpisodeState.DONE
    assert ending.label is Label.SUCCESS and ending.reason == "labelled"


def test_time_limit_ends_a_running_episode_as_failure():
    fsm = running(limit=5.0)
    assert fsm.check_time_limit(4.9) is None
    ending = fsm.check_time_limit(5.0)
    assert ending.label is Label.FAILURE and ending.reason == "time_limit"
    assert fsm.state is EpisodeState.DONE


def test_abort_ends_as_failure_without_a_label():
    fsm = running()
    ending = fsm.stop(abort=True, reason="operator")
    assert ending.label is Label.FAILURE and ending.reason == "abort" and ending.note == "operator"
    assert fsm.state is EpisodeState.DONE


def test_label_is_refused_unless_an_episode_awaits_it():
    fsm = EpisodeStateMachine()
    with pytest.raises(TransitionError, match="awaiting a label"):
        fsm.label(True)
    fsm.start("ep1", "pick", "", 0.0)
    with pytest.raises(TransitionError, match="state running"):
        fsm.label(True)


def test_start_is_refused_while_an_episode_awaits_its_label():
    fsm = running()
    fsm.stop(abort=False)
    with pytest.raises(TransitionError, match="label it first"):
        fsm.start("ep2", "pick", "", 1.0)


def test_a_new_episode_may_start_after_done():
    fsm = running()
    fsm.stop(abort=True)
    fsm.start("ep2", "pick", "", 1.0)
    assert fsm.state is EpisodeState.RUNNING and fsm.episode_id == "ep2"


def test_stop_is_refused_when_nothing_runs():
    with pytest.raises(TransitionError, match="no episode is running"):
        EpisodeStateMachine().stop(abort=False)


def test_policy_swap_allowed_only_between_episodes():
    fsm = EpisodeStateMachine()
    assert fsm.can_swap_policy
    fsm.start("ep1", "pick", "", 0.0)
    assert not fsm.can_swap_policy
    fsm.stop(abort=False)
    assert not fsm.can_swap_policy
    fsm.label(False)
    assert fsm.can_swap_policy
