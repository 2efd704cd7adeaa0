"""The critic's value along one episode, for the dashboard's replay: the learner's own plot, made in a
subprocess on request.

Restoring the learner's JAX checkpoint takes seconds and hundreds of MB, so the dashboard never does
it in its own process (nor imports the learner: lwd_actor runs on robots that do not hold it,
tests/docker). For an episode it runs the learner's command

    python -m lwd_learner.cli value-plot --run LEARNER --store STORE --episodes ID \\
        --out RUN/dashboard/values/ID.step<N>.png

(`lwd_learner.value_plot`: the value distribution per step as a heat map, its mode as a line) and
serves the PNG. The file name carries the newest checkpoint's step: a newer checkpoint plots anew,
an old plot is served as it is. The store may be a directory or S3. The subprocess
runs JAX on the CPU (`JAX_PLATFORMS=cpu`), so it never takes an accelerator's memory from a running
learner. At most one runs at a time; a failure is remembered per checkpoint (not retried in a loop).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from lwd_actor.bringup.monitor import value_plot_command
from lwd_common.process import die_with_parent
from lwd_common.store import check_episode_id

MAX_ERROR = 2000


def checkpoint_step(learner_dir: Path) -> int | None:
    """The newest checkpoint's step in `learner_dir/checkpoints` (None before the first one)."""
    try:
        steps = [int(d.name) for d in (learner_dir / "checkpoints").iterdir() if d.name.isdigit()]
    except OSError:
        return None
    return max(steps) if steps else None


class ValueJobs:
    """Value plots made on request, one at a time, cached as PNG under `cache_dir`.

    Call `get` from one long-lived thread (the event loop's): the subprocess is tied to the thread
    that starts it (`die_with_parent`)."""

    def __init__(self, learner_dir: Path, store_location: str, cache_dir: Path):
        self.learner_dir = learner_dir
        self.store_location = store_location
        self.cache_dir = cache_dir
        self.running: dict[str, tuple[subprocess.Popen, Path, Path]] = {}  # episode -> (proc, out, log)
        self.failed: dict[tuple[str, int], str] = {}

    def plot_path(self, episode_id: str) -> Path | None:
        """The episode's plot for the newest checkpoint, if it was made."""
        step = checkpoint_step(self.learner_dir)
        if step is None:
            return None
        path = self.cache_dir / f"{check_episode_id(episode_id)}.step{step}.png"
        return path if path.exists() else None

    def get(self, episode_id: str) -> dict[str, Any]:
        """{"state": "ready", "checkpoint_step"} | {"state": "computing" | "queued", "checkpoint_step"} |
        {"state": "failed" | "unavailable", "reason"}; starts the plot if nothing else runs."""
        check_episode_id(episode_id)
        self._reap()
        step = checkpoint_step(self.learner_dir)
        if step is None:
            return {
                "state": "unavailable",
                "reason": f"no learner checkpoint yet in {self.learner_dir / 'checkpoints'}",
            }
        out = self.cache_dir / f"{episode_id}.step{step}.png"
        if out.exists():
            if episode_id not in self.running:
                out.with_suffix(".log").unlink(missing_ok=True)  # a run that ended after its plot was read
            return {"state": "ready", "checkpoint_step": step}
        if (episode_id, step) in self.failed:
            return {"state": "failed", "reason": self.failed[(episode_id, step)]}
        if episode_id in self.running:
            return {"state": "computing", "checkpoint_step": step}
        if self.running:
            return {"state": "queued", "checkpoint_step": step}
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        log = out.with_suffix(".log")
        argv = value_plot_command(self.learner_dir, self.store_location, [episode_id], out)
        with log.open("wb") as f:
            proc = subprocess.Popen(
                die_with_parent(argv),
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "JAX_PLATFORMS": "cpu"},
            )
        self.running[episode_id] = (proc, out, log)
        return {"state": "computing", "checkpoint_step": step}

    def _reap(self) -> None:
        for episode_id, (proc, out, log) in list(self.running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del self.running[episode_id]
            if rc != 0 or not out.exists():
                try:
                    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
                except OSError:
                    lines = []
                step = int(out.stem.rsplit(".step", 1)[1])
                self.failed[(episode_id, step)] = (
                    f"the learner's value-plot exited {rc}: " + (lines[-1] if lines else "no output")
                )[:MAX_ERROR]
            log.unlink(missing_ok=True)

    def close(self) -> None:
        for proc, _, _ in self.running.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: the learner's children too
                except ProcessLookupError:
                    pass
                proc.wait()
        self.running.clear()
