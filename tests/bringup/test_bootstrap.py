"""The run-directory bootstrap: which learner config it asks for, and what a launch gets from a run dir."""

from __future__ import annotations

import pytest

from lwd_actor.bringup.bootstrap import (
    NotBootstrapped,
    fleet_run_overrides,
    run_dir_layout,
    with_run_dir_defaults,
)
from lwd_actor.bringup.description import FleetConfigError, expand_fleet
from lwd_actor.bringup.settings import BootstrapBudget, RunSettings
from lwd_learner.cli import parse
from lwd_learner.config import PRESETS


def learner_config(settings: RunSettings):
    return parse(["offline", "--store", "S", "--out", "O", *settings.offline_learner_flags()]).args.cfg


def test_default_settings_train_with_the_learners_fleet_preset():
    cfg = learner_config(RunSettings())
    fleet = PRESETS["fleet"][1]
    assert (cfg.train.encoder_steps, cfg.train.bc_steps, cfg.train.rl_steps) == (
        fleet.train.encoder_steps,
        fleet.train.bc_steps,
        fleet.train.rl_steps,
    )
    assert cfg.model.encoder.image_size == (64, 64)


def test_settings_budgets_override_the_preset():
    budget = BootstrapBudget(encoder_steps=7, bc_steps=20, rl_steps=5)
    cfg = learner_config(RunSettings(image_size=32, seed=3, bootstrap=budget))
    assert (cfg.train.encoder_steps, cfg.train.bc_steps, cfg.train.rl_steps, cfg.train.seed) == (7, 20, 5, 3)
    assert cfg.model.encoder.image_size == (32, 32)


def test_a_run_dir_without_a_policy_is_refused_naming_the_bootstrap_command(tmp_path):
    with pytest.raises(NotBootstrapped, match=f"python -m lwd_actor.bringup.bootstrap --run-dir {tmp_path}"):
        fleet_run_overrides(run_dir_layout(tmp_path), learner_enabled=True, settings=RunSettings())


def test_a_bootstrapped_run_dir_gives_actors_the_policy_and_the_learner_its_init(tmp_path):
    layout = run_dir_layout(tmp_path)
    layout.offline_learner.mkdir()
    layout.offline_policy.write_bytes(b"onnx")
    overrides = with_run_dir_defaults({"run_dir": str(tmp_path), "learner": {"enabled": True}}, {})
    assert overrides["actor_params"]["policy_path"] == str(layout.offline_policy)
    args = overrides["learner"]["run_args"]
    assert args[args.index("--init") + 1] == str(layout.offline_learner)


def test_learner_flags_of_the_description_follow_the_run_directorys_instead_of_replacing_them(tmp_path):
    layout = run_dir_layout(tmp_path)
    layout.offline_learner.mkdir()
    layout.offline_policy.write_bytes(b"onnx")
    cfg = {"run_dir": str(tmp_path), "learner": {"enabled": True, "args": ["--qam.reference", "bc_ema"]}}
    fleet = expand_fleet(cfg, with_run_dir_defaults(cfg, {}))
    argv = next(p for p in fleet.processes if p.name == "learner").args
    assert argv[argv.index("--init") + 1] == str(layout.offline_learner)
    assert argv[-2:] == ("--qam.reference", "bc_ema")


def test_an_explicit_policy_without_learner_needs_no_run_dir(tmp_path):
    cfg = {"run_dir": str(tmp_path / "nothing"), "learner": {"enabled": False}}
    overrides = {"actor_params": {"policy_path": "/p.onnx"}}
    assert with_run_dir_defaults(cfg, overrides) == overrides


def test_a_broken_description_is_refused_before_a_missing_bootstrap(tmp_path):
    with pytest.raises(FleetConfigError, match="mode"):
        with_run_dir_defaults({"run_dir": str(tmp_path), "mode": "dream"}, {})


def test_ctrl_c_during_a_bootstrap_step_exits_130_with_one_line_after_the_step_stops(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    stopped = tmp_path / "step_stopped"
    step = (
        "import signal, sys, time, pathlib\n"
        f"signal.signal(signal.SIGINT, lambda *_: (time.sleep(0.5), pathlib.Path({str(stopped)!r}).touch(), sys.exit(1)))\n"
        "print('step', 'running', flush=True)\n"  # not the text of the runner's echo of this script
        "time.sleep(60)\n"
    )
    runner = (
        "import sys\n"
        "from lwd_actor.bringup.bootstrap import run_step\n"
        f"run_step('a step', [sys.executable, '-c', {step!r}])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", runner],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches
    )
    try:
        deadline = time.monotonic() + 30
        while proc.stdout.readline() != "step running\n" and time.monotonic() < deadline:
            pass  # the runner's echo of the step's command, then the step's own line
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    assert stopped.exists()  # the step was waited for: it finished its own shutdown first
    assert "Traceback" not in err and "[lwd] a step: interrupted; run the same command again to resume" in err


def test_the_default_fleets_learner_keeps_its_qam_reference_cloning_the_corrections():
    from lwd_actor.bringup.description import default_fleet_file, load_fleet_yaml

    extra = load_fleet_yaml(default_fleet_file())["learner"]["args"]
    cfg = parse(["online", "--bridge-root", "B", "--out", "O", *extra]).args.cfg
    assert (cfg.qam.reference, cfg.train.bc_data) == ("bc_ema", "hg_dagger")
