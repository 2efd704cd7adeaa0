"""A simulated fleet without ROS: robots run the newest published policy, an operator intervenes.

The online phase of the results experiment. It is the fleet loop minus DDS and
ZeroMQ: at every episode boundary a robot loads the newest policy from the
bridge's PolicyStore, runs it on the gym-style simulator (chunks executed
open-loop for `execute_steps` rows), while the simulated operator's rules
(lwd_sim.operator_core) decide when to take over with the scripted expert and
when to give control back; the episode, with its TELEOP segments, goes into
the bridge's EpisodeStore for the online learner. Runs until stopped (SIGINT or
SIGTERM, as the experiment does when the learner finishes) or --max-episodes.

    python experiments/online_collector.py --bridge-root R --task can_to_bin
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

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
from lwd_common.policy_store import PolicyStore
from lwd_common.preprocessing import encode_jpeg
from lwd_common.store import EpisodeStore
from lwd_description.robot import CAMERA_NAMES, CONTROL_HZ
from lwd_sim.env import LwdSimEnv
from lwd_sim.evaluate_policy import OnnxChunkPolicy
from lwd_sim.expert import DEMO
from lwd_sim.operator_core import Decision, OperatorBrain, OperatorRules, Progress

TELEOP_VERSION = "teleop"


def run_episode(
    env: LwdSimEnv,
    policy: OnnxChunkPolicy,
    version: str,
    brain: OperatorBrain,
    rng: np.random.Generator,
    robot_id: str,
    execute_steps: int,
    jpeg_quality: int,
) -> Episode:
    obs, info = env.reset(seed=int(rng.integers(2**31)))
    brain.start_episode(0.0)
    steps: list[StepRecord] = []
    chunk, row, chunk_id = None, execute_steps, -1
    expert = None
    reason = "time_limit"
    for t in range(env.time_limit_steps):
        decision = brain.observe(
            t / CONTROL_HZ, obs["joint_pos"], Progress(info["success"], info["failed"], info["subtasks_done"])
        )
        if decision in (Decision.STOP_SUCCESS, Decision.STOP_FAILURE):
            reason = brain.reason
            break
        if decision == Decision.ENGAGE:
            expert = env.expert(DEMO, rng)  # plans from the scene as it is now
        elif decision == Decision.RELEASE:
            expert, row = None, execute_steps  # the policy resumes from a fresh inference
        if expert is not None:
            action, source, ver = expert.act(), ActionSource.TELEOP, TELEOP_VERSION
        else:
            if row >= execute_steps:
                batch = {k: np.asarray(v)[None] for k, v in obs.items()}
                chunk, row, chunk_id = policy(batch)[0], 0, chunk_id + 1
            action, source, ver = chunk[row], ActionSource.POLICY, version
            row += 1
        images = {cam: encode_jpeg(obs["images"][k], jpeg_quality) for k, cam in enumerate(CAMERA_NAMES)}
        steps.append(
            StepRecord(
                t,
                t / CONTROL_HZ,
                images,
                obs["joint_pos"].copy(),
                np.asarray(action, np.float32),
                source,
                max(chunk_id, 0),
                ver,
            )
        )
        obs, _, _, truncated, info = env.step(action)
        if truncated:
            break
    label = Label.SUCCESS if info["success"] else Label.FAILURE
    meta = EpisodeMeta(
        new_episode_id(robot_id),
        robot_id,
        env.task.name,
        env.instance.instruction,
        EpisodeKind.ROLLOUT,
        extra={"collector": "experiments/online_collector.py", "interventions": brain.interventions},
    )
    outcome = EpisodeOutcome(label, len(steps), reason=reason, subtask_score=float(info["score"]))
    return Episode.from_steps(meta, steps, outcome)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bridge-root", type=Path, required=True)
    ap.add_argument("--task", default="can_to_bin")
    ap.add_argument("--robot-id", default="simfleet0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--execute-steps", type=int, default=15)
    ap.add_argument("--jpeg-quality", type=int, default=80)
    ap.add_argument("--max-episodes", type=int, default=0, help="0: no limit")
    ap.add_argument("--log", type=Path, default=None, help="append one JSON line per episode here")
    ap.add_argument(
        "--release-after-subtasks",
        type=int,
        default=99,
        help="operator gives control back after this many new sub-tasks (default: finishes the task)",
    )
    ap.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by this much")
    ap.add_argument(
        "--time-limit-s", type=float, default=None, help="episode limit (default: the task's own)"
    )
    ap.add_argument(
        "--no-progress-frac",
        type=float,
        default=0.25,
        help="operator takes over after no new sub-task for this fraction of the time limit",
    )
    ap.add_argument(
        "--stall-window-s", type=float, default=1.0, help="... or after the arms barely moved for this long"
    )
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.nice:
        os.nice(args.nice)

    store = EpisodeStore(args.bridge_root / "store")
    policies = PolicyStore(args.bridge_root / "policies")
    rng = np.random.default_rng(args.seed)
    bad_limit = args.time_limit_s is not None and args.time_limit_s <= 0
    if not 0 < args.no_progress_frac <= 1 or args.stall_window_s <= 0 or bad_limit:
        ap.error("--no-progress-frac must be in (0, 1], --stall-window-s and --time-limit-s > 0")
    brain: OperatorBrain | None = None
    env: LwdSimEnv | None = None
    policy, version = None, ""
    done = 0
    while args.max_episodes <= 0 or done < args.max_episodes:
        latest = policies.latest()
        if latest is None:
            time.sleep(1.0)
            continue
        if latest.version != version:  # swap only here, at an episode boundary
            policy, version = (
                OnnxChunkPolicy(policies.path_of(latest.version), seed=int(rng.integers(2**31))),
                latest.version,
            )
            if env is None or env.image_shape[1:3] != policy.image_size:
                env = LwdSimEnv(args.task, policy.image_size, seed=args.seed, time_limit_s=args.time_limit_s)
                limit_s = env.time_limit_steps / CONTROL_HZ  # the env truncates there; the brain agrees
                brain = OperatorBrain(
                    OperatorRules(
                        stall_window_s=args.stall_window_s,
                        no_progress_s=args.no_progress_frac * limit_s,
                        time_limit_s=limit_s,
                        release_after_subtasks=args.release_after_subtasks,
                    )
                )
        ep = run_episode(
            env, policy, version, brain, rng, args.robot_id, args.execute_steps, args.jpeg_quality
        )
        store.put(ep)
        store.commit_snapshot()
        done += 1
        line = {
            "episode": ep.meta.episode_id,
            "task": args.task,
            "policy": version,
            "success": ep.success,
            "interventions": ep.meta.extra["interventions"],
            "steps": ep.num_steps,
            "teleop_steps": int(ep.intervention_mask.sum()),
            "time": time.time(),
        }
        print(json.dumps(line), flush=True)
        if args.log:
            with args.log.open("a") as f:
                f.write(json.dumps(line) + "\n")
    if env is not None:
        env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
