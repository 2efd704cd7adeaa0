"""The Docker images cannot be built here (no Docker daemon, no network to the registries), so
their recipes are checked statically against the tree: pins, contents, and the start command."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "ros2_ws" / "src"
ROBOT = (REPO / "docker" / "robot.Dockerfile").read_text()
LEARNER = (REPO / "docker" / "learner.Dockerfile").read_text()


def joined_lines(dockerfile: str) -> list[str]:
    """Dockerfile instructions with `\\` continuations joined."""
    return [line.strip() for line in re.sub(r"\\\n", " ", dockerfile).splitlines() if line.strip()]


def pip_installs(dockerfile: str) -> list[tuple[list[str], bool]]:
    """Each `pip install` in the file: (requirement names, whether it is run with -c constraints)."""
    out = []
    for line in joined_lines(dockerfile):
        for command in re.split(r"&&|;|\bthen\b", line):
            words = [w.strip("\"'") for w in command.replace("RUN ", " ", 1).split()]
            if "install" not in words or not any(w.startswith("pip") for w in words[:1]):
                continue
            args = words[words.index("install") + 1 :]
            constrained = "-c" in args
            names, skip = [], False
            for word in args:
                if skip:
                    skip = False
                    continue
                if word in ("-c", "-r"):
                    skip = True
                    continue
                if word.startswith("-") or word.startswith("."):
                    continue
                names.append(re.split(r"[\[=<>]", word)[0].lower())
            out.append((names, constrained))
    return out


def pinned() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def copied_packages(dockerfile: str) -> set[str]:
    return set(re.findall(r"^COPY ros2_ws/src/(lwd_\w+) src/", dockerfile, flags=re.M)) | set(
        re.findall(r"^COPY ros2_ws/src/(lwd_\w+) ros2_ws/src/", dockerfile, flags=re.M)
    )


def lwd_imports(package_dir: Path) -> set[str]:
    found = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("name, dockerfile", [("robot", ROBOT), ("learner", LEARNER)])
def test_every_pip_install_is_constrained_and_every_package_is_pinned(name, dockerfile):
    pins = pinned()
    installs = pip_installs(dockerfile)
    assert installs, f"{name}: no pip install found"
    for names, constrained in installs:
        if not names:  # installs of our own source trees (./...) with --no-deps
            continue
        assert constrained, f"{name}: pip install {names} without -c constraints.txt"
        missing = [n for n in names if n.replace("_", "-") not in pins]
        assert not missing, f"{name}: {missing} not pinned in constraints.txt"


def test_robot_image_holds_no_learner_and_no_simulator_unless_sim_mode():
    pip_names = {n for names, _ in pip_installs(ROBOT) for n in names}
    assert not pip_names & {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint"}
    assert "COPY learner" not in ROBOT and "lwd_learner_bridge" not in ROBOT
    for line in joined_lines(ROBOT):
        if "mujoco" in line or "lwd_sim src/" in line:
            assert '"$LWD_MODE" = sim' in line, line


def test_robot_image_packages_import_only_packages_it_holds():
    held = copied_packages(ROBOT) - {"lwd_sim"}  # lwd_sim only in sim mode
    for package in held:
        used = {m for m in lwd_imports(SRC / package) if m.startswith("lwd_")} - {"lwd_msgs"}
        assert used <= held, f"{package} imports {sorted(used - held)}, which the robot image lacks"
        forbidden = lwd_imports(SRC / package) & {"jax", "flax", "optax", "mujoco", "lwd_learner"}
        assert not forbidden, f"{package} imports {sorted(forbidden)}"


def test_robot_image_starts_the_actor_bring_up_from_a_launch_file_it_holds():
    cmd = re.search(r"^CMD (\[.*\])", re.sub(r"\\\n", " ", ROBOT), flags=re.M).group(1)
    argv = ast.literal_eval(cmd)
    assert argv[:4] == ["ros2", "launch", "lwd_actor", "fleet.launch.py"]
    assert "mode:=real" in argv and "with_learner:=false" in argv
    assert (SRC / "lwd_actor" / "launch" / "fleet.launch.py").is_file()
    assert {"lwd_actor", "lwd_bringup"} <= copied_packages(ROBOT)


def test_learner_image_holds_every_lwd_package_the_learner_imports():
    used = {m for m in lwd_imports(REPO / "learner" / "lwd_learner") if m.startswith("lwd_")} - {
        "lwd_learner"
    }
    assert used <= copied_packages(LEARNER), sorted(used - copied_packages(LEARNER))
    assert "jax[cuda12]" in LEARNER
