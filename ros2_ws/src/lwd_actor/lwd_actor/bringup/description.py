"""Expand a fleet description (YAML) into the processes that make up the fleet.

ROS-free on purpose: the launch file, the venv launcher and the tests all call
`expand_fleet` and so agree on node names, namespaces and parameters.

Fleet YAML (see config/fleet.yaml):

    fleet:
      mode: sim                # sim: sim_robot + sim_operator per robot; real: actor only
      num_robots: 2            # robots robot0..robot{n-1}, or an explicit list:
      robots:                  #   - {id: left_cell, params: {actor: {...}, sim_robot: {...}}}
      use_sim_time: false
      run_dir: runs/fleet      # logs, spools, bridge store, policies
      robot, tasks, image_size, seed, bootstrap: {...}   # the run's settings (settings.py)
      actor_params: {...}      # parameters for every actor (the params file's /** section)
      sim_robot_params: {...}
      sim_operator_params: {...}
      bridge: {enabled: true, bind: "tcp://127.0.0.1:5555"}
      learner: {enabled: true, preset: fleet, publish_every: 50, args: [...]}   # args: extra `lwd_learner.cli online` flags, e.g.
                                               # [--qam.reference, bc_ema]; they follow run_args, the
                                               # run directory's (--out, --init, ...) that the
                                               # bring-up fills in; shutdown_grace_s (default 60):
                                               # how long it may take to checkpoint on Ctrl-C
      dashboard: {enabled: true, bind: "127.0.0.1:8765", args: []}   # the operators' page (docs/dashboard.md)
      data_plane: local        # or s3-queue: an S3 server, a NATS queue and the coordinator join the
      s3_queue: {...}          # fleet on this machine (lwd_actor/bringup/data_plane.py)
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lwd_actor.bringup.data_plane import NATS_READY, S3_READY, S3Queue, data_plane_of
from lwd_actor.bringup.settings import FleetConfigError, run_settings
from lwd_actor.dashboard import DEFAULT_BIND as DASHBOARD_BIND
from lwd_common.transport.curve import is_loopback

LEARNER_SHUTDOWN_GRACE_S = 60.0
S3_SERVER_SHUTDOWN_GRACE_S = 30.0  # SeaweedFS takes ~17 s to stop cleanly (its gRPC servers' graceful stop)
_ROBOT_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the fleet. `ros` processes are rclpy nodes started with --ros-args."""

    name: str  # unique in the fleet, also the log file name
    package: str
    executable: str  # console_scripts name inside a ROS distro
    module: str  # `python -m module` inside the venv
    namespace: str = ""
    node_name: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()
    ros: bool = True
    restart: bool = True  # the supervisor restarts it when it dies unexpectedly
    # A log line containing this means the process is up but useless (e.g. an actor that failed to
    # configure stays alive, unconfigured): the venv supervisor stops the fleet and reports the line.
    fatal_log_marker: str = ""
    # How long a clean stop may take after SIGINT before SIGKILL (None: the supervisor's default).
    # The learner's is longer: it finishes its step and writes a checkpoint, which under load can
    # take more than the seconds a node needs.
    shutdown_grace_s: float | None = None
    # Environment variables set for this process on top of the launcher's (e.g. the S3 endpoint and
    # credentials of the s3-queue data plane).
    env: dict[str, str] = field(default_factory=dict)
    # Processes start by stage, lower first, and stop in the reverse order: the data plane's servers
    # (stage 0) are up before the processes that use them and stopped after them. A stage starts once
    # every process of the earlier ones that has a `ready_log_marker` logged it (the venv supervisor
    # waits for it; it fails the fleet if one exits first or takes too long).
    stage: int = 1
    ready_log_marker: str = ""

    @property
    def fully_qualified_name(self) -> str:
        return f"{self.namespace.rstrip('/')}/{self.node_name}" if self.ros else self.name


