"""A second embodiment through the transport: a single 6-DoF arm with a gripper and two cameras
(lwd_description's single_arm_6dof) streams an episode to a real bridge process started for it
(`--robot single_arm_6dof`), which stores it with its own 7 joints and 2 cameras; a bridge for the
G1 only refuses such a robot at hello, naming the mismatch."""

from __future__ import annotations

import numpy as np
import pytest
from bridgeutil import fake_jpeg, hello_frame, stored_hashes
from conftest import start_bridge

from lwd_common.episode import (
    ActionSource,
    Episode,
    EpisodeMeta,
    EpisodeOutcome,
    Label,
    StepRecord,
    content_hash,
)
from lwd_common.store import EpisodeStore
from lwd_common.transport import BridgeClient, ClientConfig, protocol
from lwd_description.robot import RobotDescription, load_robot
from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.core import BridgeCore


@pytest.fixture(scope="module")
def arm() -> RobotDescription:
    return load_robot("single_arm_6dof")


def arm_episode(arm: RobotDescription, n: int = 25) -> tuple[EpisodeMeta, list[StepRecord], EpisodeOutcome]:
    rng = np.random.default_rng(3)
    meta = EpisodeMeta(
        episode_id="arm0-ep0001",
        robot_id="arm0",
        task="pick",
        instruction="pick up the cube",
        started_at=1.7e9,
        cameras=arm.camera_names,
        joint_names=arm.joint_names,
    )
    steps = [
        StepRecord(
            step=i,
            stamp=1000.0 + i / arm.control_hz,
            images={c: fake_jpeg(rng) for c in arm.camera_names},
            joint_pos=rng.uniform(arm.limits.lower, arm.limits.upper),
            action=rng.uniform(arm.limits.lower, arm.limits.upper),
            source=ActionSource.POLICY,
            chunk_id=i // arm.chunk_horizon,
            policy_version="v000001",
        )
        for i in range(n)
    ]
    return meta, steps, EpisodeOutcome(Label.SUCCESS, n, ended_at=1.7e9 + 5)


def test_a_single_arm_episode_is_streamed_and_stored_with_seven_joints_and_two_cameras(
    procs, tmp_path, endpoint, arm
):
    root = tmp_path / "bridge"
    start_bridge(procs, root, endpoint, "--robot", "single_arm_6dof")
    client = BridgeClient(
        ClientConfig(
            endpoint=endpoint,
            robot_id="arm0",
            spool_dir=str(tmp_path / "spool"),
            steps_per_chunk=8,
            ack_timeout_s=0.5,
            config_hash=protocol.robot_config_hash(arm),
        )
    )
    try:
        meta, steps, outcome = arm_episode(arm)
        client.begin(meta)
        for s in steps:
            client.add_step(s)
        client.end(outcome)
        assert client.wait_idle(20), client.stats()
    finally:
        client.close()
    assert stored_hashes(root) == {meta.episode_id: content_hash(Episode.from_steps(meta, steps, outcome))}
    stored = EpisodeStore(root / "store").get(meta.episode_id)
    assert stored.joint_pos.shape == (25, 7) and stored.action.shape == (25, 7)
    assert stored.meta.joint_names == arm.joint_names and stored.meta.cameras == ("wrist", "scene")
    assert set(stored.images) == {"wrist", "scene"} and all(len(f) == 25 for f in stored.images.values())
    np.testing.assert_allclose(stored.joint_pos, np.array([s.joint_pos for s in steps], np.float32))


def test_a_bridge_for_the_g1_only_refuses_a_single_arm_robot_at_hello(tmp_path, arm):
    core = BridgeCore(BridgeConfig(root=str(tmp_path)))
    reply = core.handle(b"peer", hello_frame("arm0", config_hash=protocol.robot_config_hash(arm)))
    msg = protocol.decode(reply[0])
    assert (msg["code"], msg["fatal"]) == ("config_mismatch", True)
    assert "--robot" in msg["message"]


def test_a_bridge_for_both_robots_admits_the_g1_and_the_single_arm(tmp_path, arm):
    core = BridgeCore(
        BridgeConfig(root=str(tmp_path), extra_config_hashes=(protocol.robot_config_hash(arm),))
    )
    for peer, rid, digest in ((b"a", "arm0", protocol.robot_config_hash(arm)), (b"g", "g1", None)):
        assert protocol.decode(core.handle(peer, hello_frame(rid, config_hash=digest))[0])["t"] == "welcome"


def test_a_chunk_whose_joints_differ_from_the_episode_header_is_refused(arm):
    meta, steps, _ = arm_episode(arm, n=4)
    chunk = protocol.steps_to_chunk(steps, meta.cameras, len(meta.joint_names))
    assert protocol.check_chunk(chunk, 7)["joint_pos"].shape == (4, 7)
    with pytest.raises(protocol.ProtocolError, match="joint_pos"):
        protocol.check_chunk(chunk, 16)
