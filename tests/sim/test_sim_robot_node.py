"""sim_robot in its own process: publishes cameras, joint states, task status and /clock; moves when commanded."""

import json

import pytest

from rosutil import ros_processes

pytestmark = pytest.mark.ros

SIM_ARGS = (
    "-m",
    "lwd_sim.sim_robot_node",
    "--ros-args",
    "-r",
    "__ns:=/robot0",
    "-p",
    "image_width:=32",
    "-p",
    "image_height:=24",
    "-p",
    "publish_clock:=true",
    "-p",
    "task:=grocery_pick_place",
)


def _probe(procs, *extra):
    probe = procs.python(
        "probe", "-m", "lwd_testing.sim_robot_probe", "--ns", "/robot0", "--duration", "3", *extra
    )
    rc = probe.wait(timeout=90)
    assert rc == 0, procs.log("probe") + procs.log("sim")
    return json.loads(procs.log("probe").strip().splitlines()[-1])


def test_sim_robot_publishes_at_30hz_and_moves_when_commanded(tmp_path):
    with ros_processes(tmp_path) as procs:
        procs.python("sim", *SIM_ARGS)
        r = _probe(procs, "--instruction", "put the green box on the plate")
    # Stamps are simulated time: one joint state per 1/30 s control period.
    assert r["stamp_dt_median"] == pytest.approx(1 / 30, abs=1e-3)
    assert r["joint_state_count"] / r["wall_s"] > 5  # gross liveness only; rate is benchmarked elsewhere
    assert abs(r["final_q0"] - r["target_q0"]) < 0.05 < abs(r["start_q0"] - r["target_q0"])
    assert r["other_joints_moved"] < 0.05
    for cam in ("head", "left_wrist", "right_wrist"):
        assert r["images"][cam]["count"] > 0
        assert r["images"][cam]["shape"] == [24, 32, "rgb8"]
    assert r["reset_accepted"] and r["status_instruction"] == "put the green box on the plate"
    assert r["status_task"] == "grocery_pick_place" and r["status_subtasks_total"] == 4
    assert r["clock_count"] > 10 and r["clock_increasing"]


def test_sim_robot_refuses_an_unknown_instruction(tmp_path):
    with ros_processes(tmp_path) as procs:
        procs.python("sim", *SIM_ARGS)
        r = _probe(procs, "--instruction", "juggle three oranges", "--duration", "0.5")
    assert r["reset_accepted"] is False
    assert "no task has instruction" in r["reset_message"]


def test_sim_robot_steps_on_sim_clock_time_when_use_sim_time(tmp_path):
    with ros_processes(tmp_path) as procs:
        procs.python(
            "clock",
            "-m",
            "lwd_sim.sim_clock",
            "--ros-args",
            "-p",
            "real_time_factor:=0.5",
            "-p",
            "publish_rate_hz:=300.0",
        )
        procs.python(
            "sim",
            "-m",
            "lwd_sim.sim_robot_node",
            "--ros-args",
            "-r",
            "__ns:=/robot0",
            "-p",
            "use_sim_time:=true",
            "-p",
            "image_width:=16",
            "-p",
            "image_height:=16",
        )
        r = _probe(procs)
    assert r["stamp_dt_median"] == pytest.approx(1 / 30, abs=0.005)
    assert r["clock_increasing"]
    # Half real time: about 15 joint states per wall second (wide tolerance: shared machine).
    assert 5 < r["joint_state_count"] / r["wall_s"] < 22
    assert abs(r["final_q0"] - r["target_q0"]) < abs(r["start_q0"] - r["target_q0"])


@pytest.mark.parametrize(
    "param,message", [("task:=juggling", "unknown task"), ("camera_rate_hz:=0.0", "must be > 0")]
)
def test_sim_robot_exits_with_a_clear_message_on_bad_parameters(tmp_path, param, message):
    with ros_processes(tmp_path) as procs:
        proc = procs.python("sim", "-m", "lwd_sim.sim_robot_node", "--ros-args", "-p", param)
        assert proc.wait(timeout=60) == 2
        assert message in procs.log("sim") and "Traceback" not in procs.log("sim")


def test_sim_robot_follows_a_joint_trajectory(tmp_path):
    with ros_processes(tmp_path) as procs:
        procs.python("sim", *SIM_ARGS)
        r = _probe(procs, "--trajectory")
    assert abs(r["final_q0"] - r["target_q0"]) < 0.05 < abs(r["start_q0"] - r["target_q0"])
    assert r["other_joints_moved"] < 0.05
