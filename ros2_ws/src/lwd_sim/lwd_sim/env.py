"""Gymnasium-style API over the task suite, without ROS, for fast learning experiments and evaluation.

    env = LwdSimEnv("can_to_bin", image_size=64, seed=0)
    obs, info = env.reset()
    obs, reward, terminated, truncated, info = env.step(action16)

obs = {"images": uint8 [3, H, W, 3] (head, left_wrist, right_wrist), "joint_pos": float32 [16],
"task_id": int (index into `tasks.ALL_INSTRUCTIONS`)}; reward is sparse (1.0 on success);
info carries success, failed, sub-task progress, score, the instruction, and where the fleet's
operator would first have taken over (`takeover_step`, None if never; nobody takes over here).
`VecEnv` runs N envs in-process; `evaluate` executes a chunk policy on it, by default as the
robot's actor does (`execution="actor"`: `lwd_common.execution.chunk_execution`, the actor's own
scheduler, with an inference delay in ticks), or whole chunks (`execution="whole_chunks"`, a
diagnostic); `expert_chunk_policy` wraps the scripted expert as one (whole chunks only).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lwd_common.execution.chunk_execution import ChunkExecution, ChunkRequest
from lwd_common.execution.scheduler import SchedulerConfig
from lwd_description.robot import (
    CAMERA_NAMES,
    CHUNK_HORIZON,
    CONTROL_HZ,
    JOINT_NAMES,
    LEFT_ARM_JOINTS,
    NUM_JOINTS,
    RIGHT_ARM_JOINTS,
)
from lwd_sim.expert import DEMO, ExpertConfig, ScriptedExpert
from lwd_sim.operator_core import Decision, OperatorBrain, OperatorRules, Progress
from lwd_sim.sim import G1Sim, SimConfig
from lwd_sim.tasks import ALL_INSTRUCTIONS, TaskInstance, TaskStatus, get_task

Obs = dict[str, np.ndarray]


class ChunkPolicy(Protocol):
    """`policy(obs_batch) -> [B, H, 16]` chunks of absolute joint targets, row 0 for the next step.

    In actor execution it is called on the batch of envs that ask for a chunk this tick, with the
    real-time-chunking inputs of each (`ChunkExecution.request`): `prefix` float32 [B, H, 16] the
    targets already planned for the chunk's steps (zero rows beyond), `prefix_len` int64 [B] how
    many rows of it are planned, `delay` int64 [B] the ticks it will arrive late (rows of `prefix`
    executed before it arrives). A policy without real-time chunking ignores them. In whole-chunk
    execution it is called with the observations alone."""

    def __call__(
        self,
        obs: Obs,
        /,
        prefix: np.ndarray | None = None,
        prefix_len: np.ndarray | None = None,
        delay: np.ndarray | None = None,
    ) -> np.ndarray: ...


EXECUTION_ACTOR = "actor"  # the actor's scheduler (request_threshold, stitching) with an inference delay
EXECUTION_WHOLE_CHUNKS = "whole_chunks"  # diagnostic: execute_steps rows of each chunk, no delay
EXECUTIONS = (EXECUTION_ACTOR, EXECUTION_WHOLE_CHUNKS)
# Ticks a chunk arrives late for its row 0 in actor execution (`chunk_execution` module doc). The
# default 64x64 policy infers in 0.8 ms (plain) / 1.6 ms (real-time chunking) median, 6.4 ms p99
# with the JPEG round trip, batch 1, one thread on this shared 2-core CPU (2026-12-07): far inside
# one 33 ms control period, so the actor stitches each chunk at the next tick, in time for its row
# 0 (delay_ticks_for_latency(0.0064, 30) == 0).
DEFAULT_DELAY_TICKS = 0


class LwdSimEnv:
    """One simulated robot doing one task family."""

    def __init__(
        self,
        task: str,
        image_size: int | tuple[int, int] = 64,
        seed: int | None = None,
        render: bool = True,
        cameras: tuple[str, ...] = CAMERA_NAMES,
        time_limit_s: float | None = None,
    ):
        if time_limit_s is not None and time_limit_s <= 0:
            raise ValueError(f"time_limit_s must be > 0, got {time_limit_s}")
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.task = get_task(task)
        self.sim = G1Sim(SimConfig(image_height=h, image_width=w, cameras=cameras))
        self.render_images = render
        self.time_limit_s = time_limit_s  # None: the task's own limit
        self.rng = np.random.default_rng(seed)
        self.instance: TaskInstance | None = None
        self.status: TaskStatus | None = None
        self.steps = 0
        self.operator: OperatorBrain | None = None
        self.takeover_step: int | None = None
        self.takeover_reason = ""

    @property
    def image_shape(self) -> tuple[int, int, int, int]:
        c = self.sim.config
        return (len(c.cameras), c.image_height, c.image_width, 3)

    @property
    def time_limit_steps(self) -> int:
        """This env's episode limit: the override if set (e.g. shorter evaluations), else the task's."""
        return int(round((self.time_limit_s or self.task.time_limit_s) * CONTROL_HZ))

    def reset(self, seed: int | None = None, instruction: str | None = None) -> tuple[Obs, dict]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.instance = self.task.sample(self.rng, instruction)
        self.instance.reset_sim(self.sim)
        self.status = self.instance.evaluate(self.sim)
        self.steps = 0
        self.operator = OperatorBrain(OperatorRules(time_limit_s=self.time_limit_steps / CONTROL_HZ))
        self.operator.start_episode(0.0)
        self.takeover_step, self.takeover_reason = None, ""
        return self._obs(), self._info()

    def step(self, action: np.ndarray) -> tuple[Obs, float, bool, bool, dict]:
        if self.instance is None:
            raise RuntimeError("call reset() before step()")
        self.sim.apply(action)
        self.steps += 1
        self.status = self.instance.evaluate(self.sim)
        self._watch_operator()
        terminated = self.status.success or self.status.failed
        truncated = not terminated and self.steps >= self.time_limit_steps
        reward = 1.0 if self.status.success else 0.0
        return self._obs(), reward, terminated, truncated, self._info()

    def _watch_operator(self) -> None:
        """Where the fleet's operator (`operator_core`, default rules, every trouble rescued) would
        first take over this episode: the step and the reason, in the info. Nobody takes over here;
        it makes a held-out episode comparable with the fleet's "succeeded alone"."""
        if self.takeover_step is not None or self.operator is None:
            return
        st = self.status
        tcp = np.stack([self.sim.tcp_pose(side)[0] for side in ("left", "right")])
        decision = self.operator.observe(
            self.steps / CONTROL_HZ,
            self.sim.joint_positions(),
            Progress(st.success, st.failed, int(st.subtasks_done)),
            tcp,
        )
        if decision == Decision.ENGAGE:
            self.takeover_step, self.takeover_reason = self.steps, self.operator.reason

    def expert(self, config: ExpertConfig = DEMO, rng: np.random.Generator | None = None) -> ScriptedExpert:
        """A scripted expert for the current episode (create it after reset)."""
        if self.instance is None:
            raise RuntimeError("call reset() before expert()")
        return ScriptedExpert(self.sim, self.instance, config, rng or self.rng)

    def _obs(self) -> Obs:
        images = self.sim.render() if self.render_images else np.zeros(self.image_shape, np.uint8)
        return {
            "images": images,
            "joint_pos": self.sim.joint_positions().astype(np.float32),
            "task_id": np.int64(ALL_INSTRUCTIONS.index(self.instance.instruction)),
        }

    def _info(self) -> dict:
        st = self.status
        return {
            "task": self.task.name,
            "instruction": self.instance.instruction,
            "success": st.success,
            "failed": st.failed,
            "subtasks_done": st.subtasks_done,
            "subtasks_total": st.subtasks_total,
            "subtask_flags": st.done_flags,
            "subtask_scores": st.subtask_scores,
            "score": st.score,
            "step": self.steps,
            "time_limit_steps": self.time_limit_steps,
            "takeover_step": self.takeover_step,
            "takeover_reason": self.takeover_reason,
        }

    def close(self) -> None:
        self.sim.close()


