"""Instructions the policy was not trained on (`core.instructions`): warned once per new one, counted,
or refused with `unknown_instruction: refuse`; over real DDS also the execution provider in the log,
/diagnostics and PolicyStatus."""

from __future__ import annotations

import time
from pathlib import Path

import actorprocs
import pytest
from conftest import write_urdf

from lwd_actor.core.instructions import REFUSE, WARN, UnknownInstructions
from lwd_common.store import EpisodeStore
from lwd_testing.models import build_policy
from rosutil import ros_processes, wait_for

KNOWN = ("<unknown>", "pick up the cube")


def test_a_known_instruction_passes_without_a_count():
    u = UnknownInstructions()
    v = u.check("pick up the cube", KNOWN, "v1")
    assert v.known and not v.refuse and not v.message
    u.started(v)
    assert (u.episodes, u.refused, u.distinct) == (0, 0, 0)


def test_warn_runs_the_episode_says_so_once_per_instruction_and_policy_and_counts_each():
    u = UnknownInstructions(WARN)
    first = u.check("stack the blocks", KNOWN, "v1")
    assert not first.known and not first.refuse and first.first_time
    assert "'stack the blocks' is not one policy v1 was trained on" in first.message
    assert "untrained fallback embedding (index 0 '<unknown>')" in first.message
    u.started(first)
    again = u.check("stack the blocks", KNOWN, "v1")
    assert not again.first_time
    u.started(again)
    assert u.check("stack the blocks", KNOWN, "v2").first_time  # a new policy may or may not know it
    assert (u.episodes, u.distinct, u.last) == (2, 1, "stack the blocks")


def test_a_start_that_failed_for_another_reason_does_not_use_up_the_warning():
    u = UnknownInstructions()
    assert u.check("wipe", KNOWN, "v1").first_time  # e.g. refused: no observation yet; never started
    v = u.check("wipe", KNOWN, "v1")
    assert v.first_time
    u.started(v)
    assert u.episodes == 1


def test_refuse_turns_the_start_down_and_counts_it():
    u = UnknownInstructions(REFUSE)
    v = u.check("", KNOWN, "v1")
    assert v.refuse and v.message.startswith("cannot start: instruction '' is not one policy v1")
    assert "unknown_instruction is 'refuse'" in v.message
    assert (u.refused, u.episodes) == (1, 0)
    assert not u.check("pick up the cube", KNOWN, "v1").refuse


def test_an_unknown_mode_is_a_configuration_error():
    with pytest.raises(ValueError, match="unknown_instruction must be one of"):
        UnknownInstructions("ignore")


def start_actor(procs, tmp_path: Path, ns: str, policy: Path, *params: str):
    urdf = write_urdf(tmp_path / "robot.urdf")
    return actorprocs.start_actor(
        procs, f"actor_{ns.strip('/')}", ns, policy, urdf, tmp_path / "store", *params
    )


def cli(procs, name: str, ns: str, *args: str) -> dict:
    return actorprocs.episode_cli(procs, name, ns, *args)


@pytest.mark.ros
def test_over_dds_unknown_instructions_warn_once_or_are_refused_and_the_provider_is_reported(tmp_path):
    policy = build_policy(tmp_path / "policy.onnx", version="v1", instructions=KNOWN)
    probe_out = tmp_path / "probe.jsonl"
    with ros_processes(tmp_path) as procs:
        for ns in ("/robot_a", "/robot_b"):
            procs.python(
                f"robot{ns[-1]}", "-m", "lwd_testing.fake_robot_node", "--ros-args", "-r", f"__ns:={ns}"
            )
        start_actor(procs, tmp_path, "/robot_a", policy, "prefer_cuda:=true")
        start_actor(procs, tmp_path, "/robot_b", policy, "unknown_instruction:=refuse")
        procs.python(
            "probe",
            "-m",
            "lwd_testing.probe_node",
            "--ros-args",
            "-r",
            "__ns:=/robot_a",
            "-p",
            f"out:={probe_out}",
        )
        # warn (the default): the episode runs, the start says why, the log says it once
        episodes = []
        for i in range(2):
            started = cli(
                procs,
                f"a{i}",
                "/robot_a",
                "--retry-s",
                "60",
                "start",
                "--task",
                "stack",
                "--instruction",
                "stack the blocks",
            )
            assert started["accepted"], started["message"] + procs.log("actor_robot_a")
            assert "'stack the blocks' is not one policy v1 was trained on" in started["message"]
            episodes.append(started["episode_id"])
            time.sleep(0.5)
            assert cli(procs, f"a{i}_stop", "/robot_a", "stop", "--abort")["accepted"]
        log_a = procs.log("actor_robot_a")
        assert log_a.count("UNKNOWN INSTRUCTION: instruction 'stack the blocks'") == 1, log_a

        def diag() -> dict:
            d = [
                m
                for m in actorprocs.probe_lines(probe_out)
                if m["topic"] == "diagnostics" and m["name"] == "robot_a/actor"
            ]
            return d[-1] if d else {}

        assert wait_for(lambda: diag().get("values", {}).get("unknown_instruction_episodes") == "2", 15), (
            diag()
        )
        values = diag()["values"]
        assert (
            values["unknown_instructions"] == "1" and values["unknown_instruction_last"] == "stack the blocks"
        )
        store = EpisodeStore(tmp_path / "store")
        assert wait_for(lambda: set(episodes) <= set(store.ids()), 20)
        assert (
            store.get(episodes[0]).meta.instruction == "stack the blocks"
        )  # recorded: the learner learns it

        # the provider: what runs, in the log once, in /diagnostics with why, in PolicyStatus
        status = [m for m in actorprocs.probe_lines(probe_out) if m["topic"] == "policy_status"]
        assert status and status[-1]["provider"] == values["inference_provider"]
        assert values["inference_provider_preferred"] == "CUDAExecutionProvider"
        if values["inference_provider"] == "CPUExecutionProvider":  # no CUDA libraries here
            assert (
                log_a.count("inference runs on CPUExecutionProvider: CUDAExecutionProvider was preferred")
                == 1
            )
            assert values["inference_provider_why"] and diag()["level"] >= 1
            assert "not the preferred CUDAExecutionProvider" in diag()["message"]

        # refuse: the start is turned down (once robot_b could start: a known instruction still starts)
        known = cli(
            procs,
            "b0",
            "/robot_b",
            "--retry-s",
            "60",
            "start",
            "--task",
            "pick",
            "--instruction",
            "pick up the cube",
        )
        assert known["accepted"], known["message"]
        assert cli(procs, "b0_stop", "/robot_b", "stop", "--abort")["accepted"]
        refused = cli(
            procs, "b1", "/robot_b", "start", "--task", "stack", "--instruction", "stack the blocks"
        )
        assert not refused["accepted"] and "unknown_instruction is 'refuse'" in refused["message"], refused
        assert "cannot start: instruction 'stack the blocks'" in procs.log("actor_robot_b")
