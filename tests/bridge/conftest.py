import sys
from pathlib import Path

import pytest

from rosutil import Procs, ros_processes, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bridgeutil import free_endpoint  # noqa: E402

HERE = Path(__file__).resolve().parent


CAPPED_SERVER = """
import resource, runpy, sys
limit = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.argv[0] = "lwd_learner_bridge.server"
runpy.run_module("lwd_learner_bridge.server", run_name="__main__")
"""


def start_bridge(
    procs: Procs,
    root: Path,
    endpoint: str,
    *extra: str,
    name: str = "bridge",
    mem_limit_mb: int = 0,
    env: dict[str, str] | None = None,
):
    """Start `python -m lwd_learner_bridge.server` and wait until it listens (address space capped if asked;
    `env` added to the processes' environment, e.g. an S3 server's)."""
    args = ("--root", str(root), "--bind", endpoint, *extra)
    env = {**procs.env, **(env or {})}
    if mem_limit_mb:
        proc = procs.python(name, "-c", CAPPED_SERVER, str(mem_limit_mb << 20), *args, env=env)
    else:
        proc = procs.python(name, "-m", "lwd_learner_bridge.server", *args, env=env)
    assert wait_for(lambda: "listening on" in procs.log(name) or proc.poll() is not None, 30), procs.log(name)
    assert proc.poll() is None, procs.log(name)
    return proc


def start_robot(procs: Procs, name: str, endpoint: str, robot_id: str, spool: Path, *extra: str):
    return procs.python(
        name,
        str(HERE / "robot_proc.py"),
        "--endpoint",
        endpoint,
        "--robot-id",
        robot_id,
        "--spool",
        str(spool),
        *extra,
    )


@pytest.fixture
def procs(tmp_path):
    with ros_processes(tmp_path) as p:
        yield p


@pytest.fixture
def endpoint():
    return free_endpoint()


@pytest.fixture
def core(tmp_path):
    """A `BridgeCore` under tmp_path/bridge with `attackutil.PEER` welcomed (test_core.py has its own)."""
    from attackutil import new_core

    c = new_core(tmp_path)
    yield c
    c.close()


@pytest.fixture
def robot0(tmp_path, endpoint):
    """A `BridgeClient` for robot0 at `endpoint`, spooling under tmp_path (closed after the test)."""
    from lwd_common.transport import BridgeClient, ClientConfig

    c = BridgeClient(
        ClientConfig(
            endpoint=endpoint,
            robot_id="robot0",
            spool_dir=str(tmp_path / "spool"),
            steps_per_chunk=8,
            ack_timeout_s=0.5,
        )
    )
    yield c
    c.close()
