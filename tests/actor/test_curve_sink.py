"""The actor's bridge sink with CURVE keys: episodes reach a real bridge process that admits only
allowlisted robot keys; a half-configured key pair or a missing file is refused before connecting."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from lwd_actor.sinks import make_sink
from lwd_common.episode import ActionSource, EpisodeMeta, EpisodeOutcome, Label, StepRecord
from lwd_common.store import EpisodeStore
from lwd_description.robot import CAMERA_NAMES, NUM_JOINTS
from lwd_learner_bridge.keys import generate
from rosutil import REPO, Procs, wait_for

sys.path.insert(0, str(REPO / "tests" / "bridge"))
from bridgeutil import free_endpoint  # noqa: E402


@pytest.fixture
def curve_bridge(tmp_path):
    keys, allow, root = tmp_path / "keys", tmp_path / "allow", tmp_path / "bridge"
    for name in ("bridge", "robot_a"):
        generate(keys, name)
    allow.mkdir()
    (allow / "robot_a.key").write_bytes((keys / "robot_a.key").read_bytes())
    endpoint = free_endpoint()
    procs = Procs(dict(os.environ), tmp_path)
    proc = procs.python(
        "bridge",
        "-m",
        "lwd_learner_bridge.server",
        "--root",
        str(root),
        "--bind",
        endpoint,
        "--curve-secret-key",
        str(keys / "bridge.key_secret"),
        "--allow-keys",
        str(allow),
    )
    try:
        assert wait_for(lambda: "listening on" in procs.log("bridge") or proc.poll() is not None, 30), (
            procs.log("bridge")
        )
        yield endpoint, keys, root, procs
    finally:
        procs.stop_all()


def steps(n: int) -> list[StepRecord]:
    return [
        StepRecord(
            step=i,
            stamp=100.0 + i / 30,
            images={c: b"\xff\xd8jpeg\xff\xd9" for c in CAMERA_NAMES},
            joint_pos=np.zeros(NUM_JOINTS),
            action=np.zeros(NUM_JOINTS),
            source=ActionSource.POLICY,
            chunk_id=1,
            policy_version="v000001",
        )
        for i in range(n)
    ]


def test_a_robot_with_its_keys_streams_an_episode_to_a_curve_bridge(curve_bridge, tmp_path):
    endpoint, keys, root, procs = curve_bridge
    bundle = make_sink(
        "bridge",
        "robot_a",
        "",
        endpoint,
        str(tmp_path / "spool"),
        str(keys / "robot_a.key_secret"),
        str(keys / "bridge.key"),
    )
    try:
        assert "CURVE" in bundle.describe
        meta = EpisodeMeta(episode_id="robot_a-ep1", robot_id="robot_a", task="pick", instruction="")
        bundle.sink.begin(meta)
        for s in steps(20):
            bundle.sink.add_step(s)
        bundle.sink.end(EpisodeOutcome(label=Label.SUCCESS, num_steps=20))
        assert bundle.sink.wait_idle(30), bundle.stats()
    finally:
        bundle.closer()
    assert wait_for(lambda: "robot_a-ep1" in EpisodeStore(root / "store").ids(), 10), procs.log("bridge")


@pytest.mark.parametrize(
    ("secret", "public", "match"),
    [
        ("robot_a.key_secret", "", "needs both curve_secret_key_file"),
        ("", "bridge.key", "needs both curve_secret_key_file"),
        ("nope.key_secret", "bridge.key", "curve_secret_key_file .*nope.key_secret does not exist"),
    ],
)
def test_half_a_key_pair_or_a_missing_key_file_is_refused(tmp_path, secret, public, match):
    keys = tmp_path / "keys"
    generate(keys, "bridge")
    generate(keys, "robot_a")
    with pytest.raises(ValueError, match=match):
        make_sink(
            "bridge",
            "robot_a",
            "",
            "tcp://127.0.0.1:9",
            str(tmp_path / "spool"),
            str(keys / secret) if secret else "",
            str(keys / public) if public else "",
        )
