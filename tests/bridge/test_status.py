"""Fleet status: the CLI's view from status.json, health levels, and the /diagnostics ROS shell."""

import json
import subprocess
import sys
import time

import pytest
from conftest import start_bridge

from lwd_learner_bridge.status import ERROR, OK, WARN, fleet_health, format_status
from rosutil import wait_for


def status_dict(now: float, robot_seen: float, policy_ok: bool = True) -> dict:
    return {
        "time": now,
        "started_at": now - 100,
        "snapshot_version": 3,
        "episodes_in_store": 3,
        "latest_policy": "v000002",
        "buffered_bytes": 0,
        "sessions": 1,
        "counters": {"frames": 10, "rejected": 0},
        "commit_latency_s": {"p50": 0.01, "p99": 0.03},
        "policy_latency_s": {"p50": None, "p99": None},
        "robots": {
            "robot0": {
                "last_seen": robot_seen,
                "episodes_committed": 3,
                "open_episodes": 0,
                "duplicates_dropped": 0,
                "rejected": 0,
                "policy_version": "v000002",
                "policy_loaded_at": now,
                "policy_ok": policy_ok,
                "last_commit_latency_s": 0.02,
            }
        },
    }


def test_silent_robot_is_a_warning():
    levels = {name: level for level, name, _, _ in fleet_health(status_dict(1000.0, 900.0), 10.0, now=1000.0)}
    assert levels == {"lwd_bridge": OK, "lwd_bridge/robot0": WARN}


def test_robot_that_failed_to_load_a_policy_is_a_warning():
    health = fleet_health(status_dict(1000.0, 999.0, policy_ok=False), 10.0, now=1000.0)
    assert health[1][0] == WARN and "failed to load" in health[1][2]


def test_stale_status_file_means_the_bridge_is_down():
    assert fleet_health(status_dict(1000.0, 999.0), 10.0, now=1100.0)[0][0] == ERROR


def test_status_header_says_when_an_operator_pinned_the_fleet():
    status = {**status_dict(1000.0, 999.0), "pinned_policy": "v000001"}
    assert "latest policy v000002 PINNED to v000001" in format_status(status).splitlines()[0]
    assert "PINNED" not in format_status(status_dict(1000.0, 999.0))


def test_status_command_reads_the_bridge_root(procs, tmp_path, endpoint):
    root = tmp_path / "bridge"
    start_bridge(procs, root, endpoint)
    assert wait_for(lambda: (root / "status.json").exists(), 10)
    out = subprocess.run(
        [sys.executable, "-m", "lwd_learner_bridge.status", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "episodes in store 0" in out.stdout, out.stderr


@pytest.mark.ros
def test_status_node_publishes_fleet_on_diagnostics(procs, tmp_path):
    (tmp_path / "status.json").write_text(json.dumps(status_dict(time.time() + 3600, time.time() + 3600)))
    procs.python(
        "node",
        "-m",
        "lwd_learner_bridge.status_node",
        "--ros-args",
        "-p",
        f"root:={tmp_path}",
        "-p",
        "period_s:=0.2",
    )
    listener = procs.python("listener", "-c", LISTENER)
    assert listener.wait(timeout=60) == 0, procs.log("listener") + procs.log("node")
    names = json.loads(procs.log("listener").strip().splitlines()[-1])
    assert names == ["lwd_bridge", "lwd_bridge/robot0"]


LISTENER = """
import json, sys, time, rclpy
from diagnostic_msgs.msg import DiagnosticArray
rclpy.init(); node = rclpy.create_node("listener"); got = []
node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: got.append([s.name for s in m.status]), 10)
deadline = time.time() + 40
while not got and time.time() < deadline:
    rclpy.spin_once(node, timeout_sec=0.2)
print(json.dumps(got[0] if got else None)); sys.exit(0 if got else 1)
"""


def test_status_command_asks_a_curve_bridge_with_a_monitor_key(procs, tmp_path, endpoint):
    from lwd_learner_bridge.keys import generate

    keys, allow, monitors = tmp_path / "keys", tmp_path / "allow", tmp_path / "monitors"
    for name in ("bridge", "ops"):
        generate(keys, name)
    allow.mkdir()
    monitors.mkdir()
    (monitors / "ops.key").write_bytes((keys / "ops.key").read_bytes())
    start_bridge(
        procs,
        tmp_path / "bridge",
        endpoint,
        "--curve-secret-key",
        str(keys / "bridge.key_secret"),
        "--allow-keys",
        str(allow),
        "--monitor-keys",
        str(monitors),
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lwd_learner_bridge.status",
            "--endpoint",
            endpoint,
            "--curve-secret-key",
            str(keys / "ops.key_secret"),
            "--server-key",
            str(keys / "bridge.key"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "health OK" in out.stdout, out.stdout + out.stderr


HOSTILE = "v000002\x1b[2J\x1b[H\rALL ROBOTS OK\u202e"


@pytest.mark.parametrize(
    "command",
    [["lwd_learner_bridge.status"], ["lwd_learner_bridge.policy_admin", "status"]],
    ids=["status", "policy_admin status"],
)
def test_peer_chosen_text_reaches_the_operators_terminal_escaped(tmp_path, command):
    status = status_dict(time.time(), time.time())
    status["robots"]["robot0"]["policy_version"] = HOSTILE
    (tmp_path / "policies").mkdir()
    (tmp_path / "status.json").write_text(json.dumps(status))
    module, *rest = command
    out = subprocess.run(
        [sys.executable, "-m", module, "--root", str(tmp_path), *rest],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert "\\x1b[2J\\x1b[H\\rALL ROBOTS OK\\u202e" in out
