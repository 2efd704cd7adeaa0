"""Every core module (the actor's, and all of lwd_common: chunk execution, episodes, transport,
exporters) imports without pulling in rclpy (ROS-free core, thin shell)."""

import pkgutil
import subprocess
import sys

import pytest

import lwd_actor.core
import lwd_common

CORE_MODULES = sorted(
    [f"lwd_actor.core.{m.name}" for m in pkgutil.iter_modules(lwd_actor.core.__path__)]
    + [
        m.name
        for m in pkgutil.walk_packages(lwd_common.__path__, "lwd_common.")
        if not m.name.endswith("__main__")
    ]
)


def test_core_has_the_expected_modules():
    assert {"lwd_common.execution.scheduler", "lwd_actor.core.safety", "lwd_actor.core.actor"} <= set(
        CORE_MODULES
    )


@pytest.mark.parametrize("module", [*CORE_MODULES, "lwd_testing.models"])
def test_core_module_does_not_import_rclpy(module):
    code = f"import sys, {module}; sys.exit(1 if 'rclpy' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, f"{module} imports rclpy"
