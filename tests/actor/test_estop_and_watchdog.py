"""E-stop (latched, hold then silence, explicit reset) and the command watchdog, on the ROS-free core
with a real ONNX policy, worker thread and recorder; time is driven by the test (the stall watch's
thread runs on real time)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import make_obs
from test_actor_core import DT, Rig

from lwd_actor.core.actor import ActorConfig
from lwd_actor.core.episode_fsm import EpisodeState, TransitionError
from lwd_actor.core.inference_worker import InferenceResult
from lwd_actor.core.safety import HoldReason
from lwd_actor.core.watchdog import EStop, StallWatch, WatchdogConfig
from lwd_common.episode import ActionSource, Label


@pytest.fixture
def rig(tmp_path, limits):
    r = Rig(tmp_path, limits, ActorConfig(estop_hold_s=0.2))
    yield r
    r.close()


def run_policy(rig: Rig, ticks: int = 10) -> np.ndarray:
    rig.start()
    for _ in range(ticks):
        res = rig.tick()
    assert res.source is ActionSource.POLICY
    return res.command


def test_estop_aborts_the_episode_holds_then_sends_nothing(rig):
    last = run_policy(rig)
    ended = rig.core.engage_estop("operator pressed the red button", now=rig.core.step * DT)
    assert ended is not None and ended.reason == "estop" and ended.label is Label.FAILURE
    assert rig.core.state is EpisodeState.DONE
    held = [rig.tick() for _ in range(12)]  # 0.4 s at 30 Hz; hold lasts 0.2 s
    assert all(r.estop and r.hold_reason is HoldReason.ESTOP for r in held)
    commands = [r.command for r in held]
    assert commands[0] is not None and all(np.array_equal(c, last) for c in commands[:5])
    assert commands[-1] is None and all(c is None for c in commands[7:])
    rig.recorder.flush()
    ep = rig.store.get("robot0-ep1")
    assert ep.outcome.reason == "estop" and "red button" in ep.outcome.note


def test_estop_is_latched_until_an_explicit_reset_and_blocks_starts(rig):
    run_policy(rig)
    rig.core.engage_estop("service", now=rig.core.step * DT)
    rig.core.engage_estop("again", now=rig.core.step * DT)  # already engaged: no change
    assert rig.core.estop.reason == "service" and rig.core.estop.engagements == 1
    for _ in range(40):
        rig.tick()
    assert rig.core.estop.engaged
    with pytest.raises(TransitionError, match=r"e-stop engaged \(service\); reset it first"):
        rig.core.start_episode("robot0-ep2", "pick", "", rig.core.step * DT)
    assert rig.core.reset_estop() == "service"
    assert rig.tick().command is None and not rig.tick().estop
    rig.core.start_episode("robot0-ep2", "pick", "", rig.core.step * DT)
    assert rig.core.state is EpisodeState.RUNNING


def test_estop_topic_false_does_not_reset_and_reset_waits_for_the_input_to_clear(rig):
    run_policy(rig)
    assert rig.core.set_estop_input(True, rig.core.step * DT) is not None
    with pytest.raises(TransitionError, match="input still says engaged"):
        rig.core.reset_estop()
    assert rig.core.set_estop_input(False, rig.core.step * DT) is None
    assert rig.core.estop.engaged  # latched: releasing the button is not a reset
    rig.core.reset_estop()
    assert not rig.core.estop.engaged
    with pytest.raises(TransitionError, match="not engaged"):
        rig.core.reset_estop()


def test_estop_while_idle_sends_no_hold_of_an_old_command(rig):
    run_policy(rig)
    rig.core.stop_episode(abort=True)
    rig.tick()
    rig.core.engage_estop("idle", now=rig.core.step * DT)
    res = rig.tick()
    assert res.estop and res.command is None  # the actor was not commanding: it must not start now


def test_estop_hold_never_moves_and_lasts_at_most_hold_s():
    stop = EStop(hold_s=0.5)
    cmd = np.ones(16)
    assert stop.engage("x", 10.0, cmd)
    cmd[:] = 5.0  # the caller's array changing later must not change what is held
    assert np.array_equal(stop.command(10.4), np.ones(16)) and stop.command(10.5) is None
    assert stop.command(9.0) is None  # clock jumped back (sim reset): no endless hold


def test_a_control_thread_stall_holds_and_replans_from_a_fresh_chunk(rig):
    run_policy(rig)
    assert rig.core.scheduler.remaining(rig.core.step) > 0
    late = rig.core.step + 9  # 0.3 s without a tick: beyond the 0.25 s bound
    res = rig.core.tick(late * DT, make_obs(late * DT, rig.q), rig.worker.poll())
    assert res.source is ActionSource.HOLD and res.hold_reason is HoldReason.WATCHDOG
    assert "control thread stalled 0.3" in res.watchdog and rig.core.watchdog.trips["control"] == 1
    assert res.request is not None and res.request.start_step == res.step + 1  # a plan for now
    np.testing.assert_array_equal(res.command, rig.q)
    rig.worker.submit(res.request)
    rig.worker.wait_idle()
    assert rig.tick().source is ActionSource.POLICY


def test_a_short_late_tick_is_not_a_stall(rig):
    run_policy(rig)
    late = rig.core.step + 5  # 0.17 s: missed ticks, not a watchdog trip
    res = rig.core.tick(late * DT, make_obs(late * DT, rig.q), rig.worker.poll())
    assert res.source is ActionSource.POLICY and not res.watchdog


def test_stalled_inference_holds_with_the_watchdog_reason_and_is_asked_again(tmp_path, limits):
    r = Rig(tmp_path, limits, ActorConfig(watchdog=WatchdogConfig(inference_stall_s=0.5)))
    try:
        run_policy(r, ticks=3)
        r.worker.close()  # inference stops answering: requests stay in flight for ever
        reasons, requests = [], []
        for _ in range(60):
            res = r.tick(wait_inference=False)
            reasons.append(res.hold_reason)
            if res.request is not None:
                requests.append(res.step)
        trips = r.core.watchdog.trips["inference"]
        assert trips >= 2 and "inference in flight" in r.core.watchdog.last_trip
        assert HoldReason.WATCHDOG in reasons and reasons[-1] is HoldReason.WATCHDOG
        assert len(requests) >= 1 + trips  # every trip asks again on the current observation
    finally:
        r.close()


def test_watchdog_bounds_of_zero_turn_the_checks_off(tmp_path, limits):
    r = Rig(tmp_path, limits, ActorConfig(watchdog=WatchdogConfig(control_stall_s=0, inference_stall_s=0)))
    try:
        run_policy(r)
        late = r.core.step + 30
        res = r.core.tick(late * DT, make_obs(late * DT, r.q), r.worker.poll())
        assert not res.watchdog and r.core.watchdog.trips == {"control": 0, "inference": 0}
    finally:
        r.close()


def test_the_stall_watch_reports_a_stopped_heartbeat_once_per_stall_while_it_lasts():
    beat = [time.monotonic()]
    stalls: list[float] = []
    reported = threading.Event()
    watch = StallWatch(lambda: beat[0], 0.15, lambda age: (stalls.append(age), reported.set()), period_s=0.01)
    watch.start()
    try:
        for _ in range(20):  # beating every 20 ms: no stall
            beat[0] = time.monotonic()
            time.sleep(0.02)
        assert stalls == []
        assert reported.wait(5.0)  # the beat stopped: reported while it is stopped, not when it resumes
        time.sleep(0.3)
        assert len(stalls) == 1 and stalls[0] > 0.15  # once per stall
        reported.clear()
        beat[0] = time.monotonic()  # it resumed, then stops again: a second stall
        assert reported.wait(5.0) and len(stalls) == 2
    finally:
        watch.stop()


def test_the_stall_watch_waits_for_the_first_beat():
    stalls: list[float] = []
    watch = StallWatch(lambda: None, 0.01, stalls.append, period_s=0.01)
    watch.start()
    time.sleep(0.1)
    watch.stop()
    assert stalls == []


# --- a policy that breaks its contract at run time ---------------------------------------------------
def feed(rig, actions: np.ndarray):
    """Answer the tick's chunk request with `actions` (as a broken graph would) on the next tick."""
    asked = rig.tick(wait_inference=False)
    request = asked.request or rig.core.execution.in_flight
    assert request is not None
    now = rig.core.step * DT
    return rig.core.tick(now, make_obs(now, rig.q), [InferenceResult(request, 99, actions, 1.0, "vbad", "")])


