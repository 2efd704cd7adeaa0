"""End to end over DDS: sim_robot + actor (tiny ONNX policy) + sim_operator in three processes.

The near-still test policy stalls, the simulated operator presses the pedal, drives the
scripted expert to success, and labels the episode; the actor records it with TELEOP steps.
"""

import json

import pytest

from lwd_common.episode import ActionSource, Label
from lwd_common.store import EpisodeStore
from lwd_testing.models import build_policy
from rosutil import REPO, ros_processes

pytestmark = pytest.mark.ros

NS = ("--ros-args", "-r", "__ns:=/robot0")


def test_operator_takes_over_a_stalling_policy_and_labels_success(tmp_path):
    policy = build_policy(tmp_path / "policy.onnx", version="stall-v1", drift=0.0)
    store = tmp_path / "store"
    with ros_processes(tmp_path) as procs:
        procs.python(
            "sim",
            "-m",
            "lwd_sim.sim_robot_node",
            *NS,
            "-p",
            "image_width:=32",
            "-p",
            "image_height:=32",
            "-p",
            "task:=can_to_bin",
            "-p",
            "seed:=4",
        )
        procs.python(
            "actor",
            "-m",
            "lwd_actor.actor_node",
            *NS,
            "--params-file",
            str(REPO / "ros2_ws/src/lwd_actor/config/actor.yaml"),
            "-p",
            f"policy_path:={policy}",
            "-p",
            f"store_dir:={store}",
            "-p",
            "episode_time_limit_s:=60.0",
        )
        op = procs.python(
            "operator",
            "-m",
            "lwd_sim.sim_operator_node",
            *NS,
            "-p",
            "task:=can_to_bin",
            "-p",
            "episodes:=1",
            "-p",
            "release_after_subtasks:=4",
            "-p",
            "stall_window_s:=1.5",
            "-p",
            "time_limit_s:=40.0",
        )
        rc = op.wait(timeout=120)
        logs = procs.log("operator") + procs.log("actor") + procs.log("sim")
        assert rc == 0, logs
    result = json.loads(procs.log("operator").strip().splitlines()[-1])
    assert result["episodes"][0]["success"] and result["episodes"][0]["accepted"], logs
    assert result["episodes"][0]["interventions"] == 1
    st = EpisodeStore(store)
    (episode_id,) = st.ids()
    ep = st.get(episode_id)
    assert ep.outcome.label == Label.SUCCESS
    assert ep.meta.instruction == "put the red can in the left bin"
    assert (ep.source == ActionSource.TELEOP).sum() > 30
    assert (ep.source == ActionSource.POLICY).sum() > 10


def test_without_interventions_a_stalling_policy_is_labelled_failure_at_the_task_time_limit(tmp_path):
    policy = build_policy(tmp_path / "policy.onnx", version="stall-v1", drift=0.0)
    store = tmp_path / "store"
    with ros_processes(tmp_path) as procs:
        procs.python(
            "sim",
            "-m",
            "lwd_sim.sim_robot_node",
            *NS,
            "-p",
            "image_width:=32",
            "-p",
            "image_height:=32",
            "-p",
            "task:=can_to_bin",
        )
        procs.python(
            "actor",
            "-m",
            "lwd_actor.actor_node",
            *NS,
            "--params-file",
            str(REPO / "ros2_ws/src/lwd_actor/config/actor.yaml"),
            "-p",
            f"policy_path:={policy}",
            "-p",
            f"store_dir:={store}",
        )
        op = procs.python(
            "operator",
            "-m",
            "lwd_sim.sim_operator_node",
            *NS,
            "-p",
            "task:=can_to_bin",
            "-p",
            "episodes:=1",
            "-p",
            "intervene:=false",
        )
        rc = op.wait(timeout=120)
        logs = procs.log("operator") + procs.log("actor") + procs.log("sim")
        assert rc == 0, logs
    result = json.loads(procs.log("operator").strip().splitlines()[-1])
    assert result["episodes"][0]["success"] is False and result["episodes"][0]["interventions"] == 0
    ep = EpisodeStore(store).get(EpisodeStore(store).ids()[0])
    assert ep.outcome.label == Label.FAILURE
    assert not (ep.source == ActionSource.TELEOP).any()
    assert 8.0 * 30 * 0.7 < ep.num_steps < 8.0 * 30 * 1.5  # ended near can_to_bin's 8 s limit
