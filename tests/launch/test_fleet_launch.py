"""`ros2 launch lwd_actor fleet.launch.py` under the real launch system (launch_pytest).

The launch file is found through the ament index, as an operator's `ros2 launch`
finds it; the run directory is bootstrapped with a small real ONNX policy so the
test does not train. A simulated robot, its operator and the bridge run; the
test waits for episodes in the bridge's store and for the robot to report the
published policy version loaded.
"""

from __future__ import annotations

import json
import time

import pytest
from launchstack import launch, launch_pytest
from launchutil import bootstrapped_run_dir, fleet_file, free_port, launch_file

from lwd_common.store import EpisodeStore
from rosutil import unique_domain_id

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture
def run_dir(tmp_path):
    return bootstrapped_run_dir(tmp_path)


def fleet_launch(run_dir, tmp_path, host: str):
    return launch.LaunchDescription(
        [
            launch.actions.SetEnvironmentVariable("ROS_DOMAIN_ID", str(unique_domain_id())),
            launch.actions.SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
            launch.actions.IncludeLaunchDescription(
                launch.launch_description_sources.PythonLaunchDescriptionSource(
                    launch_file("lwd_actor", "fleet.launch.py")
                ),
                launch_arguments={
                    "fleet_file": str(fleet_file(tmp_path, free_port(), host)),
                    "num_robots": "1",
                    "run_dir": str(run_dir),
                    "with_learner": "false",
                }.items(),
            ),
            launch_pytest.actions.ReadyToTest(),
        ]
    )


@launch_pytest.fixture
def fleet(run_dir, tmp_path):
    return fleet_launch(run_dir, tmp_path, "127.0.0.1")


@launch_pytest.fixture
def fleet_on_all_interfaces(run_dir, tmp_path):
    """A bridge other machines can reach: the bring-up turns CURVE on and makes the keys."""
    return fleet_launch(run_dir, tmp_path, "0.0.0.0")


def _robot_status(run_dir) -> dict:
    try:
        return (
            json.loads((run_dir / "bridge" / "status.json").read_text()).get("robots", {}).get("robot0", {})
        )
    except (OSError, ValueError):
        return {}


def _committed_episodes(run_dir) -> list:
    store = EpisodeStore(run_dir / "bridge" / "store")
    snapshot = store.latest_snapshot()
    return [store.get(i) for i in snapshot.episode_ids] if snapshot else []


def _wait_for_episodes_and_policy(run_dir) -> list:
    deadline = time.monotonic() + 600  # a bound for a loaded 2-core machine, not a timing assertion
    while time.monotonic() < deadline and not (
        _committed_episodes(run_dir) and _robot_status(run_dir).get("policy_version")
    ):
        time.sleep(2)
    episodes = _committed_episodes(run_dir)
    assert episodes, f"no episode reached the bridge store in 600 s; robot status {_robot_status(run_dir)}"
    return episodes


@pytest.mark.launch(fixture=fleet)
def test_fleet_launch_streams_episodes_to_the_bridge_and_the_robot_runs_the_published_policy(run_dir):
    episodes = _wait_for_episodes_and_policy(run_dir)
    assert {e.meta.robot_id for e in episodes} == {"robot0"}
    assert all(e.num_steps > 0 and len(e.meta.cameras) == 3 for e in episodes)
    assert _robot_status(run_dir)["policy_version"] == "v000001"


@pytest.mark.launch(fixture=fleet_on_all_interfaces)
def test_a_reachable_bridge_runs_over_curve_with_keys_made_by_the_bring_up(run_dir):
    episodes = _wait_for_episodes_and_policy(run_dir)
    assert {e.meta.robot_id for e in episodes} == {"robot0"}
    keys = run_dir / "keys"
    assert (keys / "allow" / "robot0.key").exists() and (keys / "bridge.key_secret").exists()
    assert _robot_status(run_dir)["policy_version"] == "v000001"
