"""Child processes that cannot outlive their parent.

A supervisor (the fleet launcher, a test) starts nodes in their own process
groups so it can signal each one cleanly. The cost: if the supervisor is killed
hard (SIGKILL, the OOM killer, a CI timeout), nothing stops those groups and they
keep running. `die_with_parent` closes that gap on Linux: the child is started
through a tiny guard that asks the kernel (prctl PR_SET_PDEATHSIG) to send it
SIGTERM when its parent dies, then execs the real command, which keeps that
setting. Our nodes treat SIGTERM as a clean stop.

Why a guard process and not `preexec_fn`: Python code between fork and exec can
deadlock when the parent has threads (JAX, rclpy and ONNX Runtime all start them).
"""

from __future__ import annotations

import os
import signal
import sys

# Runs as `python -I -S -c GUARD <parent pid> <signal> <argv...>`: restore SIGINT's default, set the
# death signal, make sure the parent did not already die (then the kernel would never send it), exec.
_GUARD = (
    "import ctypes, os, signal, sys\n"
    # A launcher started as a background job (`cmd &` in a script) ignores SIGINT, and ignored
    # signals survive exec: the child would then ignore the SIGINT a supervisor stops it with.
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "parent, sig, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, sig, 0, 0, 0)\n"
    "if os.getppid() != parent: sys.exit(128 + sig)\n"
    "os.execvp(argv[0], argv)\n"
)


def die_with_parent(argv: list[str], sig: int = signal.SIGTERM) -> list[str]:
    """`argv` wrapped so that the process receives `sig` when the thread that starts it exits.

    Start it from a long-lived thread (the kernel fires on the *forking thread's* exit). Returns
    `argv` unchanged where prctl does not exist (non-Linux).
    """
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid()), str(int(sig)), *argv]
