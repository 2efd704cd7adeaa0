"""Child processes that cannot outlive their parent.

A supervisor (the fleet launcher, a test) starts nodes in their own process
groups so it can signal each one cleanly. The cost: if the supervisor is killed
hard (SIGKILL, the OOM killer, a CI timeout), nothing stops those groups and they
keep running. `die_with_parent` closes that gap on Linux by asking the kernel to
send the child SIGTERM when its parent dies; our nodes treat SIGTERM as a clean stop.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen: the child gets `sig` when the thread that started it exits.

    Call it in the parent (it records the parent's pid). None where prctl does not exist (non-Linux).
    Start children from a long-lived thread: the kernel fires on the *forking thread's* exit.
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os.kill(os.getpid(), sig)

    return preexec
