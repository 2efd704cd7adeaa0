"""The training plot (lwd_learner.training_plot, the paper's Fig. 8): a real run writes
tau_entropy.png, whose series are exactly the tau_mean / value_entropy lines of its metrics.jsonl;
a run without them (SFT) gets a message, not a traceback."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import reach2d

from lwd_learner.arrays import train_arrays
from lwd_learner.training_plot import FILENAME, main, read_series, write_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train(out, method: str, bc_steps: int, rl_steps: int):
    data = reach2d.dataset(1, 20, good_every=2)
    cfg = reach2d.config(bc_steps, method=method, bc_data="all")
    cfg = dataclasses.replace(
        cfg,
        qam=dataclasses.replace(cfg.qam, flow_steps=3),
        train=dataclasses.replace(cfg.train, rl_steps=rl_steps, log_every=2),
    )
    return train_arrays(
        data["observations"], data["actions"], data["rewards"], data["episode_ends"], out, cfg
    )


@pytest.fixture(scope="module")
def lwd_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lwd")
    _train(out, "lwd", bc_steps=8, rl_steps=6)
    return out


def test_training_writes_the_plot_of_what_metrics_jsonl_holds(lwd_run, tmp_path):
    png = lwd_run / FILENAME
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000  # written by the learner
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[:2] == (520, 640)
    lines = [json.loads(x) for x in (lwd_run / "metrics.jsonl").read_text().splitlines()]
    logged = [x for x in lines if "tau_mean" in x]
    assert [x["step"] for x in logged] == list(range(2, 15, 2))  # BC with the critic, then DIVL + QAM
    path, series = write_plot(lwd_run, tmp_path / "again.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    np.testing.assert_array_equal(series["step"], [x["step"] for x in logged])
    np.testing.assert_array_equal(series["tau_mean"], [x["tau_mean"] for x in logged])
    np.testing.assert_array_equal(series["value_entropy"], [x["value_entropy"] for x in logged])
    assert series["rl"].tolist() == [x["phase"] == "rl" for x in logged] and series["rl"][-1]
    assert np.all((series["value_entropy"] >= 0) & (series["value_entropy"] <= 1))
    for k in series:
        np.testing.assert_array_equal(read_series(lwd_run)[k], series[k])


def test_a_step_logged_again_after_a_resume_keeps_its_later_line(tmp_path):
    rows = [(2, 0.5, 0.9), (4, 0.52, 0.8), (6, 0.1, 0.1), (4, 0.55, 0.7), (6, 0.56, 0.6)]
    with (tmp_path / "metrics.jsonl").open("w") as f:
        for step, tau, h in rows:
            f.write(json.dumps({"step": step, "phase": "bc", "tau_mean": tau, "value_entropy": h}) + "\n")
        f.write('{"step": 8, "tau')  # a line being written
    s = read_series(tmp_path)
    assert s["step"].tolist() == [2, 4, 6] and s["tau_mean"].tolist() == [0.5, 0.55, 0.56]


def test_the_cli_writes_the_plot(lwd_run, tmp_path):
    out = tmp_path / "cli.png"
    proc = subprocess.run(
        [sys.executable, "-m", "lwd_learner.training_plot", str(lwd_run), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and out.read_bytes()[:8] == PNG_MAGIC


def test_a_run_without_tau_metrics_gets_a_message_not_a_traceback(tmp_path, capsys):
    sft = tmp_path / "sft"
    _train(sft, "sft", bc_steps=4, rl_steps=0)
    assert (sft / "metrics.jsonl").exists() and not (sft / FILENAME).exists()
    assert main([str(sft)]) == 2
    err = capsys.readouterr().err
    assert "no tau_mean / value_entropy" in err and "sft" in err and "Traceback" not in err
    assert main([str(tmp_path / "nothing")]) == 2
    assert "metrics.jsonl does not exist" in capsys.readouterr().err
