"""docs/learner.md's array-API example is learner/examples/train_arrays.py verbatim, and it runs."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "learner" / "examples" / "train_arrays.py"


def test_the_docs_array_example_is_the_example_file_and_it_runs(capsys):
    doc = (ROOT / "docs" / "learner.md").read_text()
    block = re.search(r"<!-- example: learner/examples/train_arrays.py -->\n```python\n(.*?)```", doc, re.S)
    assert block is not None and block.group(1) == EXAMPLE.read_text()
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    error = float(re.search(r"expert's\| = ([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    assert "cameras ()" in out and error < 0.05, out