@dataclass(frozen=True)
class FleetDescription:
    mode: str
    robot_ids: tuple[str, ...]
    run_dir: Path
    use_sim_time: bool
    bridge_endpoint: str | None
    processes: tuple[ProcessSpec, ...]
    curve_keys_dir: Path | None = None  # where the fleet's CURVE keys live, when the bridge link uses CURVE
    data_plane: S3Queue | None = None  # the s3-queue data plane's servers and store; None: local
    bridge_root: Path | None = None  # the bridge's --root (default <run_dir>/bridge)

    @property
    def episode_store(self) -> str:
        """Where the fleet's episodes are committed: the bridge's directory store, or the S3 bucket."""
        if self.data_plane is not None:
            return self.data_plane.store_url
        return str((self.bridge_root or self.run_dir / "bridge") / "store")

    def by_name(self, name: str) -> ProcessSpec:
        for p in self.processes:
            if p.name == name:
                return p
        raise KeyError(name)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _curve_keys_dir(bridge: dict[str, Any], endpoint: str, run_dir: Path) -> Path | None:
    """The CURVE key directory when the robot-bridge link is encrypted, else None.

    `bridge.curve`: "auto" (default: on exactly when the endpoint is reachable from other
    machines, as the bridge itself requires), true or false.
    """
    curve = bridge.get("curve", "auto")
    if curve not in ("auto", True, False):
        raise FleetConfigError(f"bridge.curve must be auto, true or false, got {curve!r}")
    if curve is False or (curve == "auto" and is_loopback(endpoint)):
        return None
    return Path(bridge.get("keys_dir") or run_dir / "keys")


def load_fleet_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise FleetConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("fleet"), dict):
        raise FleetConfigError(f"{path}: expected a top-level 'fleet:' mapping")
    return data["fleet"]


def default_fleet_file() -> Path:
    """config/fleet.yaml of this package (source tree or installed share dir)."""
    here = Path(__file__).resolve().parents[2] / "config" / "fleet.yaml"
    if here.is_file():
        return here
    share = Path(sys.prefix) / "share" / "lwd_actor" / "config" / "fleet.yaml"
    if share.is_file():
        return share
    raise FileNotFoundError("cannot find lwd_actor config/fleet.yaml; pass --fleet")


def add_fleet_file_flags(p: argparse.ArgumentParser) -> None:
    """--fleet and --set, shared by every command that reads a fleet file."""
    p.add_argument(
        "--fleet",
        type=Path,
        default=None,
        help="fleet description YAML (default: lwd_actor's config/fleet.yaml)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a fleet field, e.g. actor_params.jpeg_quality=90",
    )


def parse_set(items: list[str]) -> dict[str, Any]:
    """`a.b=c` -> {"a": {"b": c}} with YAML-typed values."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise FleetConfigError(f"--set expects key.path=value, got {item!r}")
        key, value = item.split("=", 1)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def _robots(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    robots = cfg.get("robots")
    if robots is None:
        n = cfg.get("num_robots", 1)
        if not isinstance(n, int) or n < 1:
            raise FleetConfigError(f"num_robots must be a positive integer, got {n!r}")
        robots = [{"id": f"robot{i}"} for i in range(n)]
    if not isinstance(robots, list) or not robots:
        raise FleetConfigError("robots must be a non-empty list")
    seen = set()
    for r in robots:
        rid = r.get("id") if isinstance(r, dict) else None
        if not isinstance(rid, str) or not _ROBOT_ID.match(rid):
            raise FleetConfigError(f"robot id {rid!r} must match {_ROBOT_ID.pattern}")
        if rid in seen:
            raise FleetConfigError(f"robot id {rid!r} appears twice")
        seen.add(rid)
    return robots


def real_robots(
    cfg: dict[str, Any], robot_id: str = "", remappings: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The robots a real-mode launch brings up: the robot this machine drives, one actor.

    `robot_id` picks it (from the fleet file's `robots` list when there is one, with its params and
    remappings); without one, a fleet file that lists robots keeps its list, and otherwise (the
    default fleet file's `num_robots` sizes the simulated fleet) it is the single robot "robot0".
    `remappings` (topic -> topic) are added to that one robot's."""
    listed = cfg.get("robots")
    if robot_id:
        chosen = [r for r in listed if isinstance(r, dict) and r.get("id") == robot_id] if listed else []
        if listed and not chosen:
            ids = [r.get("id") for r in listed if isinstance(r, dict)]
            raise FleetConfigError(f"robot_id {robot_id!r} is not in the fleet file's robots {ids}")
        robots: list[dict[str, Any]] = [dict(chosen[0]) if chosen else {"id": robot_id}]
    else:
        robots = [dict(r) for r in listed] if listed else [{"id": "robot0"}]
    if remappings:
        if len(robots) != 1:
            raise FleetConfigError("remappings apply to one robot: give robot_id to pick it")
        robots[0]["remappings"] = {**(robots[0].get("remappings") or {}), **remappings}
    return robots


