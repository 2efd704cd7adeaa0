"""The learner's scalar log: `out_dir`/metrics.jsonl (one JSON line per logged step; read by
`training_plot`, the fleet monitor and the experiments) and the same scalars as TensorBoard event
files in `out_dir` itself, so `tensorboard --logdir <fleet run dir>` shows offline_learner and
online_learner as two runs. Tags are the metrics.jsonl keys (one vocabulary), at the same steps,
with the line's time as wall time; non-numeric values (the phase) stay in metrics.jsonl only."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tensorboardX import SummaryWriter


class MetricsLog:
    """Appends to `out_dir`/metrics.jsonl and to a new event file in `out_dir` (a resumed run adds
    one; TensorBoard reads all of a run directory's files as one run). Both are flushed at every
    line, so a live `tensorboard` (or a reader of metrics.jsonl) sees training as it goes."""

    def __init__(self, out_dir: str | Path) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self._file = (out_dir / "metrics.jsonl").open("a")
        # Event files are named by the second they were opened (and truncate a file of that name):
        # a nanosecond suffix keeps a run that resumes within the same second from erasing one.
        self._events = SummaryWriter(str(out_dir), filename_suffix=f".{time.time_ns()}")

    def write(self, step: int, phase: str, scalars: dict[str, float]) -> None:
        now = time.time()
        self._file.write(json.dumps({"step": step, "phase": phase, "time": now, **scalars}) + "\n")
        self._file.flush()
        for tag, value in scalars.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self._events.add_scalar(tag, value, global_step=step, walltime=now)
        self._events.flush()

    def flush(self) -> None:
        self._file.flush()
        self._events.flush()

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._events.close()
