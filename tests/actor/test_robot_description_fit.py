"""An actor refuses, at load, a policy made for another robot description: a G1 actor and a
single-arm policy (joints, cameras, rate and horizon all differ), and the other way round."""

from __future__ import annotations

import pytest

from lwd_actor.core.policy_runtime import OnnxPolicy, PolicyError, RuntimeConfig
from lwd_description.robot import load_robot
from lwd_testing.models import build_policy


def test_a_g1_actor_refuses_a_single_arm_policy_naming_joints_cameras_rate_and_horizon(tmp_path):
    policy = build_policy(tmp_path / "arm.onnx", robot="single_arm_6dof")
    with pytest.raises(PolicyError) as err:
        OnnxPolicy(policy, RuntimeConfig.for_robot(load_robot()))
    message = str(err.value)
    assert "policy does not fit this actor" in message
    assert "'joint_names' metadata ['shoulder_pan_joint'," in message and "(robot g1_dual_arm)" in message
    assert (
        "'cameras' metadata ['wrist', 'scene'] differs from this robot's ['head', 'left_wrist', 'right_wrist']"
        in message
    )
    assert "trained for control_hz 20, the actor runs at 30 Hz" in message
    assert "horizon of 20 steps, robot g1_dual_arm's chunk_horizon is 30" in message


def test_a_single_arm_actor_refuses_a_g1_policy(tmp_path):
    policy = build_policy(tmp_path / "g1.onnx")
    with pytest.raises(
        PolicyError, match=r"'joint_names' metadata \['left_arm_joint1',.*\(robot single_arm_6dof\)"
    ):
        OnnxPolicy(policy, RuntimeConfig.for_robot(load_robot("single_arm_6dof")))


def test_a_single_arm_actor_loads_its_policy_and_infers_a_chunk_of_its_horizon_and_joints(tmp_path):
    import numpy as np

    from lwd_actor.core.observation import JOINTS_INPUT, Observation

    arm = load_robot("single_arm_6dof")
    policy = OnnxPolicy(build_policy(tmp_path / "arm.onnx", robot=arm), RuntimeConfig.for_robot(arm))
    frames = {c: np.zeros((48, 64, 3), np.uint8) for c in arm.camera_names}
    chunk = policy.infer(Observation(frames, np.full(7, 0.1), {JOINTS_INPUT: 0.0}), "pick up the cube")
    assert (
        chunk.shape == (20, 7) and policy.prepare_images(Observation(frames, np.zeros(7), {})).shape[1] == 2
    )
