"""The fleet's s3-queue data plane: the description adds an S3 server, a NATS queue and the coordinator
and points the bridge, the learner and the monitor at the bucket; the supervisor starts the servers
before the processes that use them and stops them after. The end-to-end test runs the real servers
(SeaweedFS, nats-server), the bridge and the coordinator as the fleet starts them."""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from lwd_actor.bringup import venv_launch
from lwd_actor.bringup.data_plane import GRPC_OFFSET, NATS_READY, S3_READY, check_ports, port_in_use
from lwd_actor.bringup.description import (
    FleetConfigError,
    FleetDescription,
    ProcessSpec,
    default_fleet_file,
    expand_fleet,
    load_fleet_yaml,
)
from lwd_actor.bringup.monitor import FleetMonitor
from lwd_actor.bringup.supervisor import Supervisor, SupervisorConfig
from lwd_common.episode import (
    ActionSource,
    Episode,
    EpisodeMeta,
    EpisodeOutcome,
    Label,
    StepRecord,
    content_hash,
)
from lwd_common.store import EpisodeStore
from lwd_description.robot import CAMERA_NAMES, NUM_JOINTS
from rosutil import wait_for

S3_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")


def default_cfg() -> dict:
    return load_fleet_yaml(default_fleet_file())


def s3_queue(run_dir: Path, **extra) -> FleetDescription:
    return expand_fleet(default_cfg(), {"data_plane": "s3-queue", "run_dir": str(run_dir), **extra})


def test_the_default_fleet_keeps_the_local_data_plane_and_its_processes(tmp_path):
    fleet = expand_fleet(default_cfg(), {"run_dir": str(tmp_path)})
    assert fleet.data_plane is None
    names = [p.name for p in fleet.processes]
    assert not {"s3", "nats", "coordinator"} & set(names)
    bridge = fleet.by_name("bridge")
    assert "--store" not in bridge.args and "--queue" not in bridge.args
    assert "--episode-store" not in fleet.by_name("learner").args
    assert all(p.env == {} and p.stage == 1 and not p.ready_log_marker for p in fleet.processes)
    assert fleet.episode_store == str(tmp_path / "bridge" / "store")


def test_s3_queue_adds_the_servers_first_and_points_bridge_coordinator_and_learner_at_the_bucket(tmp_path):
    fleet = s3_queue(tmp_path)
    plane = fleet.data_plane
    assert plane is not None
    assert (plane.store_url, plane.queue_url, plane.endpoint) == (
        "s3://lwd/fleet",
        "nats://127.0.0.1:4222",
        "http://127.0.0.1:8333",
    )
    names = [p.name for p in fleet.processes]
    assert names[:5] == ["s3", "nats", "bridge", "coordinator", "learner"]
    s3, nats = fleet.by_name("s3"), fleet.by_name("nats")
    assert (s3.stage, s3.ready_log_marker, nats.stage, nats.ready_log_marker) == (0, S3_READY, 0, NATS_READY)
    assert s3.module == nats.module == "lwd_actor.bringup.data_plane" and not s3.ros
    assert s3.args[:3] == ("s3", "--dir", str(tmp_path / "data_plane" / "s3"))
    assert nats.args == ("nats", "--dir", str(tmp_path / "data_plane" / "nats"), "--port", "4222")
    # The clients reach the server through the standard S3 variables; the server takes the same key
    # as its only identity.
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:8333",
        "AWS_ACCESS_KEY_ID": "lwd-fleet",
        "AWS_SECRET_ACCESS_KEY": "lwd-fleet-secret",
        "AWS_REGION": "us-east-1",
    }
    for name in ("s3", "bridge", "coordinator", "learner"):
        assert fleet.by_name(name).env == env, name
    assert nats.env == {}
    assert all(p.env == {} and p.stage == 1 for p in fleet.processes if p.ros)  # robots: unchanged
    bridge = fleet.by_name("bridge").args
    assert bridge[bridge.index("--store") + 1] == "s3://lwd/fleet"
    assert bridge[bridge.index("--queue") + 1] == "nats://127.0.0.1:4222"
    assert fleet.by_name("coordinator").args == (
        "--store",
        "s3://lwd/fleet",
        "--queue",
        "nats://127.0.0.1:4222",
    )
    learner = fleet.by_name("learner").args
    assert learner[learner.index("--episode-store") + 1] == "s3://lwd/fleet"
    assert fleet.episode_store == "s3://lwd/fleet"


