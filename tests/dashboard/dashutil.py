"""Helpers for the dashboard tests: a run directory as a fleet leaves it (episode store with camera
frames, published policies, the learner's metrics, a bridge's status), and the processes to serve it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np

from lwd_common.episode import (
    ActionSource,
    Episode,
    EpisodeKind,
    EpisodeMeta,
    EpisodeOutcome,
    Label,
    StepRecord,
)
from lwd_common.policy_store import PolicyStore
from lwd_common.preprocessing import encode_jpeg
from lwd_common.store import EpisodeStore
from lwd_description.robot import CAMERA_NAMES, NUM_JOINTS
from rosutil import Procs, wait_for

TASKS = ("can_to_bin", "stack_cubes", "open_drawer")
INSTRUCTIONS = {
    "can_to_bin": "put the red can in the left bin",
    "stack_cubes": "stack the red cube on the blue cube",
    "open_drawer": "open the top drawer",
}


def camera_frame(camera: int, step: int, n: int, teleop: bool, size: int = 96) -> bytes:
    """A small synthetic scene as the camera sees it: table, bin, a cube carried by the gripper."""
    img = np.full((size, size, 3), (46, 52, 64), np.uint8)
    cv2.rectangle(img, (0, size * 2 // 3), (size, size), (120, 96, 70), -1)  # table
    cv2.rectangle(img, (size * 3 // 5, size // 2), (size * 9 // 10, size * 2 // 3), (70, 110, 160), 2)  # bin
    phase = step / max(1, n - 1)
    x = int(size * (0.2 + 0.55 * phase)) + (camera - 1) * 6
    y = int(size * (0.62 - 0.25 * np.sin(np.pi * phase)))
    cv2.rectangle(img, (x - 5, y - 5), (x + 5, y + 5), (200, 40, 40), -1)  # the red cube
    cv2.line(img, (x, 0), (x, y - 6), (210, 210, 210) if not teleop else (255, 165, 0), 3)  # the arm
    cv2.putText(img, CAMERA_NAMES[camera][:5], (3, 10), cv2.FONT_HERSHEY_PLAIN, 0.7, (220, 220, 220), 1)
    return encode_jpeg(img)


def make_steps(n: int, version: str, teleop: tuple[int, int] | None, seed: int) -> list[StepRecord]:
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.5, 1.5, NUM_JOINTS)
    offset = rng.uniform(-1, 1, NUM_JOINTS)
    steps = []
    measured = np.zeros(NUM_JOINTS)
    for i in range(n):
        t = i / 30.0
        command = offset + 0.4 * np.sin(2 * np.pi * freq * t / 2)
        measured = measured + 0.35 * (command - measured) if i else command.copy()
        by_operator = teleop is not None and teleop[0] <= i <= teleop[1]
        steps.append(
            StepRecord(
                step=i,
                stamp=100.0 + t,
                images={c: camera_frame(k, i, n, by_operator) for k, c in enumerate(CAMERA_NAMES)},
                joint_pos=measured.astype(np.float32),
                action=command.astype(np.float32),
                source=ActionSource.TELEOP if by_operator else ActionSource.POLICY,
                chunk_id=i // 10,
                policy_version="teleop" if by_operator else version,
            )
        )
    return steps


def make_episode(
    eid: str,
    robot: str,
    version: str,
    success: bool,
    teleop: tuple[int, int] | None,
    index: int,
    n: int = 45,
    task: str | None = None,
    t0: float = 0.0,
) -> Episode:
    task = task or TASKS[index % len(TASKS)]
    meta = EpisodeMeta(
        eid, robot, task, INSTRUCTIONS.get(task, task), EpisodeKind.ROLLOUT, started_at=t0 + 40 * index
    )
    outcome = EpisodeOutcome(
        Label.SUCCESS if success else Label.FAILURE, n, ended_at=t0 + 40 * index + n / 30
    )
    return Episode.from_steps(meta, make_steps(n, version, teleop, seed=index), outcome)


def build_run(
    run: Path,
    versions: int = 4,
    per_version: int = 8,
    robots: tuple[str, ...] = ("robot0", "robot1", "robot2"),
    extra_robot: str | None = None,
    n_steps: int = 45,
) -> dict:
    """A run directory: `versions` published policies, episodes that got better with each of them
    (fewer takeovers, more successes without the operator), a learner's metrics. Returns what it made."""
    bridge = run / "bridge"
    policies = PolicyStore(bridge / "policies")
    infos = [
        policies.publish(f"onnx policy {v}".encode() * 200, training_step=500 * v)
        for v in range(1, versions + 1)
    ]
    store = EpisodeStore(bridge / "store")
    t0 = time.time() - 40 * (versions * per_version + 2)  # the episodes of the last hour or so
    rng = np.random.default_rng(0)
    ids = []
    index = 0
    for v, info in enumerate(infos):
        skill = (v + 1) / (versions + 1)
        for _ in range(per_version):
            robot = robots[index % len(robots)]
            alone = rng.random() < skill * 0.9
            teleop = None if alone else (int(n_steps * 0.4), int(n_steps * 0.4) + 6 + int(rng.integers(0, 8)))
            success = alone or rng.random() < 0.85
            eid = f"{robot}-ep{index:04d}"
            store.put(make_episode(eid, robot, info.version, success, teleop, index, n=n_steps, t0=t0))
            ids.append(eid)
            index += 1
        store.commit_snapshot()
    if extra_robot is not None:
        eid = f"odd-ep{index:04d}"
        store.put(make_episode(eid, extra_robot, infos[-1].version, True, None, index, n=n_steps, t0=t0))
        store.commit_snapshot()
        ids.append(eid)
    write_metrics(run / "online_learner", steps=4000, t0=t0)
    return {"versions": [i.version for i in infos], "episodes": ids, "robots": robots}


