"""The main job end to end: two simulated robots, the bridge and the online learner.

It runs `python -m lwd_actor.bringup.main` (what `./lwd fleet` runs) at a tiny
scale: bootstrap offline data and a checkpoint, then the fleet. Episodes must
reach the learner's store from both robots, the learner must take steps and
publish a new policy, and both robots must load it at an episode boundary.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from lwd_common.policy_store import PolicyStore, version_number
from lwd_common.process import die_with_parent
from lwd_common.store import EpisodeStore
from rosutil import REPO, ros_env

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bridge_status(run_dir) -> dict:
    try:
        return json.loads((run_dir / "bridge" / "status.json").read_text())
    except (OSError, ValueError):
        return {}


# Its own bounds below (20 min to the new policy, 5 min to stop) are for loaded machines; the
# suite's per-test timeout must not cut them short.
@pytest.mark.timeout(1800)
def test_fleet_learns_online_and_robots_load_the_new_policy(tmp_path):
    run_dir = tmp_path / "fleet"
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "lwd_actor.bringup.main",
        "--run-dir",
        str(run_dir),
        "--num-robots",
        "2",
        "--offline-episodes",
        "4",
        "--bc-steps",
        "20",
        "--offline-rl-steps",
        "10",
        "--publish-every",
        "10",
        "--status-every",
        "15",
        "--set",
        f"bridge.bind=tcp://127.0.0.1:{port}",
    ]
    log = (tmp_path / "main.log").open("wb")
    proc = subprocess.Popen(
        die_with_parent(argv),
        env=ros_env(),
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    policies = PolicyStore(run_dir / "bridge" / "policies")

    def robots_on_new_policy() -> bool:
        robots = bridge_status(run_dir).get("robots", {})
        versions = [r.get("policy_version") or "" for r in robots.values()]
        return len(versions) == 2 and all(v and version_number(v) >= 2 for v in versions)

    try:
        deadline = time.monotonic() + 1200  # a bound for loaded machines, not a timing assertion
        while time.monotonic() < deadline and proc.poll() is None and not robots_on_new_policy():
            time.sleep(2)
        assert proc.poll() is None, (tmp_path / "main.log").read_text()[-4000:]
        assert robots_on_new_policy(), (bridge_status(run_dir), (tmp_path / "main.log").read_text()[-4000:])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # the supervisor shuts the fleet down cleanly
            try:
                # The learner may take up to its grace (60 s) to checkpoint, then the plots are
                # drawn (the value plot loads the learner in JAX): minutes on a loaded machine.
                proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()

    assert proc.returncode == 0, (tmp_path / "main.log").read_text()[-4000:]
    store = EpisodeStore(run_dir / "bridge" / "store")
    episodes = [store.get(i) for i in store.latest_snapshot().episode_ids]
    assert {e.meta.robot_id for e in episodes} == {"robot0", "robot1"}
    assert all(len(e.meta.cameras) == 3 and e.num_steps > 0 for e in episodes)
    latest = policies.latest()
    assert version_number(latest.version) >= 2
    assert latest.training_step > 0  # published by the online learner after training steps
    assert (run_dir / "plots" / "success_rate.png").exists()
    assert "episodes in the learner's store" in (tmp_path / "main.log").read_text()
