"""A child started with die_with_parent stops when its parent is killed hard."""

import os
import signal
import subprocess
import sys
import time

import pytest

from lwd_common.process import die_with_parent

PARENT = """
import subprocess, sys, time
from lwd_common.process import die_with_parent
child = subprocess.Popen(die_with_parent([sys.executable, "-c", "import time; time.sleep(120)"]),
                         start_new_session=True)
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its reaper counts as gone
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux-only")
def test_child_in_its_own_session_is_terminated_when_its_parent_is_sigkilled():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    try:
        assert _alive(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child_pid)
    finally:
        if _alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def test_the_wrapped_command_runs_with_its_arguments_environment_and_exit_code(tmp_path):
    argv = [
        sys.executable,
        "-c",
        "import os, sys; print(os.environ['LWD_X'], sys.argv[1:]); sys.exit(3)",
        "a b",
        "c",
    ]
    out = subprocess.run(
        die_with_parent(argv), env={**os.environ, "LWD_X": "42"}, capture_output=True, text=True
    )
    assert out.returncode == 3 and out.stdout.strip() == "42 ['a b', 'c']"


def test_a_child_answers_sigint_even_when_its_launcher_ignores_it():
    """Started from a background job (SIGINT ignored, and ignored signals survive exec), a supervised
    child must still stop on the SIGINT a supervisor sends it."""
    child = subprocess.Popen(
        die_with_parent([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # what `cmd &` in a script does
    )
    try:
        assert child.stdout.readline().strip() == "up"
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=20) != 0  # KeyboardInterrupt, not ignored
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
