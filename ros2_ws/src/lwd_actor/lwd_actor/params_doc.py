"""The actor's parameters, written once: `node_params.PARAMETERS` is the declaration, and the
parameter table of docs/actor.md and lwd_actor's config/actor.yaml are generated from it, so
the three cannot drift apart (tests/actor/test_params_are_declared_once.py checks them).

    python -m lwd_actor.params_doc            # print the markdown table and the YAML of defaults
    python -m lwd_actor.params_doc --write    # regenerate both files in the repository
    python -m lwd_actor.params_doc --check    # exit 1 naming each file that disagrees
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

# name -> (default, description), the shape of node_params.PARAMETERS.
Params = Mapping[str, tuple[object, str]]

TABLE_HEADING = "## Parameters"
TABLE_HEADER = "| name | default | meaning |\n|---|---|---|"
YAML_HEADER = """\
# Defaults of the onboard actor (lwd_actor.actor_node), generated from its parameter
# declaration (node_params.PARAMETERS) by `python -m lwd_actor.params_doc --write`:
# edit the declaration, not this file. `/**` applies to every robot namespace; give
# per-robot values in your own params file (`/robot1/actor:` blocks) or in the fleet
# description (fleet.yaml `actor_params`).
"""


def declared() -> Params:
    """The actor node's declaration (imports the node module, hence rclpy)."""
    from lwd_actor.node_params import PARAMETERS

    return PARAMETERS


def repo_root() -> Path:
    """The source checkout this module lives in (ros2_ws/src/lwd_actor/lwd_actor/params_doc.py)."""
    return Path(__file__).resolve().parents[4]


def yaml_scalar(value: object) -> str:
    """A default as a YAML scalar that loads back to the same value and type ("" stays a string)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 16)
    return text.split("\n", 1)[0]


def markdown_table(params: Params) -> str:
    """The parameter table of docs/actor.md: one row per parameter, in declaration order."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = [
        f"| {name} | {cell(yaml_scalar(default))} | {cell(description)} |"
        for name, (default, description) in params.items()
    ]
    return "\n".join([TABLE_HEADER, *rows]) + "\n"


def defaults_yaml(params: Params) -> str:
    """config/actor.yaml: every parameter at its default, its description as a comment."""
    values = [f"{name}: {yaml_scalar(default)}" for name, (default, _) in params.items()]
    width = max(len(v) for v in values) + 2
    lines = [
        f"    {v.ljust(width)}# {description}"
        for v, (_, description) in zip(values, params.values(), strict=True)
    ]
    return YAML_HEADER + "/**:\n  ros__parameters:\n" + "\n".join(lines) + "\n"


def docs_path(root: Path) -> Path:
    return root / "docs" / "actor.md"


def yaml_path(root: Path) -> Path:
    return root / "ros2_ws" / "src" / "lwd_actor" / "config" / "actor.yaml"


def _table_span(doc: str) -> tuple[int, int]:
    """Character span of the table under TABLE_HEADING (header row to the last `|` row)."""
    heading = doc.find("\n" + TABLE_HEADING)
    if heading < 0:
        raise ValueError(f"no {TABLE_HEADING!r} heading")
    start = doc.find("\n| name |", heading)
    if start < 0:
        raise ValueError(f"no table under {TABLE_HEADING!r}")
    start += 1
    end = start
    while end < len(doc) and doc.startswith("|", end):
        end = doc.find("\n", end) + 1 or len(doc)
    return start, end


def docs_table(doc: str) -> str:
    """The parameter table as it stands in docs/actor.md's text."""
    start, end = _table_span(doc)
    return doc[start:end]


def with_table(doc: str, table: str) -> str:
    """docs/actor.md's text with its parameter table replaced (the rest untouched)."""
    start, end = _table_span(doc)
    return doc[:start] + table + doc[end:]


def disagreements(params: Params, root: Path) -> list[str]:
    """One line per file that differs from what the declaration generates."""
    problems = []
    doc = docs_path(root).read_text()
    if docs_table(doc) != markdown_table(params):
        problems.append(f"{docs_path(root)}: the parameter table differs from node_params.PARAMETERS")
    if yaml_path(root).read_text() != defaults_yaml(params):
        problems.append(f"{yaml_path(root)}: differs from node_params.PARAMETERS")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m lwd_actor.params_doc",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="regenerate the docs table and config/actor.yaml")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 if either file disagrees with the declaration"
    )
    ap.add_argument("--root", type=Path, default=None, help="repository root (default: this checkout)")
    args = ap.parse_args(argv)
    params = declared()
    root = args.root or repo_root()
    if args.write:
        docs_path(root).write_text(with_table(docs_path(root).read_text(), markdown_table(params)))
        yaml_path(root).write_text(defaults_yaml(params))
        print(f"wrote {docs_path(root)} (parameter table) and {yaml_path(root)}")
        return 0
    if args.check:
        problems = disagreements(params, root)
        for p in problems:
            print(f"{p}; regenerate with `python -m lwd_actor.params_doc --write`", file=sys.stderr)
        return 1 if problems else 0
    print(markdown_table(params))
    print(defaults_yaml(params), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