class VecEnv:
    """N independent envs stepped in lock-step in this process (no auto-reset)."""

    def __init__(
        self,
        task: str,
        num_envs: int,
        image_size: int | tuple[int, int] = 64,
        seed: int = 0,
        render: bool = True,
        time_limit_s: float | None = None,
    ):
        if num_envs < 1:
            raise ValueError("num_envs must be >= 1")
        self.envs = [
            LwdSimEnv(task, image_size, seed + 1000 * i, render, time_limit_s=time_limit_s)
            for i in range(num_envs)
        ]

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    def reset(self) -> tuple[Obs, list[dict]]:
        pairs = [e.reset() for e in self.envs]
        return stack_obs([p[0] for p in pairs]), [p[1] for p in pairs]

    def step(self, actions: np.ndarray) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs, NUM_JOINTS):
            raise ValueError(f"expected actions of shape {(self.num_envs, NUM_JOINTS)}, got {actions.shape}")
        out = [e.step(a) for e, a in zip(self.envs, actions, strict=True)]
        obs = stack_obs([o[0] for o in out])
        return (
            obs,
            np.array([o[1] for o in out], np.float32),
            np.array([o[2] for o in out]),
            np.array([o[3] for o in out]),
            [o[4] for o in out],
        )

    def close(self) -> None:
        for e in self.envs:
            e.close()