def write_metrics(learner: Path, steps: int, every: int = 50, bc_steps: int = 1500, t0: float = 0.0) -> None:
    learner.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    with (learner / "metrics.jsonl").open("w") as f:
        for step in range(every, steps + 1, every):
            noise = float(rng.normal(0, 0.03))
            row: dict = {"step": step, "phase": "bc" if step <= bc_steps else "rl", "time": t0 + step}
            row["bc_loss"] = 1.2 * np.exp(-step / 900) + 0.08 + noise * 0.2
            if step > bc_steps:
                s = step - bc_steps
                row["critic_loss"] = 0.9 * np.exp(-s / 1200) + 0.15 + noise
                row["value_loss"] = 0.6 * np.exp(-s / 1000) + 0.1 + noise * 0.5
                row["policy_loss"] = 0.5 * np.exp(-s / 1500) + 0.05 + abs(noise)
                row["tau_mean"] = 0.72 + 0.2 * (1 - np.exp(-s / 800)) + noise * 0.1
                row["value_entropy"] = 0.82 * np.exp(-s / 1300) + 0.12 + noise * 0.1
                row["q_mean"] = 0.3 + 0.4 * (1 - np.exp(-s / 900))
            f.write(json.dumps(row) + "\n")


def write_status(bridge: Path, robots: dict[str, dict], latest: str, now: float | None = None) -> None:
    """A status.json as the running bridge writes it (`BridgeCore.status`), for tests without a bridge."""
    now = time.time() if now is None else now
    status = {
        "time": now,
        "started_at": now - 600,
        "health": {"level": "ok", "problems": []},
        "snapshot_version": 4,
        "episodes_in_store": 32,
        "latest_policy": latest,
        "pinned_policy": None,
        "serving_policy": latest,
        "serving_as": latest,
        "pin_epoch": 0,
        "buffered_bytes": 0,
        "partial_episodes": 0,
        "sessions": len(robots),
        "connections": {},
        "counters": {},
        "commit_latency_s": {"p50": 0.41, "p99": 1.3},
        "policy_latency_s": {"p50": 2.2, "p99": 6.5},
        "robots": {
            rid: {
                "last_seen": now - 0.5,
                "episodes_committed": 5,
                "open_episodes": 0,
                "duplicates_dropped": 0,
                "rejected": 0,
                "policy_version": latest,
                "policy_served_as": latest,
                "policy_loaded_at": now - 30,
                "policy_ok": True,
                "last_commit_latency_s": 0.4,
                "retries": 0,
                "spooled_episodes": 0,
                "robot_counters": {},
                **r,
            }
            for rid, r in robots.items()
        },
    }
    (bridge / "status.json").write_text(json.dumps(status))


URL_LINE = re.compile(r"lwd dashboard: (https?://\S+/#token=(\S+))")


def start_dashboard(
    procs: Procs, run: Path, *extra: str, name: str = "dashboard"
) -> tuple[subprocess.Popen, str, str]:
    """`python -m lwd_actor.dashboard --run-dir RUN --bind 127.0.0.1:0 ...` until it prints its URL:
    (process, URL with the token fragment, token)."""
    proc = procs.python(
        name, "-m", "lwd_actor.dashboard", "--run-dir", str(run), "--bind", "127.0.0.1:0", *extra
    )
    assert wait_for(lambda: URL_LINE.search(procs.log(name)) or proc.poll() is not None, 60), procs.log(name)
    assert proc.poll() is None, procs.log(name)
    m = URL_LINE.search(procs.log(name))
    assert m, procs.log(name)
    return proc, m.group(1), m.group(2)


def start_bridge(procs: Procs, root: Path, endpoint: str) -> subprocess.Popen:
    """`python -m lwd_learner_bridge.server` on `root`, waited for until it listens."""
    proc = procs.python("bridge", "-m", "lwd_learner_bridge.server", "--root", str(root), "--bind", endpoint)
    assert wait_for(lambda: "listening on" in procs.log("bridge") or proc.poll() is not None, 60), procs.log(
        "bridge"
    )
    assert proc.poll() is None, procs.log("bridge")
    return proc
