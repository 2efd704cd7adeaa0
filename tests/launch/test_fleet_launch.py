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


@launch_pytest.fixture
def fleet(run_dir, tmp_path):
    return launch.LaunchDescription([
        launch.actions.SetEnvironmentVariable("ROS_DOMAIN_ID", str(unique_domain_id())),
        launch.actions.SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
        launch.actions.IncludeLaunchDescription(
            launch.launch_description_sources.PythonLaunchDescriptionSource(launch_file("lwd_actor", "fleet.launch.py")),
            launch_arguments={
                "fleet_file": str(fleet_file(tmp_path, free_port())),
                "num_robots": "1",
                "run_dir": str(run_dir),
                "with_learner": "false",
            }.items(),
        ),
        launch_pytest.actions.ReadyToTest(),
    ])


def _robot_status(run_dir) -> dict:
    try:
        return json.loads((run_dir / "bridge" / "status.json").read_text()).get("robots", {}).get("robot0", {})
    except (OSError, ValueError):
        return {}


def _committed_episodes(run_dir) -> list:
    store = EpisodeStore(run_dir / "bridge" / "store")
    snapshot = store.latest_snapshot()
    return [store.get(i) for i in snapshot.episode_ids] if snapshot else []


@pytest.mark.launch(fixture=fleet)
def test_fleet_launch_streams_episodes_to_the_bridge_and_the_robot_runs_the_published_policy(run_dir):
    deadline = time.monotonic() + 600  # a bound for a loaded 2-core machine, not a timing assertion
    while time.monotonic() < deadline and not (_committed_episodes(run_dir)
                                               and _robot_status(run_dir).get("policy_version")):
        time.sleep(2)
    episodes = _committed_episodes(run_dir)
    assert episodes, f"no episode reached the bridge store in 600 s; robot status {_robot_status(run_dir)}"
    assert {e.meta.robot_id for e in episodes} == {"robot0"}
    assert all(e.num_steps > 0 and len(e.meta.cameras) == 3 for e in episodes)
    assert _robot_status(run_dir)["policy_version"] == "v000001"
