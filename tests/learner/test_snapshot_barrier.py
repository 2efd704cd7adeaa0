"""The online learner's hosts agree on one snapshot version per poll (two jax.distributed CPU
processes), each keeping its own shard of the new episodes."""

from __future__ import annotations

from pathlib import Path

import pytest
from two_processes import run_two_processes


def two_hosts(work: Path, mode: str) -> list[list[dict]]:
    return [r["rounds"] for r in run_two_processes("snapshot_barrier_run.py", str(work), mode, timeout_s=300)]


@pytest.fixture(scope="module")
def agreed(tmp_path_factory):
    return two_hosts(tmp_path_factory.mktemp("agree"), "agree")


def test_both_hosts_read_the_same_snapshot_version_at_every_poll(agreed):
    host0, host1 = agreed
    assert [r["version"] for r in host0] == [r["version"] for r in host1] == [1, 2, 3]


def test_each_host_keeps_a_disjoint_shard_and_together_they_hold_every_episode(agreed):
    host0, host1 = agreed
    for r0, r1 in zip(host0, host1, strict=True):
        assert not set(r0["ids"]) & set(r1["ids"])
    ids = [i for r in host0 + host1 for i in r["ids"]]
    assert len(ids) == len(set(ids)) == 8  # versions 1-3: 4 + 2 + 2 episodes, each read by one host


def test_without_the_agreement_a_slower_host_reads_a_newer_snapshot(tmp_path):
    host0, host1 = two_hosts(tmp_path, "own")  # the check above would fail for this reader
    assert [r["version"] for r in host0] != [r["version"] for r in host1]
