"""Multi-host data parallelism with two jax.distributed CPU processes: each draws its own shard
of the global batch, and only process 0 writes metrics and the exported policy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("multihost")
    here = Path(__file__).parent
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(here / "multihost_run.py"), str(port), str(i), str(work)],
            cwd=here,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    return work, [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def test_each_process_draws_its_own_shard_of_the_global_batch(two_process_run):
    _, results = two_process_run
    assert [r["process"] for r in results] == [0, 1] and all(r["processes"] == 2 for r in results)
    assert not any(r["on_device"] for r in results)  # several processes: host sampling, per-process stream
    assert all(r["local_rows"] == 4 for r in results)  # global batch 8 split over 2 processes
    assert results[0]["batch_digest"] != results[1]["batch_digest"]


def test_both_processes_train_in_lockstep_and_only_process_zero_writes(two_process_run):
    work, results = two_process_run
    assert [r["step"] for r in results] == [5, 5]
    metrics = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [m["step"] for m in metrics]
    assert len(steps) == len(set(steps)) and steps[-1] == 5  # one writer: no step logged twice
    assert (work / "run" / "policy.onnx").is_file()
    assert (work / "run" / "checkpoints" / "5").is_dir()
