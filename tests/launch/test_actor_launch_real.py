"""`ros2 launch lwd_actor fleet.launch.py mode:=real` against a fake robot (launch_pytest).

In real mode the fleet launch starts only the actor, one (not the simulated fleet's two), named by
the params file's robot_id, which talks to whatever publishes the robot's topics; here
lwd_testing's fake robot does. The test starts
an episode with the actor's own CLI, lets the policy drive, stops and labels it,
and finds it in the actor's local store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from launchstack import launch, launch_pytest, launch_ros
from launchutil import launch_file

from lwd_common.store import EpisodeStore
from lwd_testing.models import build_policy
from rosutil import REPO, unique_domain_id, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture
def domain_id():
    return unique_domain_id()


@pytest.fixture
def params_file(tmp_path):
    policy = build_policy(tmp_path / "policy.onnx", version="real-v1")
    params = {
        "/**": {
            "ros__parameters": {
                "policy_path": str(policy),
                "sink": "directory",
                "store_dir": str(tmp_path / "store"),
                "robot_id": "cell_a",  # the launch takes the robot's id (and namespace) from here
            }
        }
    }
    path = tmp_path / "actor_params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@launch_pytest.fixture
def real_fleet(params_file, tmp_path, domain_id):
    return launch.LaunchDescription(
        [
            launch.actions.SetEnvironmentVariable("ROS_DOMAIN_ID", str(domain_id)),
            launch.actions.SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
            launch_ros.actions.Node(
                package="lwd_testing",
                executable="fake_robot_node",
                name="fake_robot",
                namespace="/cell_a",
                output="screen",
            ),
            launch.actions.IncludeLaunchDescription(
                launch.launch_description_sources.PythonLaunchDescriptionSource(
                    launch_file("lwd_actor", "fleet.launch.py")
                ),
                launch_arguments={
                    "mode": "real",  # and no num_robots: the fleet file's 2 are the simulated fleet's
                    "with_bridge": "false",
                    "with_learner": "false",
                    "params_file": str(params_file),
                    "run_dir": str(tmp_path / "run"),
                }.items(),
            ),
            launch_pytest.actions.ReadyToTest(),
        ]
    )


def episode_cli(domain_id: int, *args: str) -> dict:
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    out = subprocess.run(
        [sys.executable, "-m", "lwd_actor.episode_cli", "--ns", "/cell_a", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr
    return json.loads(lines[-1])


@pytest.mark.launch(fixture=real_fleet)
def test_real_mode_actor_drives_the_fake_robot_and_records_a_labelled_episode(tmp_path, domain_id):
    started = episode_cli(domain_id, "--retry-s", "90", "start", "--task", "pick", "--instruction", "pick it")
    assert started["accepted"], started["message"]
    assert episode_cli(domain_id, "stop")["accepted"]
    assert episode_cli(domain_id, "label", "--success")["accepted"]
    store = EpisodeStore(tmp_path / "store")
    assert wait_for(lambda: store.ids() == [started["episode_id"]], 60)
    episode = store.get(started["episode_id"])
    assert episode.success and episode.policy_versions == ["real-v1"] and episode.num_steps > 0
    assert started["episode_id"].startswith("cell_a-")
