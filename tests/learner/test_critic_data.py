"""What the critic learns from during behaviour cloning: the whole offline buffer, not the BC pool.

With bc_data "demos" the BC pool is all successes; a critic trained on it alone saturates at 1 and
cannot rank anything (docs/results/diagnostics.md). The toy buffer's chunk targets say which data a
critic step saw: every toy episode is one chunk (done at once), so the target is the chunk's return,
~1 for a success and 0 for a failure, and the buffer is about one third successes.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import toytask
from test_online_and_cli import _store, tiny_config

from lwd_learner.config import critic_needs_own_batch
from lwd_learner.train import run_offline


def _bc_targets(tmp_path, replay: str, bc_data: str) -> list[float]:
    cfg = tiny_config()
    cfg = dataclasses.replace(
        cfg,
        train=dataclasses.replace(
            cfg.train, bc_data=bc_data, replay=replay, bc_steps=8, rl_steps=0, log_every=1, batch_size=32
        ),
    )
    _store(tmp_path / "store", toytask.mixed_dataset(0))
    run_offline(tmp_path / "store", tmp_path / "run", cfg, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    return [x["target_mean"] for x in lines if "target_mean" in x]


@pytest.mark.parametrize("replay", ["device", "host"])
def test_the_critic_learns_from_the_whole_buffer_while_bc_clones_demonstrations(tmp_path, replay):
    targets = _bc_targets(tmp_path, replay, "demos")
    assert len(targets) == 8
    mean = sum(targets) / len(targets)
    assert mean < 0.6, f"critic targets {mean:.2f}: it saw the demonstrations (all successes) only"


def test_bc_on_the_whole_buffer_needs_no_second_batch_for_the_critic():
    cfg = tiny_config()
    assert not critic_needs_own_batch(dataclasses.replace(cfg.train, bc_data="all"))
    assert critic_needs_own_batch(dataclasses.replace(cfg.train, bc_data="demos"))
    assert not critic_needs_own_batch(dataclasses.replace(cfg.train, method="sft", bc_data="demos"))
