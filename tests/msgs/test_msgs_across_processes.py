"""lwd_msgs generated types and sensor images travel between separate processes over DDS."""

import json

import pytest

from rosutil import ros_processes

pytestmark = pytest.mark.ros


def test_action_chunk_and_image_reach_a_separate_process(tmp_path):
    with ros_processes(tmp_path) as procs:
        procs.python("publisher", "-m", "lwd_testing.ros_smoke", "publish", "--rate", "50")
        receiver = procs.python(
            "receiver", "-m", "lwd_testing.ros_smoke", "receive", "--count", "15", "--timeout", "40"
        )
        rc = receiver.wait(timeout=60)
        out = procs.log("receiver").strip().splitlines()
        assert rc == 0, procs.log("receiver") + procs.log("publisher")
        result = json.loads(out[-1])
        assert result["chunks"] >= 15 and result["images"] >= 15
        assert result["chunk_fields_ok"] and result["image_ok"]


def test_label_episode_service_round_trip(tmp_path):
    with ros_processes(tmp_path) as procs:
        procs.python("server", "-m", "lwd_testing.ros_smoke", "label-server")
        client = procs.python(
            "client",
            "-m",
            "lwd_testing.ros_smoke",
            "label-client",
            "--success",
            "--note",
            "cup on shelf",
            "--timeout",
            "40",
        )
        assert client.wait(timeout=60) == 0, procs.log("client") + procs.log("server")
        result = json.loads(procs.log("client").strip().splitlines()[-1])
        assert result["accepted"] is True
        assert result["episode_id"] == "smoke-episode"
        assert result["message"] == "labelled success: cup on shelf"


def test_receiver_reports_failure_when_nobody_publishes(tmp_path):
    with ros_processes(tmp_path) as procs:
        receiver = procs.python(
            "receiver", "-m", "lwd_testing.ros_smoke", "receive", "--count", "1", "--timeout", "2"
        )
        assert receiver.wait(timeout=30) == 1
        assert json.loads(procs.log("receiver").strip().splitlines()[-1])["ok"] is False
