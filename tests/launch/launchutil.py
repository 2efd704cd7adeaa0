"""Shared pieces of the launch-system tests: a bootstrapped run directory without training,
the installed launch files, and a private DDS domain per test."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml
from ament_index_python.packages import get_package_share_directory

from lwd_actor.bringup.bootstrap import run_dir_layout
from lwd_common.policy_store import PolicyStore
from lwd_testing.models import build_policy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_file(package: str, name: str) -> str:
    """A launch file as `ros2 launch PACKAGE NAME` finds it: through the ament index."""
    return str(Path(get_package_share_directory(package)) / "launch" / name)


def bootstrapped_run_dir(root: Path) -> Path:
    """A run directory as the bootstrap leaves it, with a small real ONNX policy instead of a trained one."""
    layout = run_dir_layout(root / "run")
    layout.offline_learner.mkdir(parents=True)
    build_policy(layout.offline_policy, version="launch-test-v1")
    PolicyStore(layout.bridge_root / "policies").publish(layout.offline_policy.read_bytes(), training_step=0)
    return layout.run_dir


def fleet_file(root: Path, port: int, host: str = "127.0.0.1") -> Path:
    """The default fleet description with the bridge on a free port (tests run side by side)."""
    default = Path(get_package_share_directory("lwd_actor")) / "config" / "fleet.yaml"
    cfg = yaml.safe_load(default.read_text())
    cfg["fleet"]["bridge"]["bind"] = f"tcp://{host}:{port}"
    path = root / "fleet.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
