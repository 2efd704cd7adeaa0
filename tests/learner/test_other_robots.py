"""Robots other than the G1 train and export with no code change: a 7-joint arm with cameras `wrist`
and `scene` through the learner CLI to an ONNX policy that ONNX Runtime runs, a camera-free
(state-only) policy in ONNX Runtime, and the errors for what cannot work."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import toytask

from lwd_common import policy_io
from lwd_common.episode import (
    ActionSource,
    Episode,
    EpisodeKind,
    EpisodeMeta,
    EpisodeOutcome,
    Label,
    StepRecord,
)
from lwd_common.preprocessing import encode_jpeg
from lwd_common.store import EpisodeStore
from lwd_learner.agents import make_agent
from lwd_learner.config import EncoderConfig, LearnerConfig, ModelConfig, PolicyConfig, from_dict
from lwd_learner.export_onnx import export_policy, policy_sampler
from lwd_learner.replay import NormStats
from lwd_learner.train import run_offline

ARM = tuple(f"arm_joint{i}" for i in range(1, 7)) + ("gripper",)
CAMERAS = ("wrist", "scene")


def arm_episode(
    rng: np.random.Generator, i: int, steps: int = 12, joints: tuple = ARM, cameras: tuple = CAMERAS
) -> Episode:
    meta = EpisodeMeta(
        f"arm-{i:03d}",
        "arm0",
        "reach",
        "reach the cube",
        EpisodeKind.DEMO,
        cameras=cameras,
        joint_names=joints,
    )
    q = np.cumsum(rng.normal(0, 0.05, (steps + 1, len(joints))), axis=0).astype(np.float32)
    frames = {c: encode_jpeg(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for c in cameras}
    records = [
        StepRecord(t, t / 30, frames, q[t], q[t + 1], ActionSource.TELEOP, 0, "v0") for t in range(steps)
    ]
    return Episode.from_steps(meta, records, EpisodeOutcome(Label.SUCCESS, steps))


def _store(path, episodes) -> None:
    store = EpisodeStore(path)
    for e in episodes:
        store.put(e)
    store.commit_snapshot()


def test_seven_joint_two_camera_store_trains_through_the_cli_and_exports(tmp_path):
    rng = np.random.default_rng(0)
    _store(tmp_path / "store", [arm_episode(rng, i) for i in range(3)])
    cmd = [sys.executable, "-m", "lwd_learner.cli", "offline", "--store", str(tmp_path / "store")]
    cmd += ["--out", str(tmp_path / "run"), "--preset", "smoke", "--model.encoder.image-size", "8", "8"]
    cmd += ["--train.bc-steps", "3", "--train.rl-steps", "2", "--train.batch-size", "4", "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    model = onnx.load(tmp_path / "run" / "policy.onnx")
    dims = {
        i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    assert dims == {
        "images": ["B", 2, 8, 8, 3],
        "joint_pos": ["B", 7],
        "task_id": ["B"],
        "noise": ["B", 30, 7],
        "prefix": ["B", 30, 7],  # real-time chunking (the default export)
        "prefix_len": ["B"],
        "delay": ["B"],
    }
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["joint_names"]) == list(ARM) and json.loads(meta["cameras"]) == list(CAMERAS)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (actions,) = sess.run(
        [policy_io.OUTPUT_ACTIONS],
        {
            "images": rng.integers(0, 256, (2, 2, 8, 8, 3), dtype=np.uint8),
            "joint_pos": np.zeros((2, 7), np.float32),
            "task_id": np.array([1, 0], np.int64),
            "noise": rng.normal(size=(2, 30, 7)).astype(np.float32),
            **policy_io.rtc_feeds(30, 7, 2),
        },
    )
    assert actions.shape == (2, 30, 7) and np.all(np.isfinite(actions))


def test_robot_flag_trains_a_policy_that_the_actor_of_that_robot_loads(tmp_path):
    from lwd_actor.core.policy_runtime import OnnxPolicy, RuntimeConfig
    from lwd_description.robot import load_robot

    arm = load_robot("single_arm_6dof")
    rng = np.random.default_rng(2)
    episodes = [arm_episode(rng, i, joints=arm.joint_names, cameras=arm.camera_names) for i in range(3)]
    _store(tmp_path / "store", episodes)
    cmd = [sys.executable, "-m", "lwd_learner.cli", "offline", "--store", str(tmp_path / "store")]
    cmd += ["--out", str(tmp_path / "run"), "--preset", "smoke", "--robot", "single_arm_6dof"]
    cmd += ["--model.encoder.image-size", "8", "8", "--train.bc-steps", "3", "--train.rl-steps", "1"]
    cmd += ["--train.batch-size", "4", "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = {p.key: p.value for p in onnx.load(tmp_path / "run" / "policy.onnx").metadata_props}
    assert float(meta["control_hz"]) == arm.control_hz == 20.0
    policy = OnnxPolicy(tmp_path / "run" / "policy.onnx", RuntimeConfig.for_robot(arm))  # refuses a misfit
    assert policy.signature.horizon == arm.chunk_horizon == 20


def test_a_store_whose_episodes_name_different_robots_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(1)
    g1 = toytask.make_episode(rng, EpisodeKind.DEMO, toytask.GOAL, 0)
    _store(tmp_path / "store", [g1, arm_episode(rng, 1)])
    with pytest.raises(ValueError, match="episodes disagree on joint_names"):
        run_offline(tmp_path / "store", tmp_path / "run", LearnerConfig(), progress=False)


def test_camera_free_policy_exports_without_images_and_matches_the_jax_sampler():
    joints = ("x", "y", "grip")
    cfg = LearnerConfig(
        model=ModelConfig(
            encoder=EncoderConfig(joint_hidden=16, task_dim=4, out_dim=16),
            policy=PolicyConfig(hidden=(32,), noise_scale=1.0),
            horizon=5,
            joint_names=joints,
            gripper_joints=("grip",),
            cameras=(),
            relative_actions=True,
        )
    )
    agent = make_agent(cfg)
    rng = np.random.default_rng(2)
    stats = NormStats(*(rng.uniform(0.5, 2.0, 3).astype(np.float32) for _ in range(4)))
    state = agent.init(stats, seed=1)
    key = jax.random.PRNGKey(3)
    policy = jax.tree.map(lambda x: x + 0.1 * np.asarray(jax.random.normal(key, x.shape)), state.policy)
    model = export_policy(policy, state.norm, cfg.model, ["<unknown>", "go"], 4, "v000003")
    assert [i.name for i in model.graph.input] == ["joint_pos", "task_id", "noise", *policy_io.RTC_INPUTS]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["cameras"] == "[]" and json.loads(meta["joint_names"]) == list(joints)
    q = rng.normal(size=(4, 3)).astype(np.float32)
    task = np.array([0, 1, 1, 0], np.int64)
    noise = rng.normal(size=(4, 5, 3)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = sess.run(
        ["actions"], {"joint_pos": q, "task_id": task, "noise": noise, **policy_io.rtc_feeds(5, 3, 4)}
    )
    want = agent.act(state.replace(policy=policy), None, q, task.astype(np.int32), noise, steps=4)
    assert got.shape == (4, 5, 3) and np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_export_refuses_a_model_with_extra_state_vectors():
    cfg = ModelConfig(state_names=("object_pose",), state_dims=(7,))
    with pytest.raises(ValueError, match=r"extra state vectors \('object_pose',\)"):
        policy_sampler({}, {}, cfg, flow_steps=3)


def test_configs_saved_before_joint_and_camera_names_load_as_the_g1():
    """Checkpoints wrote model.num_joints / num_cameras before the model named its joints and cameras."""
    assert from_dict({"model": {"num_joints": 16, "num_cameras": 3}}).model == ModelConfig()
    with pytest.raises(ValueError, match="num_joints=7"):
        from_dict({"model": {"num_joints": 7, "num_cameras": 3}})
