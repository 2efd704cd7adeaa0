"""Starting the real actor node and its episode CLI from multi-process tests (one place for the argv)."""

from __future__ import annotations

import json
from pathlib import Path

from rosutil import REPO

ACTOR_PARAMS = str(REPO / "ros2_ws/src/lwd_actor/config/actor.yaml")


def start_actor(procs, name: str, ns: str, policy: Path, urdf: Path | None, store_dir: Path, *params: str):
    """`python -m lwd_actor.actor_node` in namespace `ns` with the shipped defaults plus `params` (k:=v);
    `urdf` None: the robot description's URDF."""
    return procs.python(
        name,
        "-m",
        "lwd_actor.actor_node",
        "--ros-args",
        "-r",
        f"__ns:={ns}",
        "--params-file",
        ACTOR_PARAMS,
        "-p",
        f"policy_path:={policy}",
        *(["-p", f"urdf_path:={urdf}"] if urdf is not None else []),
        "-p",
        f"store_dir:={store_dir}",
        *[a for p in params for a in ("-p", p)],
    )


def episode_cli(procs, name: str, ns: str, *args: str, timeout: float = 90) -> dict:
    """Run `lwd_actor.episode_cli` against the actor in `ns`; its last JSON line."""
    proc = procs.python(name, "-m", "lwd_actor.episode_cli", "--ns", ns, *args)
    proc.wait(timeout=timeout)
    lines = procs.log(name).strip().splitlines()
    assert lines, procs.log(name)
    return json.loads(lines[-1])


def probe_lines(path: Path) -> list[dict]:
    """What lwd_testing's probe node wrote (one JSON object per line)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
