"""The actor's parameters are declared once (node_params.PARAMETERS); docs/actor.md's table and
lwd_actor's config/actor.yaml are generated from it, and this fails when either drifts."""

from __future__ import annotations

import yaml

from lwd_actor import params_doc

ROOT = params_doc.repo_root()
FIX = "regenerate with `python -m lwd_actor.params_doc --write`"


def test_actor_yaml_is_the_declared_defaults():
    params = params_doc.declared()
    text = params_doc.yaml_path(ROOT).read_text()
    loaded = yaml.safe_load(text)["/**"]["ros__parameters"]
    want = {name: default for name, (default, _) in params.items()}
    wrong = sorted(
        n
        for n in want.keys() | loaded.keys()
        if loaded.get(n, ...) != want.get(n, ...) or type(loaded.get(n)) is not type(want.get(n))
    )
    assert not wrong, f"config/actor.yaml disagrees with node_params.PARAMETERS on {wrong}; {FIX}"
    assert text == params_doc.defaults_yaml(params), (
        f"config/actor.yaml's descriptions or layout differ; {FIX}"
    )


def test_docs_table_is_the_declaration():
    params = params_doc.declared()
    table = params_doc.docs_table(params_doc.docs_path(ROOT).read_text())
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()[2:]}
    want = {
        line.split(" | ")[0].lstrip("| "): line for line in params_doc.markdown_table(params).splitlines()[2:]
    }
    wrong = sorted(n for n in want.keys() | rows.keys() if rows.get(n) != want.get(n))
    assert not wrong, (
        f"docs/actor.md's parameter table disagrees with node_params.PARAMETERS on {wrong}; {FIX}"
    )
    assert list(rows) == list(want), f"docs/actor.md's parameter table is out of declaration order; {FIX}"


def test_generated_files_round_trip_every_default_and_type():
    params = {
        "a_str": ("", "empty string"),
        "b_bool": (False, "a | pipe"),
        "c_float": (30.0, "x"),
        "d_int": (0, "y"),
        "e_url": ("tcp://127.0.0.1:5555", "z"),
    }
    loaded = yaml.safe_load(params_doc.defaults_yaml(params))["/**"]["ros__parameters"]
    assert loaded == {k: v for k, (v, _) in params.items()}
    assert all(type(loaded[k]) is type(v) for k, (v, _) in params.items())
    doc = (
        "# T\n\n## Parameters\n\n| name | default | meaning |\n|---|---|---|\n| old | 1 | gone |\n\nAfter.\n"
    )
    new = params_doc.with_table(doc, params_doc.markdown_table(params))
    assert new.endswith("\nAfter.\n") and "| old |" not in new and "a \\| pipe" in new
    assert params_doc.docs_table(new) == params_doc.markdown_table(params)


def test_check_command_reports_a_drifted_file(tmp_path, capsys):
    for path in (params_doc.docs_path(tmp_path), params_doc.yaml_path(tmp_path)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            (params_doc.docs_path if path.suffix == ".md" else params_doc.yaml_path)(ROOT).read_text()
        )
    assert params_doc.main(["--check", "--root", str(tmp_path)]) == 0
    yaml_file = params_doc.yaml_path(tmp_path)
    yaml_file.write_text(yaml_file.read_text().replace("jpeg_quality: 80", "jpeg_quality: 90"))
    assert params_doc.main(["--check", "--root", str(tmp_path)]) == 1
    assert "actor.yaml" in capsys.readouterr().err
