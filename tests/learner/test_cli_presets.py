"""The learner CLI's typed config: presets, precedence, the older flag spellings, --help and clear
errors. All in-process parsing (no training), so it runs in seconds."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from lwd_learner import config as config_module
from lwd_learner.cli import RENAMED_FLAGS, main, parse
from lwd_learner.config import PRESETS, LearnerConfig, from_dict, to_dict

RUN = ["--store", "S", "--out", "O"]


def offline_cfg(*flags: str) -> LearnerConfig:
    return parse(["offline", *RUN, *flags]).args.cfg


def leaf_paths(cfg: object, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        path = f"{prefix}{f.name}"
        out += leaf_paths(v, path + ".") if dataclasses.is_dataclass(v) else [path]
    return out


def test_presets_set_what_they_are_for():
    d = LearnerConfig()
    assert offline_cfg() == d == PRESETS["default"][1]
    cpu = offline_cfg("--preset", "cpu").train
    assert cpu.encoder_steps is not None and cpu.batch_size <= 64  # frozen-encoder path, small batch
    gpu = offline_cfg("--preset", "gpu").train
    assert gpu.batch_size == 256 and gpu.encoder_steps is None  # the paper's batch
    fleet = offline_cfg("--preset", "fleet").train  # lwd_actor.bringup.bootstrap's budgets
    assert (fleet.encoder_steps, fleet.bc_steps, fleet.rl_steps) == (500, 8000, 1000)
    smoke = offline_cfg("--preset", "smoke")
    assert smoke.train.bc_steps + smoke.train.rl_steps <= 50 and smoke.model.policy.hidden == (32,)
    for name, (what, cfg) in PRESETS.items():
        assert what and from_dict(to_dict(cfg)) == cfg, name  # described, and storable in a checkpoint
        assert parse(["offline", *RUN, f"--preset={name}"]).args.preset == name


def test_flags_override_the_preset_and_the_config_file(tmp_path: Path):
    (tmp_path / "c.json").write_text(
        json.dumps({"train": {"bc_steps": 5, "seed": 3}, "model": {"encoder": {"pool": "spatial"}}})
    )
    cfg = offline_cfg(
        "--preset",
        "cpu",
        "--config",
        str(tmp_path / "c.json"),
        "--train.seed",
        "4",
        "--model.encoder.image-size",
        "32",
        "48",
        "--divl.no-adaptive-tau",
    )
    assert cfg.train.encoder_steps == 500 and cfg.train.bc_steps == 5 and cfg.train.seed == 4
    assert cfg.model.encoder.pool == "spatial" and cfg.model.encoder.image_size == (32, 48)
    assert cfg.divl.adaptive_tau is False
    assert offline_cfg("--train.encoder-steps", "None", "--preset", "cpu").train.encoder_steps is None


@pytest.mark.parametrize(
    "old,new",
    [
        (["--bc-steps", "3"], "--train.bc-steps"),
        (["--seed=1"], "--train.seed"),
        (["--constant-tau", "0.4"], "--divl.no-adaptive-tau --divl.constant-tau"),
        (["--image-size", "32", "32"], "--model.encoder.image-size"),
    ],
)
def test_the_older_flag_spellings_are_refused_naming_their_replacement(old: list[str], new: str, capsys):
    """One spelling per setting: the hand-written CLI's flags are gone, and saying which flag
    replaced one is more use than `unrecognized argument`."""
    assert main(["offline", *RUN, *old]) == 2
    err = capsys.readouterr().err
    assert f"{old[0].partition('=')[0]} was renamed: use {new}" in err and len(err.strip().splitlines()) == 1
    assert all(k.startswith("--") for k in RENAMED_FLAGS)


def test_unknown_field_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["offline", *RUN, "--train.no-such-field", "3"])
    assert e.value.code == 2 and "--train.no-such-field" in capsys.readouterr().err


def test_bad_value_is_a_clear_error(capsys):
    for flags, named in (
        (["--train.method", "foo"], "--train.method"),
        (["--train.bc-steps", "x"], "--train.bc-steps"),
        (["--preset", "huge"], "--preset"),
    ):
        with pytest.raises(SystemExit) as e:
            main(["offline", *RUN, *flags])
        err = capsys.readouterr().err
        assert e.value.code == 2 and named in err and flags[1] in err, err


def test_bad_config_file_or_set_item_is_a_clear_error(tmp_path: Path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"train": {"bc_stepz": 5}}))
    assert main(["offline", *RUN, "--config", str(tmp_path / "c.json")]) == 2
    assert "unknown config key 'train.bc_stepz'" in capsys.readouterr().err
    assert main(["offline", *RUN, "--set", "train.bc_steps"]) == 2
    assert "section.field=value" in capsys.readouterr().err


def test_help_lists_every_field_with_its_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # one column of groups (wider terminals get several)
    with pytest.raises(SystemExit) as e:
        main(["offline", "--preset", "gpu", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    blocks: dict[str, str] = {}  # flag -> its help text (up to the next flag)
    flag = None
    for line in out.splitlines():
        text = line.strip("│ ")
        if text.startswith("--"):
            flag = text.split()[0].rstrip(",")
            blocks[flag] = text
        elif flag:
            blocks[flag] += " " + text
    for path in leaf_paths(LearnerConfig()):
        help_text = blocks.get("--" + path.replace("_", "-"), "")
        default = help_text.rpartition("(default: ")[2]
        assert default and len(help_text.split()) > 4, (path, help_text)  # a default and a description
    assert (
        "(default: 256)" in blocks["--train.batch-size"] and "gpu:" in out
    )  # the preset's values, the presets


def test_every_config_field_has_a_docstring():
    """--help prints field docstrings (tyro reads them): a field without one would show no help."""
    tree = ast.parse(Path(config_module.__file__).read_text())
    missing = []
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        body = cls.body
        for i, node in enumerate(body):
            if isinstance(node, ast.AnnAssign):
                nxt = body[i + 1] if i + 1 < len(body) else None
                if not (
                    isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)
                ):
                    missing.append(f"{cls.name}.{node.target.id}")
    assert not missing


def test_a_wall_clock_budget_is_a_run_flag_not_a_config_field():
    """--max-seconds bounds one run (as --max-new-steps), so it is not saved in the config."""
    args = parse(["offline", *RUN, "--max-seconds", "90.5"]).args
    assert args.max_seconds == 90.5 and args.cfg == LearnerConfig()
    assert parse(["offline", *RUN]).args.max_seconds is None
    online = parse(["online", "--bridge-root", "B", "--out", "O", "--max-seconds", "60"]).args
    assert online.max_seconds == 60.0


def test_the_takeover_labelling_is_a_divl_flag_defaulting_to_the_papers():
    assert offline_cfg().divl.takeover == "episode"
    assert offline_cfg("--divl.takeover", "failure").divl.takeover == "failure"
