"""Offline buffer generator with the paper's composition (Table IV), in the lwd episode format.

    python -m lwd_sim.generate_offline --out DIR --episodes N [--tasks a b] [--seed S] [--image-size 64]

Kinds and their target share of the buffer *by duration*:
  demo             52 %  clean scripted expert, marked TELEOP, only successes kept
  rollout success  14 %  "historical policy": expert with noise + failure injection, marked POLICY,
  rollout failure   6 %  with occasional TELEOP corrective segments (interventions)
  play             29 %  exploration: random reaches / grasps / releases, marked TELEOP, labelled failure
Each next episode is of the kind furthest below its share. Episodes go into an
`lwd_common.store.EpisodeStore` under DIR and one snapshot is committed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lwd_common.episode import (
    ActionSource,
    Episode,
    EpisodeKind,
    EpisodeMeta,
    EpisodeOutcome,
    Label,
    StepRecord,
    new_episode_id,
)
from lwd_common.preprocessing import JPEG_QUALITY, encode_jpeg
from lwd_common.store import EpisodeStore
from lwd_description.robot import CAMERA_NAMES, CHUNK_HORIZON, CONTROL_HZ
from lwd_sim.env import LwdSimEnv
from lwd_sim.expert import DEMO, HISTORICAL, ExpertConfig, ScriptedExpert, Waypoint
from lwd_sim.tasks import TASKS

COMPOSITION = {"demo": 0.52, "rollout_success": 0.14, "rollout_failure": 0.06, "play": 0.29}
FAILURE_PRONE = replace(
    HISTORICAL, p_miss=0.35, p_drop=0.25, p_wrong_item=0.2, p_stall=0.08, max_grasp_attempts=1
)
HISTORICAL_VERSION = "historical-v0"
STALL_ABORT_STEPS = 90  # 3 s of a frozen rollout
TELEOP_VERSION = "teleop"


@dataclass(frozen=True)
class GeneratorConfig:
    tasks: tuple[str, ...] = ("can_to_bin", "grocery_pick_place")
    image_size: int = 64
    jpeg_quality: int = JPEG_QUALITY  # what the actor records and the policy sees at deployment
    seed: int = 0
    robot_id: str = "sim0"
    p_correction: float = 0.3  # rollouts that get a TELEOP corrective segment
    settle_steps: int = 6  # steps recorded after success, so the last frames show the result


def pick_kind(durations: dict[str, float]) -> str:
    """The kind furthest below its target share of the total duration so far."""
    total = sum(durations.values())
    if total == 0:
        return "demo"
    norm = sum(COMPOSITION.values())
    deficits = {k: COMPOSITION[k] / norm - durations[k] / total for k in COMPOSITION}
    return max(deficits, key=deficits.get)


class _Recorder:
    def __init__(self, env: LwdSimEnv, quality: int):
        self.env = env
        self.quality = quality
        self.steps: list[StepRecord] = []

    def record(
        self, obs: dict, action: np.ndarray, source: ActionSource, chunk_id: int, version: str
    ) -> None:
        images = {cam: encode_jpeg(obs["images"][k], self.quality) for k, cam in enumerate(CAMERA_NAMES)}
        n = len(self.steps)
        self.steps.append(
            StepRecord(
                n,
                n / CONTROL_HZ,
                images,
                obs["joint_pos"].copy(),
                np.asarray(action, np.float32),
                source,
                chunk_id,
                version,
            )
        )


def _run_expert(
    env: LwdSimEnv,
    obs: dict,
    rec: _Recorder,
    expert: ScriptedExpert,
    source: ActionSource,
    version: str,
    max_steps: int,
    correction: ScriptedExpert | None = None,
    correction_window: tuple[int, int] = (0, 0),
    settle_steps: int = 6,
) -> tuple[dict, dict, str]:
    """Drive the env with `expert` (and `correction` inside the window); returns last obs, info, reason."""
    info = env._info()
    settle = 0
    stalled_steps = 0
    for t in range(max_steps):
        in_corr = correction is not None and correction_window[0] <= t < correction_window[1]
        if correction is not None and t in correction_window:
            (correction if in_corr else expert).reset()
        actor = correction if in_corr else expert
        action = actor.act()
        src = ActionSource.TELEOP if in_corr else source
        ver = TELEOP_VERSION if in_corr else version
        rec.record(obs, action, src, t // CHUNK_HORIZON, ver)
        obs, _, term, trunc, info = env.step(action)
        if info["success"]:
            settle += 1
            if settle > settle_steps:
                return obs, info, "sim_success"
        elif term:
            return obs, info, "sim_failed"
        if trunc:
            return obs, info, "time_limit"
        # A rollout that has given up is stopped by its operator after a while, not left to the time limit.
        stalled_steps = stalled_steps + 1 if actor.stalled else 0
        if stalled_steps > STALL_ABORT_STEPS:
            return obs, info, "stalled"
    return obs, info, "time_limit"


def _play(env: LwdSimEnv, obs: dict, rec: _Recorder, rng: np.random.Generator) -> tuple[dict, dict, str]:
    """Exploration: random reaches, sometimes down to an item with a grasp, then a random release."""
    expert = env.expert(DEMO, rng)
    n_steps = int(rng.integers(90, 240))
    wps: list[Waypoint] = []
    while len(expert.queue) < n_steps:
        side = "left" if rng.random() < 0.5 else "right"
        sign = 1 if side == "left" else -1
        if rng.random() < 0.5 and env.instance.items:
            name = list(env.instance.items)[int(rng.integers(len(env.instance.items)))]
            p = env.sim.body_pos(name) + rng.normal(0, 0.01, 3)
            wps = [
                Waypoint(side, p + [0, 0, 0.1], 0.0, 0.08),
                Waypoint(side, p, 0.0, 0.08, 6),
                Waypoint(side, p, 0.0, 0.0, 6),
            ]
        else:
            p = np.array([rng.uniform(0.3, 0.55), sign * rng.uniform(-0.05, 0.35), rng.uniform(0.8, 1.0)])
            wps = [Waypoint(side, p, float(rng.uniform(-0.5, 0.5)), float(rng.choice([0.0, 0.08])))]
        expert._enqueue(wps)
        expert.last = expert.queue[-1].copy()
    info = env._info()
    for t in range(n_steps):
        action = expert.queue.popleft()
        rec.record(obs, action, ActionSource.TELEOP, t // CHUNK_HORIZON, TELEOP_VERSION)
        obs, _, _, _, info = env.step(action)
    return obs, info, "play_end"


def generate_one(env: LwdSimEnv, kind: str, rng: np.random.Generator, cfg: GeneratorConfig) -> Episode | None:
    """One episode of `kind` (demo | rollout | play); None if a demo attempt failed (not kept)."""
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    rec = _Recorder(env, cfg.jpeg_quality)
    limit = env.instance.time_limit_steps
    if kind == "demo":
        obs, info, reason = _run_expert(
            env,
            obs,
            rec,
            env.expert(DEMO, rng),
            ActionSource.TELEOP,
            TELEOP_VERSION,
            limit,
            settle_steps=cfg.settle_steps,
        )
        if not info["success"]:
            return None
        ep_kind, label = EpisodeKind.DEMO, Label.SUCCESS
    elif kind.startswith("rollout"):
        config: ExpertConfig = FAILURE_PRONE if kind == "rollout_failure" else HISTORICAL
        correction, window = None, (0, 0)
        if rng.random() < cfg.p_correction:
            start = int(rng.integers(20, max(21, limit // 2)))
            correction, window = env.expert(DEMO, rng), (start, start + int(rng.integers(30, 90)))
        obs, info, reason = _run_expert(
            env,
            obs,
            rec,
            env.expert(config, rng),
            ActionSource.POLICY,
            HISTORICAL_VERSION,
            limit,
            correction,
            window,
            cfg.settle_steps,
        )
        ep_kind, label = EpisodeKind.ROLLOUT, Label.SUCCESS if info["success"] else Label.FAILURE
    elif kind == "play":
        obs, info, reason = _play(env, obs, rec, rng)
        ep_kind, label = EpisodeKind.PLAY, Label.FAILURE
    else:
        raise ValueError(f"unknown kind {kind!r}")
    meta = EpisodeMeta(
        new_episode_id(cfg.robot_id),
        cfg.robot_id,
        env.task.name,
        env.instance.instruction,
        ep_kind,
        extra={"generator": "lwd_sim.generate_offline", "image_size": cfg.image_size},
    )
    outcome = EpisodeOutcome(label, len(rec.steps), reason=reason, subtask_score=float(info["score"]))
    return Episode.from_steps(meta, rec.steps, outcome)


def generate(out: Path, episodes: int, cfg: GeneratorConfig, progress: bool = True) -> Iterator[Episode]:
    """Write `episodes` episodes into the store at `out`; yields each as it is stored."""
    unknown = [t for t in cfg.tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known: {sorted(TASKS)}")
    store = EpisodeStore(out)
    rng = np.random.default_rng(cfg.seed)
    envs = {t: LwdSimEnv(t, cfg.image_size, seed=cfg.seed) for t in cfg.tasks}
    durations = dict.fromkeys(COMPOSITION, 0.0)
    try:
        with tqdm(total=episodes, disable=not progress, unit="ep", desc="generating") as bar:
            made = 0
            while made < episodes:
                kind = pick_kind(durations)
                env = envs[cfg.tasks[int(rng.integers(len(cfg.tasks)))]]
                ep = generate_one(env, "rollout_failure" if kind == "rollout_failure" else kind, rng, cfg)
                if ep is None:
                    continue
                bucket = (
                    kind
                    if not kind.startswith("rollout")
                    else ("rollout_success" if ep.success else "rollout_failure")
                )
                durations[bucket] += ep.num_steps
                store.put(ep)
                made += 1
                bar.update(1)
                bar.set_postfix(
                    {k: f"{v / max(sum(durations.values()), 1):.2f}" for k, v in durations.items()}
                )
                yield ep
    finally:
        for env in envs.values():
            env.close()
        store.commit_snapshot()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Generate an offline buffer (Table IV composition) from the simulator."
    )
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--episodes", required=True, type=int)
    p.add_argument("--tasks", nargs="+", default=list(GeneratorConfig.tasks), choices=sorted(TASKS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--robot-id", default="sim0")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error("--episodes must be >= 1")
    cfg = GeneratorConfig(tuple(args.tasks), args.image_size, seed=args.seed, robot_id=args.robot_id)
    t0 = time.perf_counter()
    counts: dict[str, int] = {}
    steps: dict[str, int] = {}
    for ep in generate(args.out, args.episodes, cfg, progress=not args.no_progress):
        key = f"{ep.meta.kind.value}/{ep.outcome.label.value}"
        counts[key] = counts.get(key, 0) + 1
        steps[key] = steps.get(key, 0) + ep.num_steps
    total = sum(steps.values())
    for key in sorted(counts):
        print(f"{key:18s} episodes {counts[key]:5d}  steps {steps[key]:7d}  share {steps[key] / total:.2f}")
    print(
        f"wrote {sum(counts.values())} episodes ({total} steps) to {args.out} in {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