def stack_obs(obs: list[Obs]) -> Obs:
    return {k: np.stack([o[k] for o in obs]) for k in obs[0]}


@dataclass(frozen=True)
class EvalResult:
    episodes: int
    success_rate: float
    mean_score: float
    mean_steps: float
    per_episode: tuple[dict, ...]
    mean_cycle_time_s: float = 0.0  # successes: their duration; failures: clipped to the time limit
    execution: str = EXECUTION_WHOLE_CHUNKS  # how chunks were executed (EXECUTIONS)
    delay_ticks: int = 0  # actor execution: ticks each chunk arrived late
    execute_steps: int = CHUNK_HORIZON  # whole-chunk execution: rows executed per chunk
    dry_ticks: int = 0  # actor execution: ticks an env held because its timeline ran dry (all episodes)

    @property
    def alone_rate(self) -> float:
        """The share of episodes that succeeded before the fleet's operator would have taken over
        (`LwdSimEnv._watch_operator`): the held-out counterpart of the fleet's "succeeded alone"."""
        return succeeded_alone_rate(self.per_episode)

    @property
    def label(self) -> str:
        """How the chunks were executed, for printed and written results."""
        return execution_label(self.execution, self.execute_steps, self.delay_ticks)


def succeeded_alone_rate(per_episode: Sequence[dict]) -> float:
    """Share of episode infos with success and no `takeover_step`."""
    if not per_episode:
        return float("nan")
    return float(np.mean([bool(r["success"]) and r.get("takeover_step") is None for r in per_episode]))


def execution_label(execution: str, execute_steps: int, delay_ticks: int) -> str:
    """`actor execution, delay 0 ticks` or `whole chunks, 30 rows each, no delay`."""
    if execution == EXECUTION_ACTOR:
        return f"actor execution, delay {delay_ticks} ticks"
    return f"whole chunks, {execute_steps} rows each, no delay"