def test_ports_bucket_and_credentials_come_from_the_fleet_file(tmp_path):
    fleet = s3_queue(
        tmp_path,
        s3_queue={
            "s3_port": 18333,
            "nats_port": 14222,
            "bucket": "robots",
            "prefix": "site/a",
            "secret_key": "x",
        },
    )
    assert fleet.data_plane is not None and fleet.episode_store == "s3://robots/site/a"
    assert fleet.by_name("learner").env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:18333"
    assert fleet.by_name("coordinator").env["AWS_SECRET_ACCESS_KEY"] == "x"
    assert fleet.by_name("coordinator").args[3] == "nats://127.0.0.1:14222"
    ports = [p for p, _ in fleet.data_plane.ports()]
    assert 18333 in ports and 18333 + GRPC_OFFSET in ports and 14222 in ports


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"data_plane": "s3"}, "data_plane must be one of"),
        ({"data_plane": "s3-queue", "s3_queue": {"port": 1}}, "unknown key"),
        ({"data_plane": "s3-queue", "s3_queue": {"nats_port": 8333}}, "both use port 8333"),
        ({"data_plane": "s3-queue", "s3_queue": {"s3_port": 9333}}, "both use port 9333"),
        ({"data_plane": "s3-queue", "s3_queue": {"s3_port": 60000}}, "s3_queue.s3_port must be a port"),
        ({"data_plane": "s3-queue", "s3_queue": {"bucket": "Bad_Bucket"}}, "s3_queue.bucket"),
        ({"data_plane": "s3-queue", "s3_queue": {"weed_ports": {"gateway": 1}}}, "weed_ports"),
    ],
)
def test_a_bad_data_plane_is_refused_naming_the_field(overrides, match):
    with pytest.raises(FleetConfigError, match=match):
        expand_fleet(default_cfg(), overrides)


def test_a_port_in_use_is_refused_in_one_line_naming_the_field_that_moves_it(tmp_path, capsys):
    port, s3, master, volume, filer = free_ports(5)  # in the range the fleet accepts (an OS port may not be)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert port_in_use(port)
        with pytest.raises(FleetConfigError, match=f"port {port} .* --set s3_queue.nats_port=PORT"):
            check_ports([(port, "s3_queue.nats_port")])
        argv = ["--run-dir", str(tmp_path), "--no-learner", "--data-plane", "s3-queue"]
        argv += ["--set", "actor_params.policy_path=/nonexistent.onnx", "--set", f"s3_queue.nats_port={port}"]
        argv += ["--set", f"s3_queue.s3_port={s3}"]
        argv += ["--set", f"s3_queue.weed_ports={{master: {master}, volume: {volume}, filer: {filer}}}"]
        assert venv_launch.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fleet: port {port} on 127.0.0.1 is in use") and "\n" not in err


FAKE_SERVER = """
import signal, sys, time
name, ready_after = sys.argv[1], float(sys.argv[2])
def stop(*_):
    print(f"{name} SIGINT {time.time()!r}", flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
print(f"{name} started {time.time()!r}", flush=True)
if ready_after < 0:
    sys.exit(3)
time.sleep(ready_after)
print(f"{name} READY {time.time()!r}", flush=True)
while True:
    time.sleep(0.05)
"""


def fake(tmp_path: Path, name: str, ready_after: float, stage: int) -> ProcessSpec:
    (tmp_path / "fakeserver.py").write_text(FAKE_SERVER)
    return ProcessSpec(
        name=name,
        package="x",
        executable="x",
        module="fakeserver",
        args=(name, str(ready_after)),
        ros=False,
        env={"PYTHONPATH": str(tmp_path)},  # the per-process environment reaches it
        stage=stage,
        ready_log_marker=f"{name} READY" if stage == 0 else "",
    )


def logged_time(sup: Supervisor, name: str, event: str) -> float:
    for line in (sup.log_dir / f"{name}.log").read_text().splitlines():
        if line.startswith(f"{name} {event} "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} never logged {event}")


