import os
import sys
from pathlib import Path

import pytest

from rosutil import ros_processes

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHROMIUM = os.environ.get("LWD_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def procs(tmp_path):
    with ros_processes(tmp_path) as p:
        yield p


@pytest.fixture(scope="module")
def browser():
    """The system chromium (Debian's `chromium`, installed by .ci/run) driven by Playwright."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium (or set LWD_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()