def evaluate(
    vec: VecEnv,
    policy: ChunkPolicy,
    episodes_per_env: int = 1,
    execute_steps: int = CHUNK_HORIZON,
    on_reset: Callable[[VecEnv], None] | None = None,
    execution: str = EXECUTION_ACTOR,
    delay_ticks: int = DEFAULT_DELAY_TICKS,
    scheduler: SchedulerConfig | None = None,
    record_boundaries: bool = False,
) -> EvalResult:
    """Run `episodes_per_env` episodes per env.

    `execution="actor"` (default): each env is one robot's actor (`ChunkExecution` with
    `scheduler`, default the actor's defaults): it asks for a chunk when `request_threshold`
    planned steps or fewer remain, the chunk arrives `delay_ticks` ticks late for its row 0 and
    is stitched by step index; a dry timeline holds the last command (counted). Each episode
    starts as the actor's does: the first tick holds and asks. `execute_steps` is unused.
    `execution="whole_chunks"`: the first `execute_steps` rows of each chunk, inferred on the
    observation they start at (no delay); `scheduler` and `delay_ticks` are unused.
    `record_boundaries`: each episode's result also has "boundary_jumps" and "max_tick_jump"
    (`boundary_jumps`)."""
    if execution == EXECUTION_WHOLE_CHUNKS:
        results = _run_whole_chunks(vec, policy, episodes_per_env, execute_steps, on_reset, record_boundaries)
        dry = 0
    elif execution == EXECUTION_ACTOR:
        if getattr(policy, "whole_chunks_only", False):
            raise ValueError(
                "this policy only works with execution='whole_chunks' (e.g. the scripted expert)"
            )
        if delay_ticks < 0:
            raise ValueError(f"delay_ticks must be >= 0, got {delay_ticks}")
        results = _run_actor(
            vec,
            policy,
            episodes_per_env,
            on_reset,
            delay_ticks,
            scheduler or SchedulerConfig(),
            record_boundaries,
        )
        dry = sum(int(r["dry_ticks"]) for r in results)
    else:
        raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
    n = len(results)
    cycle = [(r["step"] if r["success"] else r["time_limit_steps"]) / CONTROL_HZ for r in results]
    return EvalResult(
        n,
        float(np.mean([r["success"] for r in results])),
        float(np.mean([r["score"] for r in results])),
        float(np.mean([r["step"] for r in results])),
        tuple(results),
        float(np.mean(cycle)),
        execution,
        delay_ticks if execution == EXECUTION_ACTOR else 0,
        execute_steps,
        dry,
    )


def _check_chunk(chunk: np.ndarray, batch: int) -> np.ndarray:
    chunk = np.asarray(chunk, dtype=np.float64)
    if chunk.ndim != 3 or chunk.shape[0] != batch or chunk.shape[2] != NUM_JOINTS:
        raise ValueError(f"policy returned shape {chunk.shape}, want [{batch}, H, {NUM_JOINTS}]")
    return chunk


_ARM = [JOINT_NAMES.index(j) for j in LEFT_ARM_JOINTS + RIGHT_ARM_JOINTS]


def boundary_jumps(targets: np.ndarray, chunk_ids: list[int | None]) -> dict:
    """Chunk-boundary smoothness of one episode's executed targets x[t] ([T, 16], tick t's
    command) and the chunk each came from (None: no chunk yet). The commanded velocity into tick
    t is v[t] = (x[t] - x[t-1]) * CONTROL_HZ; its jump at t is max over the 14 arm joints of
    |v[t] - v[t-1]| = |x[t] - 2 x[t-1] + x[t-2]| * CONTROL_HZ, in rad/s. A boundary is a tick
    whose target comes from another chunk than the tick before's (a new chunk's first executed
    row takes over; the episode's first chunk, taking over from the held start pose, is not one).
    Returns the jumps at the boundaries ("boundary_jumps") and the largest jump at any tick
    ("max_tick_jump": it also sees where an old chunk stops contributing to a blend or ensemble)
    and the mean jump at the other ticks ("within_chunk_jump_mean", the policy's own roughness)."""
    x = np.asarray(targets, np.float64)[:, _ARM]
    if len(x) < 3:
        return {"boundary_jumps": [], "max_tick_jump": 0.0, "within_chunk_jump_mean": 0.0}
    jump = np.abs(x[2:] - 2 * x[1:-1] + x[:-2]).max(axis=1) * CONTROL_HZ  # jump[t - 2] is tick t's
    at = [
        t
        for t in range(2, len(x))
        if chunk_ids[t - 1] is not None and chunk_ids[t] is not None and chunk_ids[t] != chunk_ids[t - 1]
    ]
    inside = np.delete(jump, [t - 2 for t in at])
    return {
        "boundary_jumps": [float(jump[t - 2]) for t in at],
        "max_tick_jump": float(jump.max()),
        "within_chunk_jump_mean": float(inside.mean()) if len(inside) else 0.0,
    }