def expand_fleet(cfg: dict[str, Any], overrides: dict[str, Any] | None = None) -> FleetDescription:
    """Turn a fleet mapping (the `fleet:` section) into the processes to start."""
    cfg = deep_merge(cfg, overrides or {})
    mode = cfg.get("mode", "sim")
    if mode not in ("sim", "real"):
        raise FleetConfigError(f"mode must be 'sim' or 'real', got {mode!r}")
    settings = run_settings(cfg)
    run_dir = Path(cfg.get("run_dir", "runs/fleet"))
    use_sim_time = bool(cfg.get("use_sim_time", False))
    bridge = cfg.get("bridge") or {}
    learner = cfg.get("learner") or {}
    bridge_enabled = bool(bridge.get("enabled", True))
    endpoint = bridge.get("endpoint") or bridge.get("bind", "tcp://127.0.0.1:5555")
    bridge_root = Path(bridge.get("root", run_dir / "bridge"))
    keys_dir = _curve_keys_dir(bridge, endpoint, run_dir)
    curve_args: tuple[str, ...] = ()
    if keys_dir is not None:
        curve_args = (
            "--curve-secret-key",
            str(keys_dir / "bridge.key_secret"),
            "--allow-keys",
            str(keys_dir / "allow"),
        )

    common = {"use_sim_time": use_sim_time}
    procs: list[ProcessSpec] = []
    plane = data_plane_of(cfg, run_dir)
    store_args: tuple[str, ...] = ()
    plane_env: dict[str, str] = {}
    if plane is not None:
        store_args = ("--store", plane.store_url, "--queue", plane.queue_url)
        plane_env = plane.client_env()
        procs += _data_plane_processes(plane)
    if bridge_enabled:
        procs.append(
            ProcessSpec(
                name="bridge",
                package="lwd_learner_bridge",
                executable="bridge_server",
                module="lwd_learner_bridge.server",
                args=(
                    "--root",
                    str(bridge_root),
                    "--bind",
                    bridge.get("bind", endpoint),
                    *store_args,
                    *curve_args,
                    *bridge.get("args", []),
                ),
                ros=False,
                env=dict(plane_env),
            )
        )
    if plane is not None:
        procs.append(
            ProcessSpec(
                name="coordinator",
                package="lwd_learner_bridge",
                executable="coordinator",
                module="lwd_learner_bridge.coordinator",
                args=store_args,
                ros=False,
                env=dict(plane_env),
            )
        )
    if learner.get("enabled", False):
        procs.append(
            ProcessSpec(
                name="learner",
                package="lwd_learner",
                executable="lwd-learner",
                module="lwd_learner.cli",
                args=(
                    "online",
                    "--bridge-root",
                    str(bridge_root),
                    *(("--episode-store", plane.store_url) if plane is not None else ()),
                    *learner.get("run_args", []),
                    *learner.get("args", []),
                ),
                ros=False,
                shutdown_grace_s=float(learner.get("shutdown_grace_s", LEARNER_SHUTDOWN_GRACE_S)),
                env=dict(plane_env),
            )
        )
    dashboard = cfg.get("dashboard") or {}
    if dashboard.get("enabled", True):
        procs.append(
            ProcessSpec(
                name="dashboard",
                package="lwd_actor",
                executable="dashboard",
                module="lwd_actor.dashboard",
                args=(
                    "--run-dir",
                    str(run_dir),
                    "--bridge-root",
                    str(bridge_root),
                    *(("--store", plane.store_url) if plane is not None else ()),
                    "--bind",
                    str(dashboard.get("bind", DASHBOARD_BIND)),
                    *dashboard.get("args", []),
                ),
                ros=False,
                env=dict(plane_env),
            )
        )
    if mode == "sim" and cfg.get("sim_clock", use_sim_time):
        procs.append(
            ProcessSpec(
                name="sim_clock",
                package="lwd_sim",
                executable="sim_clock",
                module="lwd_sim.sim_clock",
                node_name="sim_clock",
                parameters=deep_merge(cfg.get("sim_clock_params") or {}, {}),
            )
        )

    for index, robot in enumerate(_robots(cfg)):
        rid = robot["id"]
        ns = f"/{rid}"
        per = robot.get("params") or {}
        # The fleet's robot reaches the actors only when the fleet file names it: a real robot's
        # params file may name its own.
        named_robot = {"robot": settings.robot} if "robot" in cfg else {}
        actor_params = deep_merge(named_robot, cfg.get("actor_params") or {})
        actor_params = deep_merge(actor_params, per.get("actor") or {})
        actor_params.update(common, robot_id=rid)
        actor_params.setdefault("store_dir", str(run_dir / "episodes"))
        actor_params.setdefault("spool_dir", str(run_dir / "spool" / rid))
        if bridge_enabled:
            actor_params.setdefault("sink", "bridge")
            actor_params.setdefault("bridge_endpoint", endpoint)
        if keys_dir is not None and actor_params.get("sink") == "bridge":
            actor_params.setdefault("curve_secret_key_file", str(keys_dir / f"{rid}.key_secret"))
            actor_params.setdefault("bridge_public_key_file", str(keys_dir / "bridge.key"))
        procs.append(
            ProcessSpec(
                name=f"{rid}.actor",
                package="lwd_actor",
                executable="actor_node",
                module="lwd_actor.actor_node",
                namespace=ns,
                node_name="actor",
                fatal_log_marker="configure failed:",
                parameters=actor_params,
                remappings=tuple((k, v) for k, v in (robot.get("remappings") or {}).items()),
            )
        )
        if mode == "sim":
            size, task = settings.image_size, settings.task_of(index)
            sim_params = deep_merge(
                {"task": task, "image_width": size, "image_height": size}, cfg.get("sim_robot_params") or {}
            )
            sim_params = deep_merge(sim_params, per.get("sim_robot") or {})
            sim_params.update(common, robot_id=rid)
            op_params = deep_merge({"task": task}, cfg.get("sim_operator_params") or {})
            op_params = deep_merge(op_params, per.get("sim_operator") or {})
            op_params.update(common, robot_id=rid)
            procs.append(
                ProcessSpec(
                    name=f"{rid}.sim_robot",
                    package="lwd_sim",
                    executable="sim_robot_node",
                    module="lwd_sim.sim_robot_node",
                    namespace=ns,
                    node_name="sim_robot",
                    parameters=sim_params,
                )
            )
            procs.append(
                ProcessSpec(
                    name=f"{rid}.sim_operator",
                    package="lwd_sim",
                    executable="sim_operator_node",
                    module="lwd_sim.sim_operator_node",
                    namespace=ns,
                    node_name="sim_operator",
                    parameters=op_params,
                )
            )
    names = [p.name for p in procs]
    if len(set(names)) != len(names):
        raise FleetConfigError("process names collide")
    return FleetDescription(
        mode=mode,
        robot_ids=tuple(r["id"] for r in _robots(cfg)),
        run_dir=run_dir,
        use_sim_time=use_sim_time,
        bridge_endpoint=endpoint if bridge_enabled else None,
        processes=tuple(procs),
        curve_keys_dir=keys_dir,
        data_plane=plane,
        bridge_root=bridge_root,
    )


