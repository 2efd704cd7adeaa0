"""Helpers for multi-process ROS tests: isolated DDS domains and process cleanup.

Every test that starts ROS processes gets its own ROS_DOMAIN_ID and localhost-only
discovery, so parallel runs on one machine never see each other, and every
process it starts is killed (with its process group) when the test ends.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lwd_common.process import die_with_parent

REPO = Path(__file__).resolve().parents[1]
_counter = itertools.count()


def unique_domain_id() -> int:
    """A domain id in 1..200 unlikely to be used by another test run right now."""
    return 1 + (os.getpid() * 31 + next(_counter) * 7) % 200


def ros_env(domain_id: int | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id if domain_id is not None else unique_domain_id()),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Procs:
    """Starts processes in their own process groups and kills them all on exit."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def python(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Run `python *args` (e.g. "-m", "pkg.module") with stdout/stderr in log_dir/name.log."""
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            die_with_parent([sys.executable, *args]),  # even if pytest itself is killed
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait(self, proc: subprocess.Popen, timeout: float) -> int:
        return proc.wait(timeout=timeout)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 10.0) -> None:
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            self.stop(proc)


@contextmanager
def ros_processes(tmp_path: Path, **extra_env: str) -> Iterator[Procs]:
    procs = Procs(ros_env(**extra_env), tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