def _run_whole_chunks(
    vec: VecEnv,
    policy: ChunkPolicy,
    episodes_per_env: int,
    execute_steps: int,
    on_reset: Callable[[VecEnv], None] | None,
    record_boundaries: bool = False,
) -> list[dict]:
    results: list[dict] = []
    for _ in range(episodes_per_env):
        obs, infos = vec.reset()
        if on_reset is not None:
            on_reset(vec)
        done = np.zeros(vec.num_envs, bool)
        executed: list[list[np.ndarray]] = [[] for _ in range(vec.num_envs)]
        sources: list[list[int | None]] = [[] for _ in range(vec.num_envs)]
        chunk_id = 0
        while not done.all():
            chunk = _check_chunk(policy(obs), vec.num_envs)
            chunk_id += 1
            for k in range(min(execute_steps, chunk.shape[1])):
                per_env: list[Obs | None] = []
                for i, env in enumerate(vec.envs):
                    if done[i]:
                        per_env.append(None)
                        continue
                    if record_boundaries:
                        executed[i].append(chunk[i, k])
                        sources[i].append(chunk_id)
                    o, _, term, trunc, info = env.step(chunk[i, k])
                    per_env.append(o)
                    infos[i] = info
                    if term or trunc:
                        done[i] = True
                        if record_boundaries:
                            info = {**info, **boundary_jumps(np.stack(executed[i]), sources[i])}
                        results.append(info)
                obs = _merge_obs(obs, per_env)
                if done.all():
                    break
    return results


def _run_actor(
    vec: VecEnv,
    policy: ChunkPolicy,
    episodes_per_env: int,
    on_reset: Callable[[VecEnv], None] | None,
    delay_ticks: int,
    scheduler: SchedulerConfig,
    record_boundaries: bool = False,
) -> list[dict]:
    """Every env runs the actor's tick order: stitch the chunks that arrived, take the step's
    target (dry: hold the last command), ask for a chunk on the step's observation, step."""
    results: list[dict] = []
    n = vec.num_envs
    for _ in range(episodes_per_env):
        obs, _ = vec.reset()
        if on_reset is not None:
            on_reset(vec)
        execs = [ChunkExecution(scheduler, CHUNK_HORIZON, NUM_JOINTS) for _ in range(n)]
        last = obs["joint_pos"].astype(np.float64)  # the actor's first command: where the robot is
        arriving: list[list[tuple[int, ChunkRequest, np.ndarray, int]]] = [[] for _ in range(n)]
        chunk_ids = [itertools.count(1) for _ in range(n)]
        executed: list[list[np.ndarray]] = [[] for _ in range(n)]
        sources: list[list[int | None]] = [[None] for _ in range(n)]  # the chunk of each env's last target
        done = np.zeros(n, bool)
        step = 0
        while not done.all():
            live = [i for i in range(n) if not done[i]]
            for i in live:  # 1. chunks arriving before this tick's target
                due = [a for a in arriving[i] if a[0] <= step]
                arriving[i] = [a for a in arriving[i] if a[0] > step]
                for _, request, chunk, chunk_id in due:
                    execs[i].answered()
                    execs[i].stitch(request.start_step, chunk, chunk_id, step)
            for i in live:  # 2. this tick's target
                scheduled = execs[i].pop(step)
                if scheduled is not None:
                    last[i] = scheduled.target
                if record_boundaries:  # a dry tick holds the last command, of the last chunk
                    executed[i].append(last[i].copy())
                    sources[i].append(sources[i][-1] if scheduled is None else scheduled.chunk_id)
            requests = [(i, execs[i].request(step, delay_ticks)) for i in live]  # 3. ask, on this obs
            asking = [(i, r) for i, r in requests if r is not None]
            if asking:
                idx = np.array([i for i, _ in asking])
                chunks = _check_chunk(
                    policy(
                        {k: v[idx] for k, v in obs.items()},
                        prefix=np.stack([r.prefix for _, r in asking]),
                        prefix_len=np.array([r.prefix_len for _, r in asking], np.int64),
                        delay=np.array([r.delay for _, r in asking], np.int64),
                    ),
                    len(asking),
                )
                for (i, r), chunk in zip(asking, chunks, strict=True):
                    arriving[i].append((r.start_step + delay_ticks, r, chunk, next(chunk_ids[i])))
            per_env: list[Obs | None] = [None] * n
            for i in live:  # 4. the robot executes the target
                o, _, term, trunc, info = vec.envs[i].step(last[i].copy())
                per_env[i] = o
                if term or trunc:
                    done[i] = True
                    result = {**info, "dry_ticks": execs[i].dry_ticks}
                    if record_boundaries:
                        result.update(boundary_jumps(np.stack(executed[i]), sources[i][1:]))
                    results.append(result)
            obs = _merge_obs(obs, per_env)
            step += 1
    return results


