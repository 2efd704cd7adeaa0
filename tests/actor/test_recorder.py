"""Episode recorder: order preserved, JPEG off-thread, overflow counted and reported, sink errors survived."""

import threading
import time

import numpy as np
from conftest import make_obs

from lwd_actor.core.recorder import EpisodeRecorder, RawStep
from lwd_common.episode import ActionSource, EpisodeMeta, EpisodeOutcome, Label


class ListSink:
    def __init__(self, gate: threading.Event | None = None):
        self.gate = gate
        self.calls = []

    def begin(self, meta):
        self.calls.append(("begin", meta))

    def add_step(self, step):
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append(("step", step))

    def end(self, outcome):
        self.calls.append(("end", outcome))


def raw(k: int) -> RawStep:
    obs = make_obs(k / 30)
    return RawStep(k, obs.stamp, obs.images, obs.joint_pos, np.zeros(16), ActionSource.POLICY, 1, "v1")


def meta() -> EpisodeMeta:
    return EpisodeMeta("ep", "robot0", "pick", "")


def test_steps_reach_the_sink_in_order_as_jpeg_between_begin_and_end():
    sink = ListSink()
    rec = EpisodeRecorder(sink, jpeg_quality=70)
    rec.begin(meta())
    for k in range(5):
        assert rec.add(raw(k))
    rec.end(EpisodeOutcome(Label.SUCCESS, 5))
    assert rec.flush()
    rec.close()
    kinds = [c[0] for c in sink.calls]
    assert kinds == ["begin"] + ["step"] * 5 + ["end"]
    assert [c[1].step for c in sink.calls[1:-1]] == [0, 1, 2, 3, 4]
    assert sink.calls[1][1].images["head"][:2] == b"\xff\xd8"  # JPEG SOI marker


def test_overflowing_queue_drops_counts_and_reports_in_the_outcome():
    gate = threading.Event()
    sink = ListSink(gate)
    rec = EpisodeRecorder(sink, max_pending_steps=3)
    rec.begin(meta())
    accepted = [rec.add(raw(k)) for k in range(10)]
    assert not all(accepted) and rec.dropped_steps == accepted.count(False)
    rec.end(EpisodeOutcome(Label.FAILURE, 10))
    gate.set()
    assert rec.flush()
    rec.close()
    outcome = sink.calls[-1][1]
    delivered = sum(1 for c in sink.calls if c[0] == "step")
    assert outcome.num_steps == delivered
    assert f"dropped {rec.dropped_steps} steps" in outcome.note


def test_a_failing_sink_is_reported_and_recording_continues():
    errors = []

    class Failing(ListSink):
        def begin(self, meta):
            raise OSError("disk full")

    sink = Failing()
    rec = EpisodeRecorder(sink, on_error=errors.append)
    rec.begin(meta())
    rec.add(raw(0))
    rec.end(EpisodeOutcome(Label.FAILURE, 1))
    assert rec.flush()
    rec.close()
    assert rec.errors == 1 and "disk full" in errors[0]
    assert [c[0] for c in sink.calls] == ["step", "end"]


def test_close_is_bounded_drops_the_steps_it_cannot_encode_in_time_and_still_ends_the_episode():
    gate = threading.Event()  # the sink hangs in its first step until the gate opens
    sink = ListSink(gate)
    rec = EpisodeRecorder(sink)
    rec.begin(meta())
    for k in range(50):
        assert rec.add(raw(k))
    rec.end(EpisodeOutcome(Label.FAILURE, 50, reason="abort", note="actor deactivated"))
    t0 = time.monotonic()
    finished = rec.close(timeout=1.0, end_reserve_s=0.4)
    assert not finished and time.monotonic() - t0 < 1.5  # close does not wait for a stuck sink call
    gate.set()
    rec._thread.join(5)
    assert [c[0] for c in sink.calls] == ["begin", "step", "end"]
    outcome = sink.calls[-1][1]
    assert outcome.num_steps == 1 and rec.dropped_steps == 49
    assert outcome.note == "actor deactivated [49 steps not recorded: the actor was shutting down]"