def test_servers_are_ready_before_their_clients_start_and_stop_after_them(tmp_path):
    fleet = FleetDescription(
        "sim", (), tmp_path, False, None, (fake(tmp_path, "client", 0, 1), fake(tmp_path, "server", 1.0, 0))
    )
    sup = Supervisor(fleet, log=lambda _: None)
    between: list[dict[str, bool]] = []  # the main job's last report runs here: clients done, servers up
    assert sup.run(duration_s=1.0, before_servers_stop=lambda: between.append(sup.alive())) is None
    assert between == [{"client": False, "server": True}]
    assert logged_time(sup, "client", "started") >= logged_time(sup, "server", "READY")
    assert logged_time(sup, "client", "SIGINT") < logged_time(sup, "server", "SIGINT")


def test_a_server_that_exits_before_it_is_ready_fails_the_fleet_without_starting_its_clients(tmp_path):
    fleet = FleetDescription(
        "sim", (), tmp_path, False, None, (fake(tmp_path, "server", -1, 0), fake(tmp_path, "client", 0, 1))
    )
    sup = Supervisor(fleet, config=SupervisorConfig(ready_timeout_s=30), log=lambda _: None)
    failure = sup.run(duration_s=30)
    assert failure is not None and failure.startswith("server exited with 3 before it was ready")
    assert not (sup.log_dir / "client.log").exists()


