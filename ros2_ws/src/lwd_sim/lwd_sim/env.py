"""Gymnasium-style API over the task suite, without ROS, for fast learning experiments and evaluation.

    env = LwdSimEnv("can_to_bin", image_size=64, seed=0)
    obs, info = env.reset()
    obs, reward, terminated, truncated, info = env.step(action16)

obs = {"images": uint8 [3, H, W, 3] (head, left_wrist, right_wrist), "joint_pos": float32 [16],
"task_id": int (index into `tasks.ALL_INSTRUCTIONS`)}; reward is sparse (1.0 on success);
info carries success, failed, sub-task progress, score and the instruction.
`VecEnv` runs N envs in-process; `evaluate` executes a chunk policy
`policy(obs_batch) -> [N, 30, 16]` on it; `expert_chunk_policy` wraps the scripted expert as one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lwd_description.robot import CAMERA_NAMES, CHUNK_HORIZON, CONTROL_HZ, NUM_JOINTS
from lwd_sim.expert import DEMO, ExpertConfig, ScriptedExpert
from lwd_sim.sim import G1Sim, SimConfig
from lwd_sim.tasks import ALL_INSTRUCTIONS, TaskInstance, TaskStatus, get_task

Obs = dict[str, np.ndarray]
ChunkPolicy = Callable[[dict[str, np.ndarray]], np.ndarray]


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
        return self._obs(), self._info()

    def step(self, action: np.ndarray) -> tuple[Obs, float, bool, bool, dict]:
        if self.instance is None:
            raise RuntimeError("call reset() before step()")
        self.sim.apply(action)
        self.steps += 1
        self.status = self.instance.evaluate(self.sim)
        terminated = self.status.success or self.status.failed
        truncated = not terminated and self.steps >= self.time_limit_steps
        reward = 1.0 if self.status.success else 0.0
        return self._obs(), reward, terminated, truncated, self._info()

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


def evaluate(
    vec: VecEnv,
    policy: ChunkPolicy,
    episodes_per_env: int = 1,
    execute_steps: int = CHUNK_HORIZON,
    on_reset: Callable[[VecEnv], None] | None = None,
) -> EvalResult:
    """Run `episodes_per_env` episodes per env, executing the first `execute_steps` rows of each chunk."""
    results: list[dict] = []
    for _ in range(episodes_per_env):
        obs, infos = vec.reset()
        if on_reset is not None:
            on_reset(vec)
        done = np.zeros(vec.num_envs, bool)
        while not done.all():
            chunk = np.asarray(policy(obs), dtype=np.float64)
            if chunk.ndim != 3 or chunk.shape[0] != vec.num_envs or chunk.shape[2] != NUM_JOINTS:
                raise ValueError(
                    f"policy returned shape {chunk.shape}, want [{vec.num_envs}, H, {NUM_JOINTS}]"
                )
            for k in range(min(execute_steps, chunk.shape[1])):
                per_env = []
                for i, env in enumerate(vec.envs):
                    if done[i]:
                        per_env.append(None)
                        continue
                    o, _, term, trunc, info = env.step(chunk[i, k])
                    per_env.append(o)
                    infos[i] = info
                    if term or trunc:
                        done[i] = True
                        results.append(info)
                obs = _merge_obs(obs, per_env)
                if done.all():
                    break
    n = len(results)
    cycle = [(r["step"] if r["success"] else r["time_limit_steps"]) / CONTROL_HZ for r in results]
    return EvalResult(
        n,
        float(np.mean([r["success"] for r in results])),
        float(np.mean([r["score"] for r in results])),
        float(np.mean([r["step"] for r in results])),
        tuple(results),
        float(np.mean(cycle)),
    )


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

    `execute_steps` must match `evaluate`'s: each call first consumes what the previous chunk
    executed. The expert replans at phase ends, so short execution (e.g. 10) wastes fewer steps.
    """
    experts: list[ScriptedExpert] = []
    first = [True]
    rng = np.random.default_rng(seed)

    def on_reset(v: VecEnv) -> None:
        experts.clear()
        experts.extend(e.expert(config, np.random.default_rng(rng.integers(2**31))) for e in v.envs)
        first[0] = True

    def policy(obs: Obs) -> np.ndarray:
        if not first[0]:
            for ex in experts:
                ex.advance(execute_steps)
        first[0] = False
        return np.stack([ex.peek(horizon) for ex in experts])

    return policy, on_reset
