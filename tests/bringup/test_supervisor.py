"""The venv launcher supervises real processes: restarts with a limit, and stops them all."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lwd_actor.bringup.description import FleetDescription, ProcessSpec
from lwd_actor.bringup.supervisor import Supervisor, SupervisorConfig
from rosutil import wait_for


def fleet_of(tmp_path: Path, *specs: ProcessSpec) -> FleetDescription:
    return FleetDescription("sim", (), tmp_path, False, None, specs)


CRASHER = ProcessSpec(
    name="crasher",
    package="x",
    executable="x",
    module="json.tool",
    args=("/nonexistent/file.json",),
    ros=False,
)
SLEEPER = ProcessSpec(
    name="sleeper", package="x", executable="x", module="timeit", args=("-n", "1000000000", "pass"), ros=False
)


def test_crashing_process_is_restarted_then_given_up(tmp_path):
    sup = Supervisor(
        fleet_of(tmp_path, CRASHER),
        config=SupervisorConfig(max_restarts=2, restart_backoff_s=0.05, max_backoff_s=0.1),
        log=lambda m: None,
    )
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
    spec = ProcessSpec(
        name="r0.actor",
        package="lwd_actor",
        executable="actor_node",
        module="lwd_actor.actor_node",
        namespace="/r0",
        node_name="actor",
        parameters={"robot_id": "r0"},
    )
    sup = Supervisor(fleet_of(tmp_path, spec), log=lambda m: None)
    argv = sup.running["r0.actor"].argv
    params_file = Path(argv[argv.index("--params-file") + 1])
    assert "/r0/actor" in params_file.read_text() and "robot_id: r0" in params_file.read_text()


def test_run_stops_the_fleet_and_reports_a_process_that_keeps_crashing(tmp_path):
    sup = Supervisor(
        fleet_of(tmp_path, CRASHER, SLEEPER),
        config=SupervisorConfig(max_restarts=1, restart_backoff_s=0.05, max_backoff_s=0.1),
        log=lambda m: None,
    )
    failure = sup.run(duration_s=60)
    assert failure is not None and failure.startswith(
        "crasher exited 2 times (last exit code 2): python -m json.tool: error"
    )
    assert "\n" not in failure and "crasher.log" in failure
    assert sup.alive() == {"crasher": False, "sleeper": False}


def test_run_stops_the_fleet_when_a_process_logs_its_fatal_marker(tmp_path):
    unconfigured = ProcessSpec(
        name="r0.actor",
        package="x",
        executable="x",
        module="this",
        ros=False,
        fatal_log_marker="Beautiful is better",
    )  # `python -m this` prints the Zen
    failure = Supervisor(fleet_of(tmp_path, unconfigured, SLEEPER), log=lambda m: None).run(
        duration_s=60, log_scan_interval_s=0.1
    )
    assert failure == "r0.actor: Beautiful is better than ugly."


def test_run_without_failures_returns_none(tmp_path):
    assert Supervisor(fleet_of(tmp_path, SLEEPER), log=lambda m: None).run(duration_s=1.0) is None


SLOW_STOPPER = """
import os, signal, sys, time
stopping = []
signal.signal(signal.SIGINT, lambda *_: stopping.append(time.monotonic()))
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
while not stopping:
    time.sleep(0.02)
time.sleep(float(sys.argv[2]))  # e.g. a learner finishing its step and writing a checkpoint
"""


def slow_stopper(tmp_path: Path, stop_s: float, grace_s: float | None) -> Supervisor:
    (tmp_path / "slow_stopper.py").write_text(SLOW_STOPPER)
    ready = tmp_path / "ready"
    spec = ProcessSpec(
        name="learner",
        package="x",
        executable="x",
        module="slow_stopper",
        args=(str(ready), str(stop_s)),
        ros=False,
        shutdown_grace_s=grace_s,
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    sup = Supervisor(
        fleet_of(tmp_path, spec), config=SupervisorConfig(shutdown_grace_s=0.3), env=env, log=lambda m: None
    )
    sup.start()
    assert wait_for(ready.exists, timeout=30, interval=0.05)
    return sup


def test_a_process_with_its_own_grace_may_take_longer_than_the_default_to_stop(tmp_path):
    sup = slow_stopper(tmp_path, stop_s=1.0, grace_s=30.0)
    sup.stop()
    assert sup.running["learner"].proc.returncode == 0  # stopped by itself, not killed


def test_a_process_that_outlasts_its_grace_is_killed(tmp_path):
    sup = slow_stopper(tmp_path, stop_s=30.0, grace_s=None)  # the default 0.3 s
    sup.stop()
    assert sup.running["learner"].proc.returncode == -9


LAUNCHER = """
import signal
import sys
from pathlib import Path

# An operator's terminal: Ctrl-C neither blocked nor ignored, whatever the test runner's process
# inherited (both survive exec; a launcher started with SIGINT ignored never sees Ctrl-C).
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
signal.signal(signal.SIGINT, signal.default_int_handler)

from lwd_actor.bringup.description import FleetDescription, ProcessSpec
from lwd_actor.bringup.supervisor import Supervisor, SupervisorConfig

tmp = Path(sys.argv[1])
spec = ProcessSpec(
    name="learner", package="x", executable="x", module="slow_stopper",
    args=(str(tmp / "ready"), "60"), ros=False, shutdown_grace_s=60.0,
)
fleet = FleetDescription("sim", (), tmp, False, None, (spec,))
Supervisor(fleet, config=SupervisorConfig(shutdown_grace_s=60.0)).run()
"""


def test_a_second_ctrl_c_during_the_clean_stop_kills_what_is_left_without_a_traceback(tmp_path):
    (tmp_path / "slow_stopper.py").write_text(SLOW_STOPPER)
    (tmp_path / "launcher.py").write_text(LAUNCHER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    launcher = subprocess.Popen(
        [sys.executable, str(tmp_path / "launcher.py"), str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for((tmp_path / "ready").exists, timeout=30, interval=0.05)
        child_pid = int((tmp_path / "ready").read_text())
        launcher.send_signal(signal.SIGINT)  # first: a clean stop, the learner takes its 60 s grace
        time.sleep(1.0)
        assert launcher.poll() is None
        launcher.send_signal(signal.SIGINT)  # second: stop now
        try:
            out, err = launcher.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the launcher ignored both Ctrl-C: {_signal_state(launcher.pid)}") from None
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "stopping now (killing learner)" in out and "all processes stopped" in out
    assert launcher.returncode == 0
    assert wait_for(lambda: not _alive(child_pid), timeout=5, interval=0.05)  # nothing orphaned


def _signal_state(pid: int) -> str:
    """The process's blocked / ignored / caught signal masks (Linux), to say why it did not stop."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError as exc:
        return f"no /proc status ({exc})"
    return " ".join(
        line.replace("\t", "") for line in lines if line.startswith(("SigBlk", "SigIgn", "SigCgt"))
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
