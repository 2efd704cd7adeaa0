"""Real robots and real operators, over real DDS: fake robot, actor, probe, teleop and the episode CLI
in separate processes (own ROS_DOMAIN_ID per test). E-stop by topic and service, latched until an
explicit reset; joint states from two controllers; a best-effort pedal; robots in two namespaces
without per-robot parameters; the label deadline; compressed cameras recorded at a configured size."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import actorprocs
import pytest
from conftest import write_urdf

from lwd_common.episode import ActionSource
from lwd_common.preprocessing import decode_jpeg
from lwd_common.store import EpisodeStore
from lwd_testing.models import build_policy
from rosutil import ros_processes, wait_for

pytestmark = pytest.mark.ros


def start_actor(procs, tmp_path: Path, ns: str, *params: str, name: str = "actor"):
    """An actor in namespace `ns` with the shipped defaults (no robot_id given)."""
    policy = tmp_path / "policy.onnx"
    if not policy.exists():
        build_policy(policy)
    urdf = write_urdf(tmp_path / "robot.urdf")
    return actorprocs.start_actor(procs, name, ns, policy, urdf, tmp_path / "store", *params)


def cli(procs, name: str, ns: str, *args: str, timeout: float = 60) -> dict:
    return actorprocs.episode_cli(procs, name, ns, *args, timeout=timeout)


def test_estop_by_topic_and_service_holds_then_silences_commands_until_an_explicit_reset(tmp_path):
    ns, probe_out = "/robot0", tmp_path / "probe.jsonl"
    with ros_processes(tmp_path) as procs:
        procs.python("robot", "-m", "lwd_testing.fake_robot_node", "--ros-args", "-r", f"__ns:={ns}")
        start_actor(procs, tmp_path, ns, "estop_hold_s:=0.3")
        procs.python(
            "probe",
            "-m",
            "lwd_testing.probe_node",
            "--ros-args",
            "-r",
            f"__ns:={ns}",
            "-p",
            f"out:={probe_out}",
        )
        first = cli(procs, "start", ns, "--retry-s", "40", "start", "--task", "pick")
        assert first["accepted"], first["message"] + procs.log("actor")

        def commands() -> list[dict]:
            return [m for m in actorprocs.probe_lines(probe_out) if m["topic"] == "joint_commands"]

        def diagnostics() -> list[dict]:
            return [
                m
                for m in actorprocs.probe_lines(probe_out)
                if m["topic"] == "diagnostics" and m["name"] == "robot0/actor"
            ]

        assert wait_for(lambda: len(commands()) > 15, 30), procs.log("actor")
        # An e-stop bridge publishing best-effort: heard, latched, the episode aborted.
        assert cli(procs, "estop_on", ns, "estop-topic", "on", "--best-effort")["accepted"]
        assert wait_for(lambda: "E-STOP engaged" in procs.log("actor"), 20), procs.log("actor")
        n = len(commands())
        time.sleep(1.5)  # hold 0.3 s, then nothing
        after = commands()[n:]
        assert len(after) <= 20, f"{len(after)} commands after the e-stop"
        time.sleep(1.0)
        assert len(commands()) == n + len(after), "commands kept coming after the e-stop hold"
        assert wait_for(
            lambda: any(d["values"]["estop"] == "True" and d["level"] == 2 for d in diagnostics()), 10
        )
        store = EpisodeStore(tmp_path / "store")
        assert wait_for(lambda: first["episode_id"] in store.ids(), 20), procs.log("actor")
        assert store.get(first["episode_id"]).outcome.reason == "estop"
        refused = cli(procs, "start2", ns, "start", "--task", "pick")
        assert not refused["accepted"] and "e-stop engaged" in refused["message"]
        early = cli(procs, "reset1", ns, "reset-estop")
        assert not early["accepted"] and "input still says engaged" in early["message"]
        assert cli(procs, "estop_off", ns, "estop-topic", "off")["accepted"]
        time.sleep(0.5)
        assert not cli(procs, "start3", ns, "start", "--task", "pick")["accepted"]  # released is not reset
        reset = cli(procs, "reset2", ns, "reset-estop", "--reason", "operator checked the cell")
        assert reset["accepted"], reset["message"]
        second = cli(procs, "start4", ns, "--retry-s", "20", "start", "--task", "pick")
        assert second["accepted"], second["message"]
        assert wait_for(lambda: len(commands()) > n + len(after) + 15, 30), "no commands after the reset"
        # The service engages it as well, naming the reason.
        by_service = cli(procs, "estop_srv", ns, "estop", "--reason", "light curtain")
        assert by_service["accepted"] and second["episode_id"] in by_service["message"]
        assert wait_for(lambda: second["episode_id"] in store.ids(), 20)
        assert store.get(second["episode_id"]).outcome.note == "light curtain"


def test_joint_states_from_two_controllers_and_a_best_effort_pedal_drive_an_episode(tmp_path):
    ns, probe_out = "/robot0", tmp_path / "probe.jsonl"
    with ros_processes(tmp_path) as procs:
        procs.python(
            "robot",
            "-m",
            "lwd_testing.fake_robot_node",
            "--ros-args",
            "-r",
            f"__ns:={ns}",
            "-p",
            "split_joint_states:=true",
        )
        start_actor(procs, tmp_path, ns)
        procs.python(
            "probe",
            "-m",
            "lwd_testing.probe_node",
            "--ros-args",
            "-r",
            f"__ns:={ns}",
            "-p",
            f"out:={probe_out}",
        )
        started = cli(procs, "start", ns, "--retry-s", "40", "start", "--task", "pick")
        assert started["accepted"], started["message"] + procs.log("actor")
        procs.python(
            "teleop",
            "-m",
            "lwd_testing.teleop_helper_node",
            "--ros-args",
            "-r",
            f"__ns:={ns}",
            "-p",
            "qos:=best_effort",
            "-p",
            "press_after_s:=0.5",
            "-p",
            "hold_s:=1.5",
        )

        def engaged(value: bool) -> bool:
            return any(
                m["topic"] == "intervention_state" and m["engaged"] is value
                for m in actorprocs.probe_lines(probe_out)
            )

        assert wait_for(lambda: engaged(True), 30), procs.log("teleop") + procs.log("actor")
        assert wait_for(lambda: engaged(False), 30)
        time.sleep(0.5)
        assert cli(procs, "stop", ns, "stop", "--abort")["accepted"]
        store = EpisodeStore(tmp_path / "store")
        assert wait_for(lambda: started["episode_id"] in store.ids(), 20), procs.log("actor")
        counts = Counter(store.get(started["episode_id"]).source.tolist())
        assert counts[ActionSource.TELEOP] >= 20 and counts[ActionSource.POLICY] >= 10, counts
        assert "dropping joint_states" not in procs.log("actor")


def test_two_robots_in_two_namespaces_get_their_own_ids_and_an_unlabelled_stop_clears_at_the_deadline(
    tmp_path,
):
    with ros_processes(tmp_path) as procs:
        for ns in ("/robot_a", "/robot_b"):
            name = ns.strip("/")
            procs.python(
                f"robot_{name}", "-m", "lwd_testing.fake_robot_node", "--ros-args", "-r", f"__ns:={ns}"
            )
            start_actor(procs, tmp_path, ns, "label_deadline_s:=2.0", name=f"actor_{name}")
        started = {
            ns: cli(procs, f"start{ns[-1]}", ns, "--retry-s", "40", "start", "--task", "pick")
            for ns in ("/robot_a", "/robot_b")
        }
        assert all(s["accepted"] for s in started.values()), started
        time.sleep(0.5)
        stopped = cli(procs, "stop_a", "/robot_a", "stop")
        assert stopped["accepted"] and "stored without a label in 2 s" in stopped["message"], stopped
        assert cli(procs, "abort_b", "/robot_b", "stop", "--abort")["accepted"]
        # robot_a awaits a label nobody gives: after the deadline a new start is accepted.
        again = cli(procs, "again_a", "/robot_a", "--retry-s", "20", "start", "--task", "pick")
        assert again["accepted"], again["message"] + procs.log("actor_robot_a")
        store = EpisodeStore(tmp_path / "store")
        first_a, first_b = started["/robot_a"]["episode_id"], started["/robot_b"]["episode_id"]
        assert wait_for(lambda: {first_a, first_b} <= set(store.ids()), 20)
        a, b = store.get(first_a), store.get(first_b)
        assert (a.meta.robot_id, b.meta.robot_id) == ("robot_a", "robot_b")
        assert first_a.startswith("robot_a-") and first_b.startswith("robot_b-")
        assert a.outcome.reason == "label_timeout" and not a.success


def test_compressed_cameras_are_decoded_resized_on_receipt_and_recorded_at_the_configured_size(tmp_path):
    ns = "/robot0"
    with ros_processes(tmp_path) as procs:
        procs.python(
            "robot",
            "-m",
            "lwd_testing.fake_robot_node",
            "--ros-args",
            "-r",
            f"__ns:={ns}",
            "-p",
            "compressed:=true",
            "-p",
            "image_size:=64",
        )
        start_actor(procs, tmp_path, ns, "compressed_cameras:=all", "record_height:=40", "record_width:=40")
        started = cli(procs, "start", ns, "--retry-s", "40", "start", "--task", "pick")
        assert started["accepted"], started["message"] + procs.log("actor")
        time.sleep(1.5)
        assert cli(procs, "stop", ns, "stop", "--abort")["accepted"]
        store = EpisodeStore(tmp_path / "store")
        assert wait_for(lambda: started["episode_id"] in store.ids(), 20), procs.log("actor")
        ep = store.get(started["episode_id"])
        head = decode_jpeg(ep.images["head"][-1])
        assert head.shape == (40, 40, 3) and ep.num_steps > 10
        assert (ep.source == ActionSource.POLICY).sum() > 5
