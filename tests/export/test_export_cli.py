"""The export CLI: which episodes it picks, and the errors for bad stores and selections (exit 2, no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lwd_common.export.__main__ import main


def run_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("fmt", ["mcap", "lerobot"])
def test_bad_store_paths(fmt, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert "no episode store at" in run_error([fmt, str(missing), str(tmp_path / "o")], capsys)
    assert "the path does not exist" in run_error([fmt, str(missing), str(tmp_path / "o")], capsys)
    assert not missing.exists()  # opening did not create a store
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "it is a file, not a directory" in run_error([fmt, str(a_file), str(tmp_path / "o")], capsys)
    other = tmp_path / "other"
    (other / "logs").mkdir(parents=True)
    err = run_error([fmt, str(other), str(tmp_path / "o")], capsys)
    assert "is not an episode store: it needs episodes/ and snapshots/ folders (found: logs)" in err
    assert not (other / "episodes").exists()


def test_selection(store, tmp_path, capsys):
    st, eps = store
    assert main(["mcap", str(st.root), str(tmp_path / "latest"), "-q"]) == 0
    assert sorted(p.stem for p in (tmp_path / "latest").glob("*.mcap")) == [
        "g1a-ep-a",
        "g1a-ep-b",
        "g1b-ep-c",
    ]
    assert main(["mcap", str(st.root), str(tmp_path / "s1"), "--snapshot", "1", "-q"]) == 0
    assert sorted(p.stem for p in (tmp_path / "s1").glob("*.mcap")) == ["g1a-ep-a", "g1a-ep-b"]
    assert main(["mcap", str(st.root), str(tmp_path / "one"), "--episodes", "g1b-ep-c", "-q"]) == 0
    assert [p.stem for p in (tmp_path / "one").glob("*.mcap")] == ["g1b-ep-c"]
    capsys.readouterr()
    assert "snapshot 9 not in" in run_error(
        ["mcap", str(st.root), str(tmp_path / "x"), "--snapshot", "9"], capsys
    )
    assert "it has 1-2" in run_error(["mcap", str(st.root), str(tmp_path / "x"), "--snapshot", "9"], capsys)
    err = run_error(["mcap", str(st.root), str(tmp_path / "x"), "--episodes", "g1a-ep-zz"], capsys)
    assert "episodes not in" in err and "g1a-ep-zz" in err
    assert "invalid episode id" in run_error(
        ["mcap", str(st.root), str(tmp_path / "x"), "--episodes", "../etc"], capsys
    )


def test_store_without_snapshot(tmp_path, capsys):
    (tmp_path / "s" / "episodes").mkdir(parents=True)
    (tmp_path / "s" / "snapshots").mkdir()
    assert "has no snapshot (nothing committed)" in run_error(
        ["lerobot", str(tmp_path / "s"), str(tmp_path / "o")], capsys
    )


def test_module_entry_points(store, tmp_path):
    """`python -m lwd_common.export` and `python -m lwd_common.export.lerobot_v3 export|import` as processes."""
    st, _ = store
    env_python = sys.executable
    out = subprocess.run(
        [env_python, "-m", "lwd_common.export.lerobot_v3", "export", str(st.root), str(tmp_path / "lr")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert (
        "exported 3 episodes (26 steps)" in out.stdout and "[1/3] g1a-ep-a: 12 steps exported" in out.stderr
    )
    out = subprocess.run(
        [
            env_python,
            "-m",
            "lwd_common.export.lerobot_v3",
            "import",
            str(tmp_path / "lr"),
            str(tmp_path / "back"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "imported 3 episodes" in out.stdout
    out = subprocess.run(
        [env_python, "-m", "lwd_common.export", "mcap", str(tmp_path / "missing"), str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and out.stderr.strip().startswith("error: no episode store at")
    assert Path(tmp_path / "back" / "snapshots").is_dir()


def test_damaged_episode_file_is_named(store, tmp_path, capsys):
    st, _ = store
    st.path_of("g1a-ep-b").write_bytes(b"not msgpack")
    for fmt in ("mcap", "lerobot"):
        err = run_error([fmt, str(st.root), str(tmp_path / fmt), "-q"], capsys)
        assert "episode g1a-ep-b in" in err and "cannot be read" in err
