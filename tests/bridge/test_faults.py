"""Crashes and a lossy network: every completed episode ends up in the store once, byte-identical."""

import ast
import json
import os
import signal
from pathlib import Path

from bridgeutil import free_endpoint, snapshot_ids, stored_hashes
from conftest import HERE, start_bridge, start_robot

from lwd_common.policy_store import PolicyStore
from lwd_common.transport import BridgeClient, ClientConfig
from rosutil import wait_for


def completed(spool: Path, robot_id: str) -> dict[str, str]:
    """Episodes whose end() returned in the robot process (it logs them after end())."""
    path = spool.parent / f"{robot_id}.done.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["episode_id"]: r["content_hash"] for r in rows}


def assert_store_holds_exactly(root: Path, expected: dict[str, str]) -> None:
    assert stored_hashes(root) == expected
    assert snapshot_ids(root) == set(expected)


def test_bridge_killed_mid_stream_and_restarted_loses_and_doubles_nothing(procs, tmp_path, endpoint):
    root, spool = tmp_path / "bridge", tmp_path / "r0" / "spool"
    bridge = start_bridge(procs, root, endpoint)
    robot = start_robot(
        procs, "robot", endpoint, "robot0", spool, "--episodes", "4", "--steps", "60", "--step-delay", "0.01"
    )
    assert wait_for(lambda: len(stored_hashes(root)) >= 1, 30), procs.log("robot")
    os.kill(bridge.pid, signal.SIGKILL)  # mid-stream: episode 2 is being sent
    bridge.wait(5)
    assert wait_for(lambda: len(completed(spool, "robot0")) >= 2, 30), procs.log("robot")
    start_bridge(procs, root, endpoint, name="bridge2")
    assert procs.wait(robot, 60) == 0, procs.log("robot")
    expected = completed(spool, "robot0")
    assert len(expected) == 4
    assert_store_holds_exactly(root, expected)


def test_robot_killed_mid_episode_resends_its_spool_after_restart(procs, tmp_path, endpoint):
    root, spool = tmp_path / "bridge", tmp_path / "r0" / "spool"
    # No bridge yet: everything stays in the spool when the robot dies.
    robot = start_robot(
        procs, "robot", endpoint, "robot0", spool, "--episodes", "5", "--steps", "40", "--step-delay", "0.01"
    )

    def mid_episode() -> bool:
        n = len(completed(spool, "robot0"))
        current = spool / "episodes" / f"robot0-ep{n:04d}"
        return n >= 2 and current.exists() and len(list(current.glob("*.frm"))) >= 2

    assert wait_for(mid_episode, 30, interval=0.01), procs.log("robot")
    os.kill(robot.pid, signal.SIGKILL)
    robot.wait(5)
    first_run = completed(spool, "robot0")
    assert 2 <= len(first_run) < 5
    start_bridge(procs, root, endpoint)
    robot2 = start_robot(
        procs, "robot2", endpoint, "robot0", spool, "--episodes", "1", "--first", "10", "--steps", "20"
    )
    assert procs.wait(robot2, 60) == 0, procs.log("robot2")
    expected = completed(spool, "robot0")
    assert len(expected) == len(first_run) + 1
    assert_store_holds_exactly(root, expected)
    assert len(list((spool / "orphaned").iterdir())) == 1  # the episode cut off by the kill, not sent


def test_dropped_duplicated_and_reordered_frames_still_store_each_episode_once(procs, tmp_path, endpoint):
    root = tmp_path / "bridge"
    start_bridge(procs, root, endpoint)
    front = free_endpoint()
    procs.python(
        "proxy",
        str(HERE / "chaos_proxy.py"),
        "--front",
        front,
        "--back",
        endpoint,
        "--drop",
        "0.15",
        "--dup",
        "0.15",
        "--reorder",
        "0.2",
        "--seed",
        "7",
    )
    assert wait_for(lambda: "proxy up" in procs.log("proxy"), 20)
    robots = {}
    for rid in ("robot0", "robot1"):
        spool = tmp_path / rid / "spool"
        robots[rid] = (
            start_robot(
                procs, rid, front, rid, spool, "--episodes", "3", "--steps", "50", "--ack-timeout", "0.2"
            ),
            spool,
        )
    expected = {}
    for rid, (proc, spool) in robots.items():
        assert procs.wait(proc, 90) == 0, procs.log(rid)
        expected.update(completed(spool, rid))
    assert len(expected) == 6
    assert_store_holds_exactly(root, expected)

    def reported_retries() -> int:
        robots = json.loads((root / "status.json").read_text())["robots"]
        return sum(r.get("retries", 0) for r in robots.values())

    assert wait_for(lambda: reported_retries() > 0, 5)  # robots' own counters reach the fleet status
    assert wait_for(lambda: "faults" in procs.log("proxy"), 5)
    counts = ast.literal_eval(procs.log("proxy").strip().splitlines()[-1].removeprefix("faults "))
    assert counts["dropped"] > 0 and counts["duplicated"] > 0 and counts["reordered"] > 0, counts


def test_policy_fetch_works_at_the_first_boundary_after_a_bridge_restart(procs, tmp_path, endpoint):
    root = tmp_path / "bridge"
    bridge = start_bridge(procs, root, endpoint)
    client = BridgeClient(
        ClientConfig(endpoint=endpoint, robot_id="robot0", spool_dir=str(tmp_path / "spool"))
    )
    try:
        PolicyStore(root / "policies").publish(b"first" * 100, training_step=1)
        assert client.fetch_policy_if_newer("").version == "v000001"
        os.kill(bridge.pid, signal.SIGKILL)
        bridge.wait(5)
        start_bridge(procs, root, endpoint, name="bridge2")
        PolicyStore(root / "policies").publish(b"second" * 100, training_step=2)
        got = client.fetch_policy_if_newer("v000001")
        assert got is not None and got.path.read_bytes() == b"second" * 100
    finally:
        client.close()
