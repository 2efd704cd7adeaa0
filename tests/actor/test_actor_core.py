"""ActorCore: the control step end to end with a real ONNX policy, worker thread, recorder and store.

Time is driven by the test (tick k happens at t = k / 30), so these are deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_obs

from lwd_actor.core.actor import NO_CHUNK, ActorConfig, ActorCore
from lwd_actor.core.episode_fsm import EpisodeState, TransitionError
from lwd_actor.core.inference_worker import InferenceResult, InferenceWorker
from lwd_actor.core.policy_runtime import OnnxPolicy
from lwd_actor.core.recorder import EpisodeRecorder
from lwd_actor.core.safety import HoldReason
from lwd_actor.node_params import PARAMETERS
from lwd_common.episode import ActionSource, Label
from lwd_common.execution.scheduler import SchedulerConfig
from lwd_common.preprocessing import decode_jpeg
from lwd_common.store import EpisodeStore
from lwd_description.robot import CAMERA_NAMES
from lwd_testing.models import build_policy
from lwd_testing.sinks import DirectorySink

DT = 1 / 30


class Rig:
    """ActorCore + real worker + real recorder, ticked synchronously by the test."""

    def __init__(self, tmp_path, limits, config: ActorConfig | None = None, **policy_kw):
        self.policy = OnnxPolicy(build_policy(tmp_path / "p.onnx", **policy_kw))
        self.worker = InferenceWorker(self.policy)
        self.store = EpisodeStore(tmp_path / "store")
        self.recorder = EpisodeRecorder(DirectorySink(self.store), jpeg_quality=90)
        self.core = ActorCore(config or ActorConfig(), limits, self.recorder, self.policy.version)
        self.q = np.zeros(16)

    def tick(self, obs_ok: bool = True, wait_inference: bool = True):
        now = self.core.step * DT
        obs = make_obs(now, self.q) if obs_ok else None
        res = self.core.tick(now, obs, self.worker.poll())
        if res.request is not None:
            self.worker.submit(res.request)
            if wait_inference:
                self.worker.wait_idle()
        if res.command is not None:
            self.q = res.command.copy()  # a perfect robot
        return res

    def start(self):
        self.tick()  # one observation so that start is allowed
        self.core.start_episode("robot0-ep1", "pick", "pick up the cube", now=self.core.step * DT)

    def close(self):
        self.worker.close()
        self.recorder.close()


@pytest.fixture
def rig(tmp_path, limits):
    r = Rig(tmp_path, limits)
    yield r
    r.close()


def test_nothing_is_commanded_outside_an_episode(rig):
    assert rig.tick().command is None


def test_start_is_refused_before_any_observation(rig):
    with pytest.raises(TransitionError, match="no synchronised"):
        rig.core.start_episode("e", "pick", "", 0.0)


def test_first_tick_holds_and_requests_a_chunk_then_the_policy_drives(rig):
    rig.start()
    first = rig.tick()
    assert first.source is ActionSource.HOLD and first.hold_reason is HoldReason.DRY
    assert first.request is not None and first.request.start_step == first.step + 1
    second = rig.tick()
    assert second.source is ActionSource.POLICY and second.chunk_id >= 1
    assert len(second.new_chunks) == 1


def test_policy_keeps_driving_without_stalls_when_inference_keeps_up(rig):
    rig.start()
    sources = [rig.tick().source for _ in range(120)]
    assert sources[0] is ActionSource.HOLD
    assert all(s is ActionSource.POLICY for s in sources[1:])
    assert rig.core.scheduler.dry_events == 0


def test_timeline_running_dry_holds_the_last_command_and_counts_a_stall(rig):
    rig.start()
    rig.tick()
    for _ in range(5):
        rig.tick()
    rig.worker.close()  # inference stops: chunks run out
    last = None
    for _ in range(40):
        res = rig.tick(wait_inference=False)
        if res.source is ActionSource.HOLD:
            assert res.hold_reason is HoldReason.DRY
            np.testing.assert_array_equal(res.command, last)
            break
        last = res.command
    else:
        pytest.fail("timeline never ran dry")
    assert rig.core.scheduler.dry_events == 1


def test_pedal_takes_over_on_the_very_next_tick_and_discards_policy_chunks(rig):
    rig.start()
    for _ in range(5):
        rig.tick()
    assert rig.core.scheduler.remaining(rig.core.step) > 0
    teleop = rig.q + 0.01
    rig.core.set_teleop_target(teleop, stamp=rig.core.step * DT)
    rig.core.set_pedal(True)
    res = rig.tick()
    assert res.source is ActionSource.TELEOP and res.chunk_id == NO_CHUNK
    np.testing.assert_allclose(res.command, teleop)
    assert res.intervention_changed and rig.core.counters.interventions == 1
    assert rig.core.scheduler.remaining(rig.core.step) == 0


def test_chunk_inferred_before_takeover_is_discarded_when_it_arrives(rig):
    rig.start()
    res = rig.tick(wait_inference=False)
    assert res.request is not None
    rig.core.set_teleop_target(rig.q, stamp=rig.core.step * DT)
    rig.core.set_pedal(True)
    rig.worker.wait_idle()
    rig.tick()  # the old-generation result arrives here
    assert rig.core.counters.stale_chunks == 1
    assert rig.core.scheduler.remaining(rig.core.step) == 0


def test_release_resumes_from_a_fresh_inference_on_the_current_observation(rig):
    rig.start()
    for _ in range(5):
        rig.tick()
    chunk_before = rig.tick().chunk_id
    rig.core.set_teleop_target(rig.q + 0.05, stamp=rig.core.step * DT)
    rig.core.set_pedal(True)
    for _ in range(3):
        rig.core.set_teleop_target(rig.q + 0.05, stamp=rig.core.step * DT)
        rig.tick()
    rig.core.set_pedal(False)
    release = rig.tick()
    assert release.source is ActionSource.HOLD and release.request is not None
    assert release.request.obs.joint_pos.tolist() == pytest.approx(rig.q.tolist())
    resumed = rig.tick()
    assert resumed.source is ActionSource.POLICY
    assert resumed.chunk_id > chunk_before
    assert resumed.new_chunks[0].request is release.request


def test_pedal_without_a_fresh_teleop_target_holds(rig):
    rig.start()
    rig.tick()
    rig.core.set_pedal(True)
    res = rig.tick()
    assert res.source is ActionSource.HOLD and res.hold_reason is HoldReason.NO_TELEOP


def test_stale_camera_makes_the_robot_hold_and_names_the_input(rig):
    rig.start()
    for _ in range(3):
        rig.tick()
    now = rig.core.step * DT
    obs = make_obs(now, rig.q)
    obs.stamps["head"] = now - 1.0
    res = rig.core.tick(now, obs, rig.worker.poll())
    assert res.source is ActionSource.HOLD and res.hold_reason is HoldReason.STALE
    assert res.stale_inputs == ("head",) and res.request is None


def test_losing_all_inputs_holds_once_the_last_observation_ages(rig):
    rig.start()
    rig.tick()
    held = [rig.tick(obs_ok=False) for _ in range(30)]
    assert held[-1].hold_reason is HoldReason.STALE


def test_nan_policy_output_is_a_policy_fault_and_holds_the_robot(tmp_path, limits):
    r = Rig(tmp_path, limits, nan_actions=True)
    try:
        r.start()
        r.tick()
        res = r.tick()
        assert res.source is ActionSource.HOLD and res.hold_reason is HoldReason.ESTOP
        assert "non-finite" in res.policy_fault and res.ended.reason == "policy_fault"
        assert np.isfinite(res.command).all()
    finally:
        r.close()


# The next two test the safety filter alone: the policy-fault check (which would refuse chunks this far
# outside the joint ranges, test_estop_and_watchdog.py) is relaxed.
NO_FAULT_CHECK = ActorConfig(policy_fault_margin=1e9)


def test_policy_targets_beyond_limits_are_clamped_before_sending(tmp_path, limits):
    r = Rig(
        tmp_path, limits, NO_FAULT_CHECK, drift=0.5
    )  # chunk ramps 0.5 rad per step: above the velocity limit
    try:
        r.start()
        r.tick()
        for _ in range(60):
            res = r.tick()
            assert (np.abs(res.command) <= 2.0 + 1e-12).all()
        assert r.core.safety.velocity_clamps > 0 and r.core.safety.position_clamps > 0
    finally:
        r.close()


def test_time_limit_ends_the_episode_as_failure_and_stores_it(tmp_path, limits):
    r = Rig(tmp_path, limits, ActorConfig(episode_time_limit_s=1.0))
    try:
        r.start()
        ended = None
        for _ in range(40):
            ended = r.tick().ended or ended
        assert ended is not None and ended.reason == "time_limit"
        assert r.core.state is EpisodeState.DONE
        r.recorder.flush()
        ep = r.store.get("robot0-ep1")
        assert ep.outcome.label is Label.FAILURE and ep.outcome.reason == "time_limit"
        assert ep.num_steps == 30
    finally:
        r.close()


def test_recorded_episode_holds_every_step_with_sources_images_and_label(rig):
    rig.start()
    for _ in range(10):
        rig.tick()
    rig.core.set_teleop_target(rig.q, stamp=rig.core.step * DT)
    rig.core.set_pedal(True)
    for _ in range(5):
        rig.core.set_teleop_target(rig.q + 0.001, stamp=rig.core.step * DT)
        rig.tick()
    rig.core.set_pedal(False)
    for _ in range(5):
        rig.tick()
    rig.core.stop_episode(abort=False)
    assert rig.tick().command is None  # nothing recorded or commanded while awaiting the label
    rig.core.label_episode(success=True, note="cube lifted")
    assert rig.recorder.flush()
    ep = rig.store.get("robot0-ep1")
    assert ep.num_steps == 20 and ep.success and ep.outcome.note == "cube lifted"
    assert (
        ep.meta.task == "pick" and ep.meta.instruction == "pick up the cube" and ep.meta.robot_id == "robot0"
    )
    assert ep.policy_versions == ["test-v1"]
    assert list(ep.source[10:15]) == [ActionSource.TELEOP] * 5
    assert ep.source[0] == ActionSource.HOLD and ep.source[15] == ActionSource.HOLD
    assert (ep.source[16:] == ActionSource.POLICY).all()
    assert (ep.chunk_id[ep.source == ActionSource.TELEOP] == NO_CHUNK).all()
    assert (ep.chunk_id[ep.source == ActionSource.POLICY] >= 1).all()
    assert np.all(np.diff(ep.step) == 1)
    assert set(ep.images) == set(CAMERA_NAMES)
    head = decode_jpeg(ep.images["head"][0])
    assert head.shape == (32, 32, 3) and abs(int(head.mean()) - 100) <= 2


def test_executed_target_is_recorded_after_the_safety_filter(tmp_path, limits):
    r = Rig(tmp_path, limits, NO_FAULT_CHECK, drift=0.5)
    try:
        r.start()
        sent = [r.tick().command for _ in range(10)]
        r.core.stop_episode(abort=True, reason="test")
        r.recorder.flush()
        ep = r.store.get("robot0-ep1")
        np.testing.assert_allclose(ep.action, np.array(sent, np.float32))
        assert ep.outcome.reason == "abort" and not ep.success
    finally:
        r.close()


def test_policy_version_cannot_change_during_an_episode(rig):
    rig.start()
    with pytest.raises(TransitionError, match="swap refused"):
        rig.core.set_policy_version("v2")
    rig.core.stop_episode(abort=True)
    rig.core.set_policy_version("v2")
    assert rig.core.policy_version == "v2"


def test_failed_inference_is_counted_and_the_robot_holds(rig):
    rig.start()
    res = rig.tick(wait_inference=False)
    failed = InferenceResult(res.request, 99, None, 1.0, "test-v1", error="boom")
    rig.worker.wait_idle()
    rig.worker.poll()
    out = rig.core.tick(rig.core.step * DT, make_obs(rig.core.step * DT), [failed])
    assert rig.core.counters.failed_inferences == 1
    assert out.source is ActionSource.HOLD and out.request is not None  # and asks again


def test_control_steps_follow_the_clock_so_a_late_tick_skips_and_counts_missed_steps(rig):
    rig.start()
    first = rig.tick()
    for _ in range(3):
        rig.tick()
    late = rig.core.tick((rig.core.step + 2) * DT, None, rig.worker.poll())
    assert late.step == first.step + 6
    assert rig.core.counters.missed_ticks == 2


def test_after_a_stale_hold_the_policy_resumes_from_a_fresh_chunk_without_counting_a_stall(rig):
    rig.start()
    for _ in range(5):
        rig.tick()
    for _ in range(40):  # inputs frozen: the last observation ages past the timeout
        rig.tick(obs_ok=False)
    assert rig.core.counters.stale_events == 1
    resumed = rig.tick()
    assert resumed.source is ActionSource.HOLD and resumed.request is not None
    assert rig.tick().source is ActionSource.POLICY
    assert rig.core.scheduler.dry_events == 0


def test_scheduler_defaults_are_the_actor_parameters_defaults():
    cfg = SchedulerConfig()
    assert PARAMETERS["request_threshold"][0] == cfg.request_threshold
    assert PARAMETERS["merge"][0] == cfg.merge.value and type(PARAMETERS["merge"][0]) is str
    assert PARAMETERS["blend_steps"][0] == cfg.blend_steps
    assert PARAMETERS["ensemble_decay"][0] == cfg.ensemble_decay


def test_actor_core_requests_carry_the_real_time_chunking_inputs(limits):
    core = ActorCore(ActorConfig(), limits, None, "v1")
    core.tick(0.0, make_obs(0.0))
    core.start_episode("e", "pick", "", now=core.step / 30)
    first = core.tick(core.step / 30, make_obs(core.step / 30)).request
    assert first is not None and first.prefix_len == 0 and first.delay == 0
    assert first.prefix is not None and first.prefix.shape == (30, 16) and not first.prefix.any()