def _merge_obs(prev: Obs, new: list[Obs | None]) -> Obs:
    out = {k: v.copy() for k, v in prev.items()}
    for i, o in enumerate(new):
        if o is not None:
            for k in out:
                out[k][i] = o[k]
    return out


def expert_chunk_policy(
    vec: VecEnv,
    config: ExpertConfig = DEMO,
    horizon: int = CHUNK_HORIZON,
    seed: int = 0,
    execute_steps: int = CHUNK_HORIZON,
) -> tuple[ChunkPolicy, Callable[[VecEnv], None]]:
    """The scripted expert as a chunk policy; pass the second value as `evaluate(..., on_reset=...)`.

    Whole-chunk execution only (`evaluate(..., execution="whole_chunks")`; actor execution refuses
    it): `execute_steps` must match `evaluate`'s, as each call first consumes what the previous
    chunk executed. The expert replans at phase ends, so short execution (e.g. 10) wastes fewer steps.
    """
    policy = _ExpertChunkPolicy(config, horizon, seed, execute_steps)
    return policy, policy.on_reset


class _ExpertChunkPolicy:
    """The scripted experts of a VecEnv's episodes as one chunk policy over all its envs; each call
    first advances them by the rows the previous chunk executed, so only whole-chunk execution
    (every env asks every `execute_steps` ticks) keeps them in step with the simulation."""

    whole_chunks_only = True  # `evaluate` refuses it in actor execution

    def __init__(self, config: ExpertConfig, horizon: int, seed: int, execute_steps: int):
        self.config = config
        self.horizon = horizon
        self.execute_steps = execute_steps
        self.experts: list[ScriptedExpert] = []
        self.first = True
        self.rng = np.random.default_rng(seed)

    def on_reset(self, v: VecEnv) -> None:
        self.experts = [
            e.expert(self.config, np.random.default_rng(self.rng.integers(2**31))) for e in v.envs
        ]
        self.first = True

    def __call__(
        self,
        obs: Obs,
        /,
        prefix: np.ndarray | None = None,
        prefix_len: np.ndarray | None = None,
        delay: np.ndarray | None = None,
    ) -> np.ndarray:
        if not self.first:
            for ex in self.experts:
                ex.advance(self.execute_steps)
        self.first = False
        return np.stack([ex.peek(self.horizon) for ex in self.experts])