def free_ports(n: int) -> list[int]:
    """`n` distinct ports p with p and p + 10000 free (SeaweedFS listens on both)."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    ports: list[int] = []
    while len(ports) < n:
        p = rng.randrange(20000, 45000)
        taken = {q + d for q in ports for d in (-GRPC_OFFSET, 0, GRPC_OFFSET)}
        if p not in taken and not port_in_use(p) and not port_in_use(p + GRPC_OFFSET):
            ports.append(p)
    return ports


def episode_steps(n: int = 12) -> tuple[EpisodeMeta, list[StepRecord], EpisodeOutcome]:
    rng = np.random.default_rng(0)
    steps = [
        StepRecord(
            step=i,
            stamp=1000.0 + i / 30.0,
            images={c: b"\xff\xd8" + rng.bytes(300) + b"\xff\xd9" for c in CAMERA_NAMES},
            joint_pos=rng.standard_normal(NUM_JOINTS),
            action=rng.standard_normal(NUM_JOINTS),
            source=ActionSource.TELEOP if i % 5 == 0 else ActionSource.POLICY,
            chunk_id=i // 30,
            policy_version="v000001",
        )
        for i in range(n)
    ]
    meta = EpisodeMeta(
        episode_id="robot0-ep0001",
        robot_id="robot0",
        task="can_to_bin",
        instruction="put the can in the bin",
        started_at=1.7e9,
    )
    return meta, steps, EpisodeOutcome(label=Label.SUCCESS, num_steps=n, ended_at=1.7e9 + 5)


def own_processes(marker: str) -> list[str]:
    """Command lines of live processes that mention `marker` (this test's run directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append(f"{proc.name}: {cmd[:200]}")
    return found


@pytest.mark.slow
def test_the_fleets_data_plane_commits_a_robots_episode_to_s3_through_the_queue(tmp_path, monkeypatch):
    """s3, nats, bridge and coordinator exactly as `./lwd fleet --data-plane s3-queue` starts them (real
    servers on free ports); a robot streams one episode; it is committed in S3 by the coordinator, the
    monitor reads it there, and stopping leaves no process behind."""
    from lwd_common.transport import BridgeClient, ClientConfig

    s3_port, master, volume, filer, nats_port, bridge_port = free_ports(6)
    run_dir = tmp_path / "run"
    fleet = s3_queue(
        run_dir,
        num_robots=1,
        robots=None,
        learner={"enabled": False},
        bridge={"bind": f"tcp://127.0.0.1:{bridge_port}"},
        s3_queue={
            "s3_port": s3_port,
            "weed_ports": {"master": master, "volume": volume, "filer": filer},
            "nats_port": nats_port,
            "bucket": "lwd-e2e",
        },
    )
    plane = fleet.data_plane
    assert plane is not None
    check_ports(plane.ports())
    wanted = ("s3", "nats", "bridge", "coordinator")
    servers = FleetDescription(
        fleet.mode,
        fleet.robot_ids,
        run_dir,
        False,
        fleet.bridge_endpoint,
        tuple(p for p in fleet.processes if p.name in wanted),
        data_plane=plane,
    )
    for k in S3_ENV:  # this process reaches S3 only through what the fleet gives its processes
        monkeypatch.delenv(k, raising=False)
    sup = Supervisor(servers, config=SupervisorConfig(ready_timeout_s=90), log=lambda _: None)
    client = None
    try:
        sup.start()
        assert sup.failure is None, sup.failure
        for k, v in plane.client_env().items():
            monkeypatch.setenv(k, v)
        client = BridgeClient(
            ClientConfig(
                endpoint=f"tcp://127.0.0.1:{bridge_port}",
                robot_id="robot0",
                spool_dir=str(tmp_path / "spool"),
                steps_per_chunk=8,
            )
        )
        meta, steps, outcome = episode_steps()
        client.begin(meta)
        for step in steps:
            client.add_step(step)
        client.end(outcome)
        store = EpisodeStore(plane.store_url)

        def committed() -> bool:
            sup.poll()
            snap = store.latest_snapshot()
            return snap is not None and meta.episode_id in snap.episode_ids

        assert wait_for(committed, 60, interval=0.5), {
            n: (sup.log_dir / f"{n}.log").read_text()[-1500:] for n in wanted
        }
        assert content_hash(store.get(meta.episode_id)) == content_hash(
            Episode.from_steps(meta, steps, outcome)
        )
        assert "snapshot v" in (sup.log_dir / "coordinator.log").read_text()  # the coordinator committed it
        monitor = FleetMonitor(run_dir / "bridge", run_dir / "learner", ("robot0",), fleet.episode_store)
        assert "1 episodes in the learner's store" in monitor.report()
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-fleets")
        with pytest.raises(OSError, match="403"):
            EpisodeStore(plane.store_url).ids()  # the server checks the fleet's credentials
        assert all(sup.alive().values()), sup.alive()
    finally:
        if client is not None:
            client.close()
        sup.stop()
    assert not any(sup.alive().values())
    assert not own_processes(str(run_dir)), own_processes(str(run_dir))  # weed, its wrapper, nats: all gone
    assert not [p for p, _ in plane.ports() if port_in_use(p)]


def test_ros2_launch_starts_the_servers_first_and_the_rest_once_both_printed_their_ready_line(tmp_path):
    pytest.importorskip("launch", reason="the ROS 2 launch stack is not installed in this venv")
    from launch import LaunchContext
    from launch.actions import ExecuteProcess, RegisterEventHandler
    from launch.events.process import ProcessStderr, ProcessStdout
    from launch.utilities import perform_substitutions

    from lwd_actor.bringup import ros_launch

    (tmp_path / "offline_learner").mkdir()
    (tmp_path / "offline_learner" / "policy.onnx").write_bytes(b"")
    context = LaunchContext()
    for name, (default, _) in ros_launch.FLEET_ARGS.items():
        context.launch_configurations[name] = default
    context.launch_configurations.update(
        {"run_dir": str(tmp_path), "num_robots": "1", "with_learner": "true", "data_plane": "s3-queue"}
    )
    actions = ros_launch._fleet_actions(context)

    def name(action) -> str:
        return perform_substitutions(context, action.name)

    servers = {name(a): a for a in actions if isinstance(a, ExecuteProcess)}  # (robots' Nodes: no name)
    assert set(servers) == {"s3", "nats"}  # nothing else starts before they are ready
    handlers = [a.event_handler for a in actions if isinstance(a, RegisterEventHandler)]
    assert len(handlers) == 2

    def output(server: str, kind, text: str):
        event = kind(
            text=text.encode(), action=servers[server], name=server, cmd=[], cwd=None, env=None, pid=1
        )
        for handler in handlers:
            if handler.matches(event):
                return handler.handle(event, context)
        raise AssertionError(f"no handler for {server}")

    assert not output("s3", ProcessStdout, "I1208 weed starting")
    assert not output("nats", ProcessStderr, f"[INF] {NATS_READY}")  # nats logs to stderr
    started = output("s3", ProcessStdout, f"{S3_READY} at http://127.0.0.1:8333, bucket lwd\n")
    procs = {name(a): a for a in started if isinstance(a, ExecuteProcess) and a.name is not None}
    assert set(procs) == {"bridge", "coordinator", "learner", "dashboard"}
    nodes = [a for a in started if isinstance(a, ExecuteProcess) and a.name is None]
    assert len(nodes) == 3  # robot0's actor, simulator and operator
    env = {
        perform_substitutions(context, k): perform_substitutions(context, v)
        for k, v in procs["coordinator"].additional_env
    }
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:8333"
