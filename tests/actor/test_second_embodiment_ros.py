"""A second embodiment, single_arm_6dof (6 arm joints + a gripper, cameras `wrist` and `scene`,
20 Hz, 20-step chunks), through the real actor node with no code change: `robot:=single_arm_6dof`,
lwd_testing's fake robot and teleop helper for that robot, a 7-joint 2-camera ONNX policy built by
lwd_testing.models; separate processes over DDS (own ROS_DOMAIN_ID, localhost only)."""

from __future__ import annotations

from collections import Counter

import actorprocs
import pytest

from lwd_common.episode import ActionSource
from lwd_common.store import EpisodeStore
from lwd_description.robot import load_robot
from lwd_testing.models import build_policy
from rosutil import ros_processes, wait_for

pytestmark = pytest.mark.ros

ROBOT = "single_arm_6dof"
NS = ["--ros-args", "-r", "__ns:=/arm0"]


def test_the_actor_drives_a_single_arm_and_records_its_seven_joints_and_two_cameras(tmp_path):
    arm = load_robot(ROBOT)
    policy = build_policy(tmp_path / "policy.onnx", version="arm-v1", robot=ROBOT)
    probe_out = tmp_path / "probe.jsonl"
    with ros_processes(tmp_path) as procs:
        procs.python(
            "robot",
            "-m",
            "lwd_testing.fake_robot_node",
            *NS,
            "-p",
            f"robot:={ROBOT}",
            "-p",
            "image_size:=32",
            "-p",
            "split_joint_states:=true",
        )
        actorprocs.start_actor(procs, "actor", "/arm0", policy, None, tmp_path / "store", f"robot:={ROBOT}")
        procs.python("probe", "-m", "lwd_testing.probe_node", *NS, "-p", f"out:={probe_out}")
        started = actorprocs.episode_cli(
            procs,
            "start",
            "/arm0",
            "--retry-s",
            "40",
            "start",
            "--task",
            "pick",
            "--instruction",
            "pick up the cube",
        )
        assert started["accepted"], started["message"] + procs.log("actor")
        assert "single_arm_6dof: 7 joints, cameras wrist, scene" in procs.log("actor")

        def lines(topic: str) -> list[dict]:
            return [m for m in actorprocs.probe_lines(probe_out) if m["topic"] == topic]

        assert wait_for(lambda: len(lines("joint_commands")) > 10, 30), procs.log("actor")
        assert {len(m["q"]) for m in lines("joint_commands")} == {7}
        assert wait_for(lambda: lines("action_chunk"), 10) and {m["n"] for m in lines("action_chunk")} == {
            20 * 7
        }

        procs.python(
            "teleop",
            "-m",
            "lwd_testing.teleop_helper_node",
            *NS,
            "-p",
            f"robot:={ROBOT}",
            "-p",
            "press_after_s:=0.3",
            "-p",
            "hold_s:=1.5",
        )
        assert wait_for(lambda: any(m["engaged"] for m in lines("intervention_state")), 30), procs.log(
            "teleop"
        )
        assert wait_for(lambda: any(not m["engaged"] for m in lines("intervention_state")[1:]), 30)
        assert wait_for(lambda: len(lines("joint_commands")) > 60, 30)
        assert actorprocs.episode_cli(procs, "stop", "/arm0", "stop")["accepted"]
        assert actorprocs.episode_cli(procs, "label", "/arm0", "label", "--success")["accepted"]

        store = EpisodeStore(tmp_path / "store")
        assert wait_for(lambda: store.ids() == [started["episode_id"]], 20), procs.log("actor")
        ep = store.get(started["episode_id"])
    assert ep.meta.joint_names == arm.joint_names and ep.meta.cameras == ("wrist", "scene")
    assert ep.joint_pos.shape == (ep.num_steps, 7) and ep.action.shape == (ep.num_steps, 7)
    assert set(ep.images) == {"wrist", "scene"} and all(len(f) == ep.num_steps for f in ep.images.values())
    assert ep.meta.extra["control_hz"] == 20.0 and ep.success and ep.policy_versions == ["arm-v1"]
    counts = Counter(ep.source.tolist())
    assert counts[ActionSource.TELEOP] >= 10 and counts[ActionSource.POLICY] >= 20
    assert (ep.action >= arm.limits.lower - 1e-6).all() and (ep.action <= arm.limits.upper + 1e-6).all()
