"""Robot descriptions (lwd_description.robot.load_robot): both shipped robots load with their URDF
limits, the G1 constants are the default description's, and broken descriptions fail naming the fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lwd_description import robot as robot_mod
from lwd_description.robot import (
    CAMERA_NAMES,
    CHUNK_HORIZON,
    CONTROL_HZ,
    GRIPPER_JOINTS,
    JOINT_NAMES,
    RobotDescriptionError,
    known_robots,
    load_joint_limits,
    load_robot,
)

SINGLE_ARM_URDF = Path(robot_mod.PACKAGE_URDF_DIR) / "single_arm_6dof.urdf"


def write_robot(tmp_path: Path, **overrides: object) -> Path:
    """A valid single-arm YAML in tmp_path (its URDF by absolute path), with fields overridden or
    (value None) removed."""
    import yaml

    data: dict[str, object] = {
        "name": "test_arm",
        "urdf": str(SINGLE_ARM_URDF),
        "joints": ["shoulder_pan_joint", "elbow_joint", "gripper_joint"],
        "grippers": ["gripper_joint"],
        "cameras": {"wrist": [48, 64]},
        "control_hz": 10.0,
        "chunk_horizon": 8,
    }
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_default_robot_is_the_g1_and_matches_the_module_constants():
    g1 = load_robot()
    assert g1.name == "g1_dual_arm" and load_robot("g1_dual_arm").joint_names == g1.joint_names
    assert (g1.joint_names, g1.gripper_joints, g1.camera_names) == (JOINT_NAMES, GRIPPER_JOINTS, CAMERA_NAMES)
    assert (g1.num_joints, g1.control_hz, g1.chunk_horizon) == (16, CONTROL_HZ, CHUNK_HORIZON)
    assert np.array_equal(g1.limits.upper, load_joint_limits().upper)
    assert np.array_equal(g1.limits.velocity, load_joint_limits().velocity)


def test_the_single_arm_loads_seven_joints_two_cameras_and_its_urdf_limits():
    arm = load_robot("single_arm_6dof")
    assert arm.num_joints == 7 and arm.gripper_joints == ("gripper_joint",)
    assert len(arm.arm_joints) == 6 and arm.camera_names == ("wrist", "scene")
    assert arm.cameras["scene"] == (720, 1280)
    assert (arm.control_hz, arm.chunk_horizon) == (20.0, 20)
    assert arm.limits.names == arm.joint_names
    assert arm.limits.upper[-1] == pytest.approx(0.085) and arm.limits.velocity[0] == pytest.approx(2.0)
    assert arm.limits.effort[0] == pytest.approx(150.0)


def test_both_robots_are_listed_and_a_yaml_path_loads_like_a_name():
    assert {"g1_dual_arm", "single_arm_6dof"} <= set(known_robots())
    by_path = load_robot(str(robot_mod.PACKAGE_ROBOTS_DIR / "single_arm_6dof.yaml"))
    assert by_path.joint_names == load_robot("single_arm_6dof").joint_names


def test_a_robot_yaml_of_your_own_loads(tmp_path):
    arm = load_robot(write_robot(tmp_path))
    assert arm.name == "test_arm" and arm.limits.lower.shape == (3,)
    assert arm.cameras == {"wrist": (48, 64)}


def test_an_unknown_robot_name_is_refused_naming_the_known_ones():
    with pytest.raises(
        FileNotFoundError, match="no robot description named 'no_such_robot'.*single_arm_6dof"
    ):
        load_robot("no_such_robot")


def test_a_missing_yaml_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_robot(tmp_path / "absent.yaml")


def test_a_missing_urdf_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="URDF 'nowhere.urdf' not found"):
        load_robot(write_robot(tmp_path, urdf="nowhere.urdf"))


def test_a_joint_absent_from_the_urdf_is_refused(tmp_path):
    path = write_robot(tmp_path, joints=["shoulder_pan_joint", "tail_joint"], grippers=[])
    with pytest.raises(RobotDescriptionError, match="joint 'tail_joint' not found"):
        load_robot(path)


def test_a_joint_without_limits_is_refused(tmp_path):
    urdf = tmp_path / "arm.urdf"
    urdf.write_text(
        '<robot name="a"><link name="b"/><link name="c"/><joint name="j" type="continuous">'
        '<parent link="b"/><child link="c"/></joint></robot>'
    )
    with pytest.raises(RobotDescriptionError, match="joint 'j' has no <limit>"):
        load_robot(write_robot(tmp_path, urdf=str(urdf), joints=["j"], grippers=[]))


def test_a_joint_with_a_limit_but_no_velocity_is_refused(tmp_path):
    urdf = tmp_path / "arm.urdf"
    urdf.write_text(
        '<robot name="a"><link name="b"/><link name="c"/><joint name="j" type="revolute">'
        '<parent link="b"/><child link="c"/><limit lower="-1" upper="1" effort="1"/></joint></robot>'
    )
    with pytest.raises(RobotDescriptionError, match="joint 'j' needs finite lower, upper and velocity"):
        load_robot(write_robot(tmp_path, urdf=str(urdf), joints=["j"], grippers=[]))


@pytest.mark.parametrize("hz", [0, -30, "fast", float("nan"), True])
def test_a_bad_control_rate_is_refused(tmp_path, hz):
    with pytest.raises(RobotDescriptionError, match="control_hz must be a positive number"):
        load_robot(write_robot(tmp_path, control_hz=hz))


@pytest.mark.parametrize("horizon", [0, -1, 2.5, "30"])
def test_a_bad_chunk_horizon_is_refused(tmp_path, horizon):
    with pytest.raises(RobotDescriptionError, match="chunk_horizon must be a positive whole number"):
        load_robot(write_robot(tmp_path, chunk_horizon=horizon))


def test_a_gripper_that_is_not_a_joint_is_refused(tmp_path):
    with pytest.raises(RobotDescriptionError, match=r"grippers \['wrist_3_joint'\] are not in 'joints'"):
        load_robot(write_robot(tmp_path, grippers=["wrist_3_joint"]))


def test_a_bad_camera_size_is_refused(tmp_path):
    with pytest.raises(RobotDescriptionError, match="camera 'wrist'.*\\[height, width\\]"):
        load_robot(write_robot(tmp_path, cameras={"wrist": [480]}))


def test_a_missing_or_misspelt_field_is_refused(tmp_path):
    with pytest.raises(RobotDescriptionError, match=r"missing fields \['control_hz'\]"):
        load_robot(write_robot(tmp_path, control_hz=None))
    with pytest.raises(RobotDescriptionError, match=r"unknown fields \['camera'\]"):
        load_robot(write_robot(tmp_path, camera={"wrist": [48, 64]}))


def test_a_joint_named_twice_is_refused(tmp_path):
    with pytest.raises(RobotDescriptionError, match="names \\['elbow_joint'\\] more than once"):
        load_robot(write_robot(tmp_path, joints=["elbow_joint", "elbow_joint"], grippers=[]))
