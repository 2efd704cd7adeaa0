"""The Docker images cannot be built here (no Docker engine), so their recipes are checked statically
against the tree: base image and interpreter, pins, the distro's numpy, the GPU variant's CUDA
libraries, contents and the start command. What only a build can show is checked inside the image
by docker/robot_image_check.py (each variant's last build step); what stays unverified is listed
in the README's Docker section."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "ros2_ws" / "src"
DOCKER = REPO / "docker"
ROBOT = (DOCKER / "robot.Dockerfile").read_text()
LEARNER = (DOCKER / "learner.Dockerfile").read_text()
ROBOT_CONSTRAINTS_FILE = DOCKER / "robot-constraints.txt"
VENV = "/opt/lwd_venv"
VENV_CONSTRAINTS = f"{VENV}/robot-constraints.txt"

# What the official image of each ROS 2 distro runs (REP 2000): its Ubuntu, that Ubuntu's CPython
# and the python3-numpy from its archive, which the distro's message typesupport is compiled against.
ROS_DISTROS = {"kilted": {"ubuntu": "noble", "python": "3.12", "numpy": "1.26.4"}}
# The third-party modules lwd's code imports, and how the robot image provides each: from the
# distro (apt; the launch process, the distro's /usr/bin/python3, can import only these) ...
APT = {"numpy": "python3-numpy", "yaml": "python3-yaml", "zmq": "python3-zmq", "msgpack": "python3-msgpack"}
# ... or pip into the venv (per variant where it differs)
PIP = {
    "cv2": ("opencv-python-headless",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "mujoco": ("mujoco",),
    "tqdm": ("tqdm",),
}
# ... or not at all: tools a robot does not run (the actor and its launch must not import these).
NOT_ON_ROBOT = {
    "pyarrow": "LeRobot export (python -m lwd_common.export)",
    "mcap": "MCAP export",
    "mcap_ros2": "MCAP export",
    "matplotlib": "the fleet monitor's plots",
}
# Python packages that come with the distro's ROS packages (rclpy's and launch's own dependencies).
ROS_PYTHON = {"launch", "launch_ros", "composition_interfaces", "osrf_pycommon", "lark", "packaging",
              "typing_extensions", "cython_runtime"}  # fmt: skip
# Pinned older for the robot than in constraints.txt: the dev venv's versions require numpy>=2.
NUMPY1_PINS = {"numpy", "opencv-python-headless", "ml-dtypes"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def joined_lines(dockerfile: str) -> list[str]:
    """Dockerfile instructions with `\\` continuations joined, comments dropped."""
    lines = re.sub(r"\\\n", " ", dockerfile).splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def stages(dockerfile: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (the image it is FROM, its instructions); an unnamed stage is named by its index."""
    out: dict[str, tuple[str, list[str]]] = {}
    current: list[str] = []
    for line in joined_lines(dockerfile):
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, flags=re.I)
        if m:
            current = []
            out[m.group(2) or str(len(out))] = (m.group(1), current)
        elif out:
            current.append(line)
    return out


def stage_text(dockerfile: str, name: str) -> str:
    return "\n".join(stages(dockerfile)[name][1])


class PipInstall:
    """One `pip install` command: its requirement names, its -c files, its other options."""

    VALUED = {"-c", "--constraint", "-r", "--requirement", "-i", "--index-url", "--extra-index-url",
              "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--platform",
              "--python-version", "--abi", "--implementation", "--only-binary", "--no-binary"}  # fmt: skip

    def __init__(self, pip: str, args: list[str], sim: bool):
        self.pip, self.sim = pip, sim
        self.names: list[str] = []
        self.constraints: list[str] = []
        self.options: list[str] = []
        it = iter(args)
        for word in it:
            if word in self.VALUED:
                value = next(it, "")
                if word in ("-c", "--constraint"):
                    self.constraints.append(value)
                self.options.append(word)
            elif word.startswith("-"):
                self.options.append(word.split("=")[0])
            elif not word.startswith((".", "/")):  # not our own source trees
                self.names.append(norm(re.split(r"[\[=<>~!;]", word)[0]))


def pip_installs(text: str) -> list[PipInstall]:
    """Every `pip install` in these instructions; `sim` when it runs only with LWD_MODE=sim."""
    out = []
    for line in joined_lines(text):
        sim = False
        for command in re.split(r"&&|\|\||;|\bthen\b|\|", line.removeprefix("RUN ")):
            if '"$LWD_MODE" = sim' in command:
                sim = True
            words = [w.strip("\"'") for w in command.split()]
            if "install" not in words:
                continue
            head = words[: words.index("install")]
            pip = " ".join(head)
            if head and (Path(head[0]).name in ("pip", "pip3") or head[1:] == ["-m", "pip"]):
                out.append(PipInstall(pip, words[words.index("install") + 1 :], sim))
    return out


