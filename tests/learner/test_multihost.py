"""Multi-host data parallelism with two jax.distributed CPU processes: each draws its own shard
of the global batch, and only process 0 writes metrics and the exported policy."""

from __future__ import annotations

import json

import pytest
from two_processes import run_two_processes


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("multihost")
    return work, run_two_processes("multihost_run.py", str(work))


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
