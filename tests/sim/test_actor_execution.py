"""The simulator's held-out evaluation executes chunks as the actor does: `evaluate(...,
execution="actor")` and `ActorCore` share one scheduler (`lwd_common.execution.chunk_execution`), and
`execution="whole_chunks"` is the old loop, kept as a diagnostic."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lwd_actor.core.actor import ActorConfig, ActorCore
from lwd_actor.core.inference_worker import InferenceResult
from lwd_actor.core.observation import JOINTS_INPUT, Observation
from lwd_common.execution.scheduler import MergeMode, SchedulerConfig
from lwd_description.robot import CAMERA_NAMES, CONTROL_HZ, NUM_JOINTS, load_robot
from lwd_sim.env import CHUNK_HORIZON, VecEnv, boundary_jumps, evaluate, expert_chunk_policy, stack_obs

DT = 1 / CONTROL_HZ


def joint_pos(tick: int) -> np.ndarray:
    """What the fake robot measures at a tick (inside every G1 joint's limits)."""
    return np.full(NUM_JOINTS, 0.01 + 0.0001 * tick, np.float32)


def chunk_for(q: np.ndarray) -> np.ndarray:
    """A deterministic chunk policy: [H, J] from the observed joint positions."""
    return np.asarray(q, np.float64)[None, :] + 0.00007 * np.arange(1, CHUNK_HORIZON + 1)[:, None]


class FakeEnv:
    """Measures joint_pos(step), records every command, ends after `length` steps."""

    def __init__(self, length: int):
        self.length = length
        self.steps = 0
        self.commands: list[np.ndarray] = []

    def obs(self) -> dict[str, np.ndarray]:
        return {
            "images": np.zeros((3, 4, 4, 3), np.uint8),
            "joint_pos": joint_pos(self.steps),
            "task_id": np.int64(0),
        }

    def step(self, action):
        self.commands.append(np.array(action, np.float64))
        self.steps += 1
        done = self.steps >= self.length
        info = {"success": False, "score": 0.0, "step": self.steps, "time_limit_steps": self.length}
        return self.obs(), 0.0, False, done, info


class FakeVec:
    def __init__(self, num_envs: int, length: int):
        self.envs = [FakeEnv(length) for _ in range(num_envs)]

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    def reset(self):
        for e in self.envs:
            e.steps = 0
        return stack_obs([e.obs() for e in self.envs]), [{} for _ in self.envs]


def fake_policy(obs, prefix=None, prefix_len=None, delay=None) -> np.ndarray:
    return np.stack([chunk_for(q) for q in obs["joint_pos"]])


def actor_core_commands(length: int, delay: int, scheduler: SchedulerConfig) -> list[np.ndarray]:
    """ActorCore ticked `length` times on the same robot and chunks, each chunk handed back
    `delay` ticks late for its row 0 (as the worker's poll would at that tick)."""
    core = ActorCore(ActorConfig(scheduler=scheduler), load_robot("g1_dual_arm").limits, None, "v1")

    def obs(tick: int, now: float) -> Observation:
        stamps = {c: now for c in CAMERA_NAMES} | {JOINTS_INPUT: now}
        images = {c: np.zeros((4, 4, 3), np.uint8) for c in CAMERA_NAMES}
        return Observation(images, joint_pos(tick).astype(np.float64), stamps)

    core.tick(0.0, obs(0, 0.0))
    core.start_episode("e", "pick", "", now=core.step * DT)
    ids = itertools.count(1)
    arriving: list[tuple[int, InferenceResult]] = []
    commands = []
    for tick in range(length):
        step, now = core.step, core.step * DT
        due = [r for s, r in arriving if s == step]
        res = core.tick(now, obs(tick, now), due)
        assert res.command is not None
        commands.append(res.command)
        if res.request is not None:
            actions = chunk_for(res.request.obs.joint_pos)
            arriving.append(
                (res.request.start_step + delay, InferenceResult(res.request, next(ids), actions, 1.0, "v1"))
            )
    return commands


@pytest.mark.parametrize(
    ("delay", "merge"),
    [
        (0, MergeMode.REPLACE),
        (3, MergeMode.REPLACE),
        (6, MergeMode.BLEND),
        (3, MergeMode.ENSEMBLE),
        (15, MergeMode.REPLACE),
    ],
)
def test_evaluation_and_actor_core_execute_the_same_targets_from_the_same_chunks(delay, merge):
    scheduler = SchedulerConfig(merge=merge)
    length = 150
    vec = FakeVec(2, length)
    evaluate(vec, fake_policy, execution="actor", delay_ticks=delay, scheduler=scheduler)
    want = np.array(actor_core_commands(length, delay, scheduler))
    for env in vec.envs:
        np.testing.assert_array_equal(np.array(env.commands), want)
    assert len({tuple(c) for c in want}) > length // 2  # the chunks really drive it (few holds)


@pytest.mark.parametrize("delay", [0, 4])
def test_with_delay_d_the_first_d_ticks_after_a_request_execute_the_old_chunk(delay):
    calls: list[tuple[np.ndarray, np.ndarray]] = []

    def policy(obs, prefix=None, prefix_len=None, delay=None):
        calls.append((prefix_len.copy(), delay.copy()))
        return fake_policy(obs)

    vec = FakeVec(1, 100)  # replace merge: the timing alone, no cross-fade
    evaluate(
        vec, policy, execution="actor", delay_ticks=delay, scheduler=SchedulerConfig(merge=MergeMode.REPLACE)
    )
    cmds = np.array(vec.envs[0].commands)[:, 0]
    threshold = SchedulerConfig().request_threshold
    t = CHUNK_HORIZON - threshold  # the first chunk plans steps 1..30: from t + 1 on, 12 remain
    first = chunk_for(joint_pos(0))[:, 0]  # asked at tick 0: row k belongs to step 1 + k
    second = chunk_for(joint_pos(t))[:, 0]
    # ticks t + 1 .. t + delay still execute the first chunk, then the second from its row `delay`
    np.testing.assert_array_equal(cmds[t + 1 : t + 1 + delay], first[t : t + delay])
    assert cmds[t + 1 + delay] == second[delay]  # then the new one, from its row `delay`
    assert calls[1][0][0] == threshold and calls[1][1][0] == delay  # it was asked with the prefix


def test_dry_ticks_are_counted_when_the_delay_exceeds_the_request_threshold():
    threshold = 12  # below H / 2: a delay up to the threshold is in time (docs/actor.md)
    sched = SchedulerConfig(request_threshold=threshold)
    in_time = evaluate(
        FakeVec(2, 200), fake_policy, execution="actor", delay_ticks=threshold, scheduler=sched
    )
    late = evaluate(
        FakeVec(2, 200), fake_policy, execution="actor", delay_ticks=threshold + 3, scheduler=sched
    )
    assert in_time.dry_ticks == 0 and in_time.execution == "actor"
    assert late.dry_ticks > 0 and late.dry_ticks % (2 * 3) == 0  # 3 ticks per re-plan, both envs
    assert all(r["dry_ticks"] == late.dry_ticks // 2 for r in late.per_episode)
    assert "delay 15 ticks" in late.label


def test_actor_execution_refuses_the_whole_chunk_expert():
    vec = VecEnv("can_to_bin", num_envs=1, image_size=16, render=False)
    try:
        policy, on_reset = expert_chunk_policy(vec)
        with pytest.raises(ValueError, match="whole_chunks"):
            evaluate(vec, policy, on_reset=on_reset, execution="actor")
    finally:
        vec.close()


def old_evaluate_loop(vec, policy, episodes_per_env, execute_steps, on_reset) -> list[dict]:
    """`lwd_sim.env.evaluate` before executions were named (commit 164bf98), verbatim in effect."""
    results: list[dict] = []
    for _ in range(episodes_per_env):
        obs, infos = vec.reset()
        if on_reset is not None:
            on_reset(vec)
        done = np.zeros(vec.num_envs, bool)
        while not done.all():
            chunk = np.asarray(policy(obs), dtype=np.float64)
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
                new = {key: v.copy() for key, v in obs.items()}
                for i, o in enumerate(per_env):
                    if o is not None:
                        for key in new:
                            new[key][i] = o[key]
                obs = new
                if done.all():
                    break
    return results


def test_whole_chunks_execution_reproduces_the_old_loop_for_a_fixed_seed():
    def run(new: bool):
        vec = VecEnv("can_to_bin", num_envs=2, image_size=16, seed=12345, render=False)
        try:
            policy, on_reset = expert_chunk_policy(vec, seed=12345, execute_steps=10)
            if new:
                r = evaluate(vec, policy, 1, 10, on_reset, execution="whole_chunks")
                assert r.label == "whole chunks, 10 rows each, no delay" and r.dry_ticks == 0
                return list(r.per_episode)
            return old_evaluate_loop(vec, policy, 1, 10, on_reset)
        finally:
            vec.close()

    old, new = run(False), run(True)
    assert len(old) == 2 and any(r["success"] for r in old)
    assert [(r["success"], r["step"], r["score"]) for r in new] == [
        (r["success"], r["step"], r["score"]) for r in old
    ]


def test_boundary_jumps_are_the_commanded_velocity_change_where_a_new_chunk_takes_over():
    x = np.zeros((8, NUM_JOINTS))
    x[:, 0] = [0.0, 0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.09]  # velocity 0.3 rad/s, then 0.6 from tick 5
    ids = [None, 1, 1, 1, 1, 2, 2, 2]  # tick 1: the first chunk (not a boundary); tick 5: chunk 2
    got = boundary_jumps(x, ids)
    assert got["boundary_jumps"] == pytest.approx([0.01 * CONTROL_HZ])
    assert got["max_tick_jump"] == pytest.approx(0.01 * CONTROL_HZ)
