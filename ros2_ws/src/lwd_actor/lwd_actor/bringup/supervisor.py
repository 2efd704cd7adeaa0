"""Start and supervise the processes of a fleet from a plain venv.

What `ros2 launch` does for a distro install, for the pip-installed stack: each
process in its own process group with its own log file and params file,
restarts with backoff when one dies, and a clean shutdown (SIGINT, grace
period, then SIGKILL) on Ctrl-C or SIGTERM. A fleet that cannot work stops
with a one-line reason instead of running on half-broken: a process that keeps
crashing (more than `max_restarts`), one that exits when it should not restart,
or a node that logs its `fatal_log_marker` (an actor that failed to configure).
Processes start by stage (`ProcessSpec.stage`): a later stage starts once every
process of the earlier ones logged its `ready_log_marker` (the s3-queue data
plane's servers before the bridge, coordinator and learner), and stages stop in
reverse order, so a server outlives the processes that flush to it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lwd_actor.bringup.description import FleetDescription, ProcessSpec, command_line, ros_params_file_content
from lwd_common.process import die_with_parent


@dataclass(frozen=True)
class SupervisorConfig:
    max_restarts: int = 5  # per process, before the supervisor gives up on it
    restart_backoff_s: float = 1.0  # doubled after each restart, capped below
    max_backoff_s: float = 30.0
    shutdown_grace_s: float = 10.0
    poll_interval_s: float = 0.2
    ready_timeout_s: float = 120.0  # how long a stage waits for its processes' ready_log_marker


@dataclass
class _Running:
    spec: ProcessSpec
    argv: list[str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    given_up: bool = False
    exit_codes: list[int] = field(default_factory=list)
    log_offset: int = 0  # how far the fatal-marker scan has read this process's log
    start_offset: int = 0  # the log's size when it was last started (the ready marker is looked for after it)


class Supervisor:
    def __init__(
        self,
        fleet: FleetDescription,
        python: str = sys.executable,
        config: SupervisorConfig = SupervisorConfig(),
        env: dict[str, str] | None = None,
        log: Callable[[str], None] = lambda msg: print(f"[fleet] {msg}", flush=True),
    ):
        self.fleet = fleet
        self.config = config
        self.env = dict(env if env is not None else os.environ)
        self.log = log
        self.log_dir = fleet.run_dir / "logs"
        self.params_dir = fleet.run_dir / "params"
        self._stopping = False
        self.failure: str | None = None  # why the fleet cannot run, in one line
        self.running: dict[str, _Running] = {}
        for spec in fleet.processes:
            params_file = None
            if spec.ros:
                self.params_dir.mkdir(parents=True, exist_ok=True)
                params_file = str(self.params_dir / f"{spec.name}.yaml")
                Path(params_file).write_text(yaml.safe_dump(ros_params_file_content(spec), sort_keys=True))
            self.running[spec.name] = _Running(spec, command_line(spec, python, params_file))

    def _start(self, r: _Running) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_dir / f"{r.spec.name}.log", "ab")  # noqa: SIM115 - owned by the child
        log_file.write(f"\n==== start {time.strftime('%H:%M:%S')}: {' '.join(r.argv)}\n".encode())
        log_file.flush()
        r.start_offset = log_file.tell()
        r.proc = subprocess.Popen(
            # die_with_parent: a hard-killed launcher must not leave its fleet running.
            die_with_parent(r.argv),
            env={**self.env, **r.spec.env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()

    def start(self) -> None:
        """Start every process, stage by stage; a stage that does not get ready fails the fleet (the
        later stages are not started)."""
        stages = sorted({r.spec.stage for r in self.running.values()})
        for i, stage in enumerate(stages):
            group = [r for r in self.running.values() if r.spec.stage == stage]
            for r in group:
                self._start(r)
            if i + 1 < len(stages) and not self._wait_ready(group):
                return
        self.log(f"started {len(self.running)} processes; logs in {self.log_dir}")

    def _wait_ready(self, group: list[_Running]) -> bool:
        """Wait until each process of `group` with a ready_log_marker has logged it since its start."""
        waiting = {r.spec.name: r for r in group if r.spec.ready_log_marker}
        if waiting:
            self.log(f"waiting for {', '.join(waiting)} to be ready")
        start = time.monotonic()
        while waiting:
            for name, r in list(waiting.items()):
                if r.spec.ready_log_marker in self._log_since_start(r):
                    self.log(f"{name} is ready ({time.monotonic() - start:.1f} s)")
                    del waiting[name]
                elif r.proc is not None and r.proc.poll() is not None:
                    self._fail(
                        f"{name} exited with {r.proc.returncode} before it was ready: {self._last_log_line(r)} "
                        f"(log: {self.log_dir}/{name}.log)"
                    )
                    return False
            if waiting and time.monotonic() - start > self.config.ready_timeout_s:
                self._fail(
                    f"{', '.join(waiting)} not ready after {self.config.ready_timeout_s:.0f} s "
                    f"(logs in {self.log_dir})"
                )
                return False
            if waiting:
                time.sleep(self.config.poll_interval_s)
        return True

    def _log_since_start(self, r: _Running) -> str:
        try:
            with (self.log_dir / f"{r.spec.name}.log").open("rb") as f:
                f.seek(r.start_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def poll(self) -> None:
        """Restart processes that died, with backoff; give up after max_restarts."""
        now = time.monotonic()
        for r in self.running.values():
            if r.given_up or self._stopping or r.proc is None:
                continue
            code = r.proc.poll()
            if code is None:
                continue
            if r.next_start == 0.0:
                r.exit_codes.append(code)
                if not r.spec.restart or r.restarts >= self.config.max_restarts:
                    r.given_up = True
                    times = f"{len(r.exit_codes)} times" if len(r.exit_codes) > 1 else "once"
                    self._fail(
                        f"{r.spec.name} exited {times} (last exit code {code}): "
                        f"{self._last_log_line(r)} (log: {self.log_dir}/{r.spec.name}.log)"
                    )
                    continue
                delay = min(self.config.restart_backoff_s * 2**r.restarts, self.config.max_backoff_s)
                r.next_start = now + delay
                self.log(f"{r.spec.name} exited with {code}; restarting in {delay:.1f} s")
            elif now >= r.next_start:
                r.restarts += 1
                r.next_start = 0.0
                self._start(r)

    def scan_logs(self) -> None:
        """Fail the fleet when a process logs its fatal marker (read incrementally)."""
        for r in self.running.values():
            if not r.spec.fatal_log_marker or self.failure:
                continue
            path = self.log_dir / f"{r.spec.name}.log"
            try:
                with path.open("rb") as f:
                    f.seek(r.log_offset)
                    chunk = f.read()
            except OSError:
                continue
            complete = chunk[: chunk.rfind(b"\n") + 1]  # leave a half-written line for the next scan
            r.log_offset += len(complete)
            for line in complete.decode(errors="replace").splitlines():
                if r.spec.fatal_log_marker in line:
                    self._fail(f"{r.spec.name}: {line.strip()}")
                    break

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
            self.log(f"fleet failed: {reason}")

    def _last_log_line(self, r: _Running) -> str:
        try:
            lines = (self.log_dir / f"{r.spec.name}.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1].strip() if lines else "empty log"

    def _grace_s(self, r: _Running) -> float:
        g = r.spec.shutdown_grace_s
        return self.config.shutdown_grace_s if g is None else g

    def alive(self) -> dict[str, bool]:
        return {n: r.proc is not None and r.proc.poll() is None for n, r in self.running.items()}

    def stop(self, before_servers_stop: Callable[[], None] | None = None) -> None:
        """SIGINT every process group (stage by stage, the last stage first), wait for each one's grace
        period, SIGKILL what is left. A second
        Ctrl-C (or SIGTERM) while waiting means "stop now": what is left is killed at once, in one
        line instead of a traceback, and nothing is left running.

        `before_servers_stop` runs once the later stages have stopped and before the first one is
        signalled: what the clients flushed is in the servers, and they still answer (the main job's
        last report reads the S3 store there)."""
        self._stopping = True
        running = [(r, r.proc) for r in self.running.values() if r.proc is not None and r.proc.poll() is None]
        try:
            stages = sorted({r.spec.stage for r, _ in running}, reverse=True)
            for i, stage in enumerate(stages):
                if before_servers_stop is not None and i > 0 and i == len(stages) - 1:
                    try:
                        before_servers_stop()
                    except Exception as exc:  # noqa: BLE001 - the servers must stop all the same
                        self.log(f"before stopping the servers: {type(exc).__name__}: {exc}")
                group = [(r, p) for r, p in running if r.spec.stage == stage]
                for _, p in group:
                    _signal_group(p, signal.SIGINT)
                self._wait_out(group)
        except KeyboardInterrupt:
            left = [(r, p) for r, p in running if p.poll() is None]
            self.log(
                f"interrupted again: stopping now (killing {', '.join(r.spec.name for r, _ in left) or 'nothing'})"
            )
            for _, p in left:
                _signal_group(p, signal.SIGKILL)
            for _, p in left:
                _wait_ignoring_interrupts(p, timeout=5)
        self.log("all processes stopped")

    def _wait_out(self, running: list[tuple[_Running, subprocess.Popen]]) -> None:
        """Wait for each process up to its grace period from now; SIGKILL the ones that outlast it."""
        start = time.monotonic()
        for r, p in sorted(running, key=lambda rp: self._grace_s(rp[0])):
            grace = self._grace_s(r)
            try:
                p.wait(timeout=max(0.0, start + grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"{r.spec.name} (pid {p.pid}) ignored SIGINT for {grace:g} s: killing it")
                _signal_group(p, signal.SIGKILL)
                p.wait(timeout=5)

    def run(
        self,
        duration_s: float | None = None,
        on_tick: Callable[[], None] | None = None,
        tick_interval_s: float = 5.0,
        log_scan_interval_s: float = 1.0,
        before_servers_stop: Callable[[], None] | None = None,
    ) -> str | None:
        """Start, supervise until `duration_s` passes, Ctrl-C/SIGTERM or a failure, then stop cleanly
        (`before_servers_stop`: see `stop`).

        Returns None after a normal stop, else the one-line reason the fleet failed.
        """
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            self.start()  # inside the try: a Ctrl-C while a stage gets ready stops what was started
            end = None if duration_s is None else time.monotonic() + duration_s
            next_tick = time.monotonic() + tick_interval_s
            next_scan = time.monotonic() + log_scan_interval_s
            while (end is None or time.monotonic() < end) and self.failure is None:
                self.poll()
                if time.monotonic() >= next_scan:
                    self.scan_logs()
                    next_scan = time.monotonic() + log_scan_interval_s
                if on_tick is not None and time.monotonic() >= next_tick:
                    on_tick()
                    next_tick = time.monotonic() + tick_interval_s
                time.sleep(self.config.poll_interval_s)
        except KeyboardInterrupt:
            self.log("interrupted: shutting down")
        finally:
            self.stop(before_servers_stop)
            signal.signal(signal.SIGTERM, previous)
        return self.failure


def _raise_keyboard_interrupt(*_) -> None:
    """SIGTERM handler: stop the same way as Ctrl-C."""
    raise KeyboardInterrupt


def _wait_ignoring_interrupts(proc: subprocess.Popen, timeout: float) -> None:
    """Reap a SIGKILLed process; more Ctrl-C while it dies changes nothing."""
    end = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < end:
        try:
            proc.wait(timeout=max(0.0, end - time.monotonic()))
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            continue


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
