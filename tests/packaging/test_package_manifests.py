"""Every ROS package's package.xml declares what its Python code imports (so rosdep installs a
working set), and no runtime package imports the bring-up or the test fixtures."""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "ros2_ws" / "src"
PACKAGES = sorted(p.name for p in SRC.iterdir() if (p / "setup.py").exists())

# import name -> the rosdep key package.xml must name (ROS packages are named as they import)
ROSDEP = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "zmq": "python3-zmq",
    "msgpack": "python3-msgpack",
    "yaml": "python3-yaml",
    "onnx": "python3-onnx",
    "onnxruntime": "python3-onnxruntime-pip",
    "mujoco": "python3-mujoco-pip",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "pyarrow": "python3-pyarrow",
    "mcap": "python3-mcap-pip",
    "mcap_ros2": "python3-mcap-ros2-support-pip",
}
NOT_ROS = {"lwd_learner", "jax", "setuptools"}  # pip-only (the learner) or build-time
RUNTIME = {"lwd_actor", "lwd_common", "lwd_description", "lwd_learner_bridge", "lwd_sim"}


def imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (SRC / package / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", package}


def declared(package: str) -> set[str]:
    root = ET.parse(SRC / package / "package.xml").getroot()
    return {e.text.strip() for e in root if e.tag in ("exec_depend", "depend") and e.text}


@pytest.mark.parametrize("package", PACKAGES)
def test_package_xml_declares_every_import(package):
    needed = {ROSDEP.get(m, m) for m in imports(package) - NOT_ROS}
    missing = sorted(needed - declared(package))
    assert not missing, f"{package}/package.xml lacks exec_depend {missing}"


@pytest.mark.parametrize("package", sorted(RUNTIME & set(PACKAGES)))
def test_runtime_packages_do_not_import_the_bring_up_or_the_fixtures(package):
    assert not imports(package) & {"lwd_bringup", "lwd_testing"}
