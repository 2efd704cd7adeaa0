"""Every ROS package's package.xml declares what its Python code imports (so rosdep installs a
working set), our packages depend on each other without a cycle (colcon refuses one), and no
runtime code imports the bring-up or the test fixtures."""

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
    "obstore": "python3-obstore-pip",
    "nats": "python3-nats-py-pip",
    "starlette": "python3-starlette-pip",
    "uvicorn": "python3-uvicorn-pip",
}
NOT_ROS = {"lwd_learner", "jax", "setuptools"}  # pip-only (the learner) or build-time
RUNTIME = {"lwd_actor", "lwd_common", "lwd_description", "lwd_learner_bridge", "lwd_sim"}


BRING_UP = SRC / "lwd_actor" / "lwd_actor" / "bringup"
# The operators' dashboard sits on the bring-up (it reuses its monitor), like the bring-up on top of
# the runtime: runtime code imports neither.
DASHBOARD = SRC / "lwd_actor" / "lwd_actor" / "dashboard"


def module_imports(paths: list[Path]) -> set[str]:
    """Dotted names of every absolute import in `paths`."""
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return found


def imports(package: str) -> set[str]:
    found = {name.split(".")[0] for name in module_imports(list((SRC / package / package).rglob("*.py")))}
    return found - set(sys.stdlib_module_names) - {"__future__", package}


def declared(package: str) -> set[str]:
    root = ET.parse(SRC / package / "package.xml").getroot()
    return {e.text.strip() for e in root if e.tag in ("exec_depend", "depend") and e.text}


@pytest.mark.parametrize("package", PACKAGES)
def test_package_xml_declares_every_import(package):
    needed = {ROSDEP.get(m, m) for m in imports(package) - NOT_ROS}
    missing = sorted(needed - declared(package))
    assert not missing, f"{package}/package.xml lacks exec_depend {missing}"


def our_dependencies(package: str) -> set[str]:
    return declared(package) & set(PACKAGES) | {d for d in build_declared(package) if d in PACKAGES}


def build_declared(package: str) -> set[str]:
    root = ET.parse(SRC / package / "package.xml").getroot()
    tags = ("build_depend", "buildtool_depend", "test_depend", "build_export_depend")
    return {e.text.strip() for e in root if e.tag in tags and e.text}


def test_our_packages_have_no_dependency_cycle():
    graph = {p: our_dependencies(p) for p in PACKAGES}
    done: set[str] = set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, "dependency cycle: " + " -> ".join((*path, package))
        if package not in done:
            for dep in sorted(graph[package]):
                visit(dep, (*path, package))
            done.add(package)

    for package in PACKAGES:
        visit(package, ())


def test_the_simulator_does_not_depend_on_the_actor():
    """The simulator's evaluation shares the actor's chunk execution through lwd_common."""
    assert "lwd_actor" not in declared("lwd_sim") | imports("lwd_sim")


@pytest.mark.parametrize("package", sorted(RUNTIME & set(PACKAGES)))
def test_runtime_code_does_not_import_the_bring_up_or_the_fixtures(package):
    files = [
        p
        for p in (SRC / package / package).rglob("*.py")
        if BRING_UP not in p.parents and DASHBOARD not in p.parents
    ]
    bad = {
        m
        for m in module_imports(files)
        if m.split(".")[0] == "lwd_testing" or m.startswith(("lwd_actor.bringup", "lwd_actor.dashboard"))
    }
    assert not bad, f"{package} imports {sorted(bad)}"
