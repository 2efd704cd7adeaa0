import signal
import sys
from pathlib import Path

# Make tests/rosutil.py importable as `rosutil` from every test folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _stop_on_sigterm(signum, frame):
    """`timeout` and CI runners stop pytest with SIGTERM: unwind like Ctrl-C so every test's cleanup runs."""
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _stop_on_sigterm)
