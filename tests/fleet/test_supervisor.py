"""The venv launcher supervises real processes: restarts with a limit, and stops them all."""

import time
from pathlib import Path

from lwd_bringup.description import FleetDescription, ProcessSpec
from lwd_bringup.supervisor import Supervisor, SupervisorConfig
from rosutil import wait_for


def fleet_of(tmp_path: Path, *specs: ProcessSpec) -> FleetDescription:
    return FleetDescription("sim", (), tmp_path, False, None, specs)


CRASHER = ProcessSpec(name="crasher", package="x", executable="x", module="json.tool",
                      args=("/nonexistent/file.json",), ros=False)
SLEEPER = ProcessSpec(name="sleeper", package="x", executable="x", module="timeit",
                      args=("-n", "1000000000", "pass"), ros=False)


def test_crashing_process_is_restarted_then_given_up(tmp_path):
    sup = Supervisor(fleet_of(tmp_path, CRASHER), config=SupervisorConfig(
        max_restarts=2, restart_backoff_s=0.05, max_backoff_s=0.1), log=lambda m: None)
    sup.start()
    r = sup.running["crasher"]
    assert wait_for(lambda: (sup.poll(), r.given_up)[1], timeout=30, interval=0.05)
    assert r.restarts == 2 and len(r.exit_codes) == 3 and all(c != 0 for c in r.exit_codes)
    assert (tmp_path / "logs" / "crasher.log").read_text().count("==== start") == 3


def test_stop_ends_every_process_group(tmp_path):
    sup = Supervisor(fleet_of(tmp_path, SLEEPER), log=lambda m: None)
    sup.start()
    time.sleep(0.5)
    assert sup.alive() == {"sleeper": True}
    sup.stop()
    assert sup.alive() == {"sleeper": False}


def test_run_with_duration_returns_and_cleans_up(tmp_path):
    sup = Supervisor(fleet_of(tmp_path, SLEEPER), log=lambda m: None)
    ticks = []
    sup.run(duration_s=1.5, on_tick=lambda: ticks.append(1), tick_interval_s=0.3)
    assert ticks and sup.alive() == {"sleeper": False}


def test_ros_processes_get_a_params_file_with_their_parameters(tmp_path):
    spec = ProcessSpec(name="r0.actor", package="lwd_actor", executable="actor_node",
                       module="lwd_actor.actor_node", namespace="/r0", node_name="actor",
                       parameters={"robot_id": "r0"})
    sup = Supervisor(fleet_of(tmp_path, spec), log=lambda m: None)
    argv = sup.running["r0.actor"].argv
    params_file = Path(argv[argv.index("--params-file") + 1])
    assert "/r0/actor" in params_file.read_text() and "robot_id: r0" in params_file.read_text()