def _data_plane_processes(plane: S3Queue) -> list[ProcessSpec]:
    """The s3-queue data plane's servers (stage 0: up before the bridge, coordinator and learner)."""
    return [
        ProcessSpec(
            name="s3",
            package="lwd_actor",
            executable="data_plane",
            module="lwd_actor.bringup.data_plane",
            args=plane.s3_server_args(),
            ros=False,
            env=plane.client_env(),  # its access key and secret are the server's only identity
            stage=0,
            ready_log_marker=S3_READY,
            shutdown_grace_s=S3_SERVER_SHUTDOWN_GRACE_S,
        ),
        ProcessSpec(
            name="nats",
            package="lwd_actor",
            executable="data_plane",
            module="lwd_actor.bringup.data_plane",
            args=plane.nats_server_args(),
            ros=False,
            stage=0,
            ready_log_marker=NATS_READY,
        ),
    ]


def ros_params_file_content(spec: ProcessSpec) -> dict[str, Any]:
    """The params-file mapping for one node: {"/ns/node": {"ros__parameters": {...}}}."""
    return {spec.fully_qualified_name: {"ros__parameters": spec.parameters}}


def command_line(spec: ProcessSpec, python: str, params_file: str | None) -> list[str]:
    """argv that starts `spec` from a venv (python -m module [args] --ros-args ...)."""
    argv = [python, "-m", spec.module, *spec.args]
    if spec.ros:
        argv += ["--ros-args", "-r", f"__node:={spec.node_name}"]
        if spec.namespace:
            argv += ["-r", f"__ns:={spec.namespace}"]
        for src, dst in spec.remappings:
            argv += ["-r", f"{src}:={dst}"]
        if params_file:
            argv += ["--params-file", params_file]
    return argv
