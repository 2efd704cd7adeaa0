"""A broken bring-up fails at once, non-zero, with the reason in one line (the real `ros2 launch`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from launchstack import REASON  # noqa: F401  (skips this file without the launch stack)

from rosutil import unique_domain_id

pytestmark = pytest.mark.ros


def ros2_launch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    ros2 = Path(sys.executable).parent / "ros2"
    env = {
        **os.environ,
        "ROS_DOMAIN_ID": str(unique_domain_id()),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    }
    return subprocess.run(
        [str(ros2), "launch", "lwd_actor", "fleet.launch.py", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fleet_launch_without_a_policy_stops_and_names_the_bootstrap_command(tmp_path):
    out = ros2_launch(f"run_dir:={tmp_path / 'empty'}", "num_robots:=1", cwd=tmp_path)
    assert out.returncode != 0
    assert f"python -m lwd_actor.bringup.bootstrap --run-dir {tmp_path / 'empty'}" in out.stdout + out.stderr


def test_fleet_launch_with_a_missing_params_file_fails_naming_it(tmp_path):
    missing = tmp_path / "nope.yaml"
    out = ros2_launch(f"params_file:={missing}", "with_learner:=false", cwd=tmp_path)
    assert out.returncode != 0
    assert str(missing) in out.stdout + out.stderr


def test_fleet_launch_with_an_unknown_mode_fails_naming_the_field(tmp_path):
    out = ros2_launch("mode:=dream", f"run_dir:={tmp_path}", cwd=tmp_path)
    assert out.returncode != 0
    assert "mode must be 'sim' or 'real'" in out.stdout + out.stderr