@pytest.mark.parametrize(
    ("actions", "why"),
    [
        (np.zeros((30, 15)), "shape [30, 15], the contract is [30, 16]"),
        (np.full((30, 16), np.nan), "non-finite"),
        (np.full((30, 16), 1e6), "outside its range"),
    ],
    ids=["shape", "nan", "1e6 rad"],
)
def test_a_chunk_that_breaks_the_policy_contract_faults_the_actor(rig, actions, why):
    rig.start()
    res = feed(rig, actions)
    assert why in res.policy_fault and "vbad" in res.policy_fault
    assert res.estop and res.hold_reason is HoldReason.ESTOP  # never executed, not clamped
    assert res.ended is not None and res.ended.reason == "policy_fault" and res.ended.label is Label.FAILURE
    assert rig.core.counters.policy_faults == 1 and rig.core.estop.reason.startswith("policy fault: ")
    with pytest.raises(TransitionError, match="e-stop engaged"):
        rig.core.start_episode("robot0-ep2", "pick", "", now=rig.core.step * DT)
    rig.core.reset_estop()  # an explicit reset clears it
    rig.core.start_episode("robot0-ep2", "pick", "", now=rig.core.step * DT)


def test_a_chunk_as_far_outside_the_joint_range_as_trained_policies_go_is_clamped_not_a_fault(rig, limits):
    rig.start()
    # trained flow policies were measured overshooting the gripper range by up to 0.35 x the range
    near = np.tile(limits.upper + 0.4 * (limits.upper - limits.lower), (30, 1))
    res = feed(rig, near)
    assert res.policy_fault == "" and not res.estop and rig.core.counters.policy_faults == 0
