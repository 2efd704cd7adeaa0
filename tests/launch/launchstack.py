"""The ROS 2 launch stack, imported in one place: every launch test imports it from here.

Where the stack is missing (a venv without ../shared/vendor beside the checkout), importing
this module skips the importing test file with one line saying why.
"""

import importlib

import pytest

REASON = (
    "the ROS 2 launch stack (launch, launch_ros, launch_pytest) is not installed in this venv; "
    "scripts/setup.sh installs it when ../shared/vendor sits beside the checkout"
)

launch = pytest.importorskip("launch", reason=REASON)
launch_ros = pytest.importorskip("launch_ros", reason=REASON)
launch_pytest = pytest.importorskip("launch_pytest", reason=REASON)

for _submodule in ("launch.actions", "launch.launch_description_sources", "launch_ros.actions"):
    importlib.import_module(_submodule)  # attribute access below needs them loaded

__all__ = ["launch", "launch_pytest", "launch_ros"]
