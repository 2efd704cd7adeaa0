import signal
import sys
from pathlib import Path

import pytest

# Make tests/rosutil.py importable as `rosutil` from every test folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _stop_on_sigterm(signum, frame):
    """`timeout` and CI runners stop pytest with SIGTERM: unwind like Ctrl-C so every test's cleanup runs."""
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _stop_on_sigterm)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server (SeaweedFS) for the session; this process's AWS_* environment points at it."""
    from lwd_testing.s3_server import seaweedfs

    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