def apt_packages(text: str) -> set[str]:
    found: set[str] = set()
    for line in joined_lines(text):
        for command in re.split(r"&&|\|\||;|\bthen\b", line):
            words = command.split()
            if "apt-get" in words and "install" in words:
                found |= {w for w in words[words.index("install") + 1 :] if not w.startswith("-")}
    return found


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            out[norm(name)] = version.strip()
    return out


def declared_python(path: Path) -> str:
    m = re.search(r"^# python: (\S+)$", path.read_text(), flags=re.M)
    assert m, f"{path.name} does not say which Python it was resolved for ('# python: X.Y')"
    return m.group(1)


def robot_distro() -> tuple[str, dict[str, str]]:
    image = next(iter(stages(ROBOT).values()))[0]
    m = re.fullmatch(r"ros:(\w+)-ros-base(?:-(\w+))?", image)
    assert m, f"the robot image must start from a ROS distro's image (ros:<distro>-ros-base), not {image}"
    assert m.group(1) in ROS_DISTROS, f"{m.group(1)}: add what its image runs to ROS_DISTROS"
    distro = ROS_DISTROS[m.group(1)]
    assert m.group(2) in (None, distro["ubuntu"]), image
    return m.group(1), distro


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


def cuda_extra() -> list[str]:
    """lwd_actor's `cuda` extra (setup.py): the CUDA/cuDNN wheels onnxruntime-gpu loads."""
    tree = ast.parse((SRC / "lwd_actor" / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "extras_require":
            return list(ast.literal_eval(node.value)["cuda"])
    raise AssertionError("lwd_actor/setup.py has no `cuda` extra")


# --- the base image and its interpreter -------------------------------------------------------------


def test_robot_image_is_built_on_the_ros_distro_and_the_rest_on_it():
    distro, _ = robot_distro()
    named = stages(ROBOT)
    first = next(iter(named))
    for name, (image, _) in list(named.items())[1:]:
        assert image == first, f"stage {name} is FROM {image}, not the distro stage {first}"
    ros = {p for p in apt_packages(ROBOT) if p.startswith("ros-")}
    assert ros and all(p.startswith(f"ros-{distro}-") for p in ros), sorted(ros)
    assert set(re.findall(r"/opt/ros/(\w+)/", ROBOT)) == {distro}


def test_robot_constraints_are_resolved_for_the_python_the_image_runs():
    _, distro = robot_distro()
    assert declared_python(ROBOT_CONSTRAINTS_FILE) == distro["python"], (
        f"robot-constraints.txt was resolved for CPython {declared_python(ROBOT_CONSTRAINTS_FILE)}, "
        f"the image runs the distro's {distro['python']}"
    )
    # constraints.txt is the dev venv's freeze, for the interpreter scripts/setup.sh builds it with.
    dev_python = re.search(
        r'PY="\$\{LWD_PYTHON:-python(\d+\.\d+)\}"', (REPO / "scripts/setup.sh").read_text()
    )
    assert dev_python and dev_python.group(1) != distro["python"]
    assert not re.search(r"^COPY\s+constraints\.txt", ROBOT, flags=re.M), (
        f"the robot image must not install with constraints.txt (CPython {dev_python.group(1)}'s pins)"
    )
    assert f"COPY docker/robot-constraints.txt {VENV_CONSTRAINTS}" in joined_lines(ROBOT)
    used = set(re.findall(r"python(3\.\d+)", ROBOT))
    assert used <= {distro["python"]}, f"paths name CPython {sorted(used)}, the image runs {distro['python']}"


# --- the distro's numpy stays --------------------------------------------------------------------


def test_robot_image_never_pip_installs_or_upgrades_numpy():
    _, distro = robot_distro()
    installs = pip_installs(ROBOT)
    assert installs
    for pip in installs:
        assert "numpy" not in pip.names, f"{pip.pip} install names numpy"
        upgrades = set(pip.options) & {"-U", "--upgrade", "-I", "--ignore-installed", "--force-reinstall"}
        assert not upgrades, f"{pip.pip} install {' '.join(pip.names)} with {sorted(upgrades)}"
        assert pip.pip == f"{VENV}/bin/pip", f"pip outside the venv: {pip.pip} (the distro's python is apt's)"
    assert "python3-numpy" in apt_packages(ROBOT)
    assert "break-system-packages" not in ROBOT.lower()
    assert pins(ROBOT_CONSTRAINTS_FILE)["numpy"] == distro["numpy"], (
        "robot-constraints.txt must pin numpy to the distro's, so that no requirement can replace it"
    )
    # a bare line: the build's guard greps for it (grep -x "numpy==<the base image's numpy>")
    assert f"numpy=={distro['numpy']}" in ROBOT_CONSTRAINTS_FILE.read_text().splitlines()
    assert any(f"-m venv --system-site-packages {VENV}" in line for line in joined_lines(ROBOT))
    # and the build stops if the base image's numpy is not the one pinned
    assert any(
        "import numpy" in line and "numpy==" in line and VENV_CONSTRAINTS in line and "exit 1" in line
        for line in joined_lines(ROBOT)
    )


@pytest.mark.parametrize(
    "name, dockerfile, constraints, used_as",
    [
        ("robot", ROBOT, ROBOT_CONSTRAINTS_FILE, VENV_CONSTRAINTS),
        ("learner", LEARNER, REPO / "constraints.txt", "/tmp/constraints.txt"),
    ],
)
def test_every_pip_install_is_constrained_and_every_package_is_pinned(name, dockerfile, constraints, used_as):
    pinned = pins(constraints)
    installs = pip_installs(dockerfile)
    assert installs, f"{name}: no pip install found"
    for pip in installs:
        if not pip.names:  # installs of our own source trees (./...) with --no-deps
            continue
        assert used_as in pip.constraints, f"{name}: pip install {pip.names} without -c {used_as}"
        missing = [n for n in pip.names if n not in pinned]
        assert not missing, f"{name}: {missing} not pinned in {constraints.name}"


def test_robot_pins_are_the_dev_venvs_except_where_those_need_numpy_2():
    robot, dev = pins(ROBOT_CONSTRAINTS_FILE), pins(REPO / "constraints.txt")
    for name in sorted(robot.keys() & dev.keys()):
        if name in NUMPY1_PINS:
            assert Version(robot[name]) < Version(dev[name]), name
        else:
            assert robot[name] == dev[name], f"{name}: robot {robot[name]}, dev venv {dev[name]}"


def test_the_constraints_checker_resolves_what_the_dockerfile_installs():
    """docker/check_robot_constraints.sh (run by hand: it needs the index) names each variant's pip
    installs; they must be the Dockerfile's."""
    script = (DOCKER / "check_robot_constraints.sh").read_text()
    lists = {k: set(v.split()) for k, v in re.findall(r'^(BASE|SIM|CPU|GPU)="([^"]*)"$', script, flags=re.M)}

    def names(stage: str, sim: bool) -> set[str]:
        return {n for p in pip_installs(stage_text(ROBOT, stage)) if p.sim == sim for n in p.names}

    assert lists["BASE"] == names("base", False)
    assert lists["SIM"] == names("base", True)
    assert lists["CPU"] == names("cpu", False)
    assert lists["GPU"] == names("gpu", False)


# --- the two variants --------------------------------------------------------------------------------


def test_cpu_and_gpu_variants_each_install_one_onnxruntime_and_cpu_is_the_default():
    named = stages(ROBOT)
    assert {"base", "cpu", "gpu"} <= named.keys()
    assert list(named)[-1] == "cpu", "the default target (the last stage) should be the CPU variant"
    base = {n for p in pip_installs(stage_text(ROBOT, "base")) for n in p.names}
    cpu = {n for p in pip_installs(stage_text(ROBOT, "cpu")) for n in p.names}
    gpu = {n for p in pip_installs(stage_text(ROBOT, "gpu")) for n in p.names}
    assert not base & {"onnxruntime", "onnxruntime-gpu"}
    assert "onnxruntime" in cpu and not {n for n in cpu if n.startswith(("onnxruntime-", "nvidia-"))}
    assert "onnxruntime-gpu" in gpu and "onnxruntime" not in gpu


def test_gpu_variant_installs_the_cuda_libraries_onnxruntime_gpu_loads_and_tells_the_loader():
    gpu = stage_text(ROBOT, "gpu")
    installed = {n for p in pip_installs(gpu) for n in p.names}
    robot = pins(ROBOT_CONSTRAINTS_FILE)
    for requirement in cuda_extra():
        name = norm(re.split(r"[\[=<>~!;]", requirement)[0])
        assert name in installed, f"the GPU variant lacks {name} (lwd_actor's `cuda` extra)"
        spec = SpecifierSet(requirement[len(re.split(r"[=<>~!]", requirement)[0]) :])
        assert Version(robot[name]) in spec, f"{name}=={robot[name]} is not {requirement}"
    site = f"{VENV}/lib/python{robot_distro()[1]['python']}/site-packages"
    # the wheels' library folders go to the dynamic loader (ld.so.conf + ldconfig, or LD_LIBRARY_PATH)
    registers = any(
        f"{site}/nvidia" in line and "/etc/ld.so.conf.d/" in line and "ldconfig" in line
        for line in joined_lines(gpu)
    ) or re.search(rf"^ENV .*LD_LIBRARY_PATH=\S*{re.escape(site)}/nvidia", gpu, flags=re.M)
    assert registers, "the GPU variant does not tell the dynamic loader where the CUDA wheels' libraries are"
    assert re.search(r"^ENV .*NVIDIA_DRIVER_CAPABILITIES=\S*compute", gpu, flags=re.M)


def test_each_variant_checks_itself_at_build_time():
    assert "COPY docker/robot_image_check.py /opt/lwd_check/robot_image_check.py" in joined_lines(ROBOT)
    for stage, flags in (("cpu", []), ("gpu", ["--cuda"])):
        runs = [
            line
            for line in joined_lines(stage_text(ROBOT, stage))
            if "/opt/lwd_check/robot_image_check.py" in line
        ]
        assert len(runs) == 1, stage
        words = runs[0].split()
        assert words[words.index("/opt/lwd_check/robot_image_check.py") - 1] == f"{VENV}/bin/python3"
        assert f"--constraints {VENV_CONSTRAINTS}" in runs[0] and "--install-base /opt/lwd" in runs[0]
        assert all(f in words for f in flags) and "--require-cuda" not in words  # no GPU at build time


def test_nodes_are_built_to_run_the_venv_and_lwd_msgs_against_the_distro_python():
    build = [line for line in joined_lines(ROBOT) if "colcon" in line and " build " in line]
    assert len(build) == 1
    assert re.search(rf"{VENV}/bin/python3 \S*colcon\S* build", build[0]), build[0]
    assert "-DPython3_EXECUTABLE=/usr/bin/python3" in build[0]
    assert "--install-base /opt/lwd" in build[0]


# --- what the robot's processes import ----------------------------------------------------------------


def import_closure(module: str) -> dict[str, list[str]]:
    """Third-party top-level modules importing `module` loads in the dev venv -> their distributions."""
    code = (
        "import importlib, importlib.metadata as md, json, sys\n"
        "before = set(sys.modules)\n"
        f"importlib.import_module({module!r})\n"
        "dists = md.packages_distributions()\n"
        "names = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps({n: dists.get(n, []) for n in sorted(names) if not n.startswith(('_', 'lwd_'))"
        " and n not in sys.stdlib_module_names}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def third_party(closure: dict[str, list[str]]) -> set[str]:
    """Leave out what comes with the distro's ROS packages."""
    return {
        m
        for m, dists in closure.items()
        if m not in ROS_PYTHON and not any(d.startswith("ros-") for d in dists)
    }


def test_the_launch_process_imports_only_what_the_distro_python_has():
    """`ros2 launch` runs the distro's /usr/bin/python3, which sees apt's packages, not the venv's."""
    if importlib.util.find_spec("launch") is None:
        pytest.skip("the ROS 2 launch stack is not installed in this venv (../shared/vendor)")
    apt = apt_packages(stage_text(ROBOT, "base"))
    used = third_party(import_closure("lwd_actor.bringup.ros_launch"))
    assert not used & NOT_ON_ROBOT.keys(), sorted(used & NOT_ON_ROBOT.keys())
    unknown = used - APT.keys()
    assert not unknown, f"the launch file imports {sorted(unknown)}: not from apt in the robot image"
    assert {APT[m] for m in used} <= apt, sorted({APT[m] for m in used} - apt)


def test_the_actor_imports_only_what_each_variant_holds():
    used = third_party(import_closure("lwd_actor.actor_node"))
    used |= lwd_imports(SRC / "lwd_actor" / "lwd_actor") & (APT.keys() | PIP.keys())  # lazy imports too
    assert not used & NOT_ON_ROBOT.keys(), sorted(used & NOT_ON_ROBOT.keys())
    unknown = used - APT.keys() - PIP.keys()
    assert not unknown, f"the actor imports {sorted(unknown)}, which the robot image does not provide"
    apt = apt_packages(stage_text(ROBOT, "base"))
    base = {n for p in pip_installs(stage_text(ROBOT, "base")) if not p.sim for n in p.names}
    for variant in ("cpu", "gpu"):
        pip = base | {n for p in pip_installs(stage_text(ROBOT, variant)) for n in p.names}
        for module in sorted(used):
            provided = APT[module] in apt if module in APT else bool(set(PIP[module]) & pip)
            assert provided, f"{variant}: nothing installs {module}"


def test_ros_packages_the_robot_code_depends_on_come_from_the_distro():
    """Every ROS package a held package's package.xml names is an apt package of the distro."""
    import xml.etree.ElementTree as ET

    distro, _ = robot_distro()
    apt = apt_packages(stage_text(ROBOT, "base"))
    held = copied_packages(ROBOT) - {"lwd_sim"}
    for package in sorted(held):
        root = ET.parse(SRC / package / "package.xml").getroot()
        for element in root:
            if element.tag not in ("depend", "exec_depend", "buildtool_depend") or not element.text:
                continue
            dep = element.text.strip()
            if dep.startswith(("lwd_", "python3-")) or dep in ("ament_python",):
                continue
            assert f"ros-{distro}-{dep.replace('_', '-')}" in apt, f"{package} needs {dep}: not installed"


# --- contents and the start command ---------------------------------------------------------------------


def test_robot_image_holds_no_learner_and_no_simulator_unless_sim_mode():
    pip_names = {n for p in pip_installs(ROBOT) for n in p.names}
    assert not pip_names & {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint"}
    assert "COPY learner" not in ROBOT and "lwd_learner_bridge" not in ROBOT
    for line in joined_lines(ROBOT):
        if "mujoco" in line or "lwd_sim src/" in line:
            assert '"$LWD_MODE" = sim' in line, line
    assert all(p.sim for p in pip_installs(ROBOT) if "mujoco" in p.names)


def test_robot_image_packages_import_only_packages_it_holds():
    held = copied_packages(ROBOT) - {"lwd_sim"}  # lwd_sim only in sim mode
    for package in held:
        used = {m for m in lwd_imports(SRC / package) if m.startswith("lwd_")} - {"lwd_msgs"}
        assert used <= held, f"{package} imports {sorted(used - held)}, which the robot image lacks"
        forbidden = lwd_imports(SRC / package) & {"jax", "flax", "optax", "mujoco", "lwd_learner"}
        assert not forbidden, f"{package} imports {sorted(forbidden)}"


def readme_real_mode_commands() -> tuple[list[str], list[str]]:
    """The README's real-robot bring-up (`Running it`) and the robot image's (its Docker section)."""
    readme = (REPO / "README.md").read_text()
    docker = readme[readme.index("### Docker") :]
    docker = docker[: docker.index("\n## ")]
    commands = [
        line.split("#")[0].strip()
        for line in readme.splitlines()
        if line.strip().startswith("ros2 launch") and "mode:=real" in line
    ]
    in_docker = [c for c in commands if c in docker]
    assert len(in_docker) == 1, f"the README's Docker section should show one real-mode command: {in_docker}"
    general = [c for c in commands if c not in docker]
    assert len(general) == 1, general
    return shlex.split(general[0]), shlex.split(in_docker[0])


def test_robot_image_starts_the_readmes_real_mode_bring_up():
    general, image = readme_real_mode_commands()
    cmd = re.search(r"^CMD (\[.*\])", re.sub(r"\\\n", " ", ROBOT), flags=re.M).group(1)
    argv = ast.literal_eval(cmd)
    assert argv == image, f"CMD {argv} is not the README's {image}"
    # ... which is the README's real-mode command with the image's params file
    assert [w.split(":=")[0] for w in image] == [w.split(":=")[0] for w in general]
    assert [w for w in image if not w.startswith("params_file:=")] == [
        w for w in general if not w.startswith("params_file:=")
    ]
    assert "params_file:=/etc/lwd/actor.yaml" in image
    assert (SRC / "lwd_actor" / "launch" / "fleet.launch.py").is_file()
    assert "lwd_actor" in copied_packages(ROBOT)
    distro, _ = robot_distro()
    entry = next(line for line in joined_lines(ROBOT) if "> /ros_entrypoint.sh" in line)
    assert f". /opt/ros/{distro}/setup.bash" in entry and ". /opt/lwd/setup.bash" in entry
    assert 'exec "$@"' in entry


def test_learner_image_holds_every_lwd_package_the_learner_imports():
    used = {m for m in lwd_imports(REPO / "learner" / "lwd_learner") if m.startswith("lwd_")} - {
        "lwd_learner"
    }
    assert used <= copied_packages(LEARNER), sorted(used - copied_packages(LEARNER))
    assert "jax[cuda12]" in LEARNER
