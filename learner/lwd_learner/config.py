"""Frozen dataclass configs of the learner; defaults follow METHOD.md (paper hyperparameters)
except sizes, which are small enough to train on a 2-core CPU."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lwd_description.robot import CAMERA_NAMES, CHUNK_HORIZON, GRIPPER_JOINTS, JOINT_NAMES, NUM_JOINTS


@dataclass(frozen=True)
class EncoderConfig:
    """Observation encoder. `kind` selects a registered encoder (networks.ENCODERS)."""

    kind: str = "conv"
    image_size: tuple[int, int] = (64, 64)
    conv_channels: tuple[int, ...] = (16, 32, 32)
    # "mean": global mean pool per channel (what an object looks like, not where it is);
    # "spatial": mean pool plus spatial-softmax keypoints (x, y per channel).
    pool: Literal["mean", "spatial"] = "mean"
    joint_hidden: int = 64
    text_kind: str = "vocab"  # registered in networks.TEXT_ENCODERS
    vocab_capacity: int = 64  # room for instructions that appear online
    task_dim: int = 32
    out_dim: int = 128


@dataclass(frozen=True)
class PolicyConfig:
    hidden: tuple[int, ...] = (512, 512, 512)
    time_features: int = 16
    # The deployed sampler starts its flow from noise x this scale (inside the exported graph, so
    # robots, evaluation and `Agent.act` agree). 1 samples the learned distribution; 0 starts every
    # chunk from the origin: the same state gives the same chunk, and on can_to_bin that lifted BC
    # from 0.28 to 0.41 success (docs/learner.md, "Deployed sampling"). Training is unaffected.
    noise_scale: float = 0.0


@dataclass(frozen=True)
class CriticConfig:
    hidden: tuple[int, ...] = (256, 256)
    action_dim: int = 64  # attention-pooled action-chunk encoding width
    num_atoms: int = 201
    v_min: float = -0.1
    v_max: float = 1.1


@dataclass(frozen=True)
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    horizon: int = CHUNK_HORIZON
    num_joints: int = NUM_JOINTS
    # Action chunks relative to the joint positions they start from (arm joints; grippers stay
    # absolute), as openpi does: the policy predicts motion, not where in joint space it is.
    relative_actions: bool = False
    num_cameras: int = len(CAMERA_NAMES)


def relative_action_mask(cfg: ModelConfig) -> np.ndarray:
    """[J] 1 where a chunk's targets are taken relative to the current joint position, else 0
    (all 0 with absolute actions; grippers are always absolute)."""
    if not cfg.relative_actions:
        return np.zeros(cfg.num_joints, np.float32)
    return np.array([0.0 if n in GRIPPER_JOINTS else 1.0 for n in JOINT_NAMES], np.float32)


@dataclass(frozen=True)
class DIVLConfig:
    """Value learning. value_kind 'expectile' is the scalar-IQL baseline; adaptive_tau False is the
    constant-tau ablation."""

    value_kind: Literal["divl", "expectile"] = "divl"
    gamma: float = 0.9999
    nstep: int = 1
    tau_base: float = 0.6  # 0.9 online
    alpha: float = 0.3
    tau_min: float = 0.05
    tau_max: float = 0.99
    adaptive_tau: bool = True
    constant_tau: float = 0.52
    expectile: float = 0.7
    ema: float = 0.005
    lr: float = 5e-4


@dataclass(frozen=True)
class QAMConfig:
    lam: float = 2.0
    # "absolute": pi* ∝ pi_beta exp(Q / lam), the paper's (Q in [0, 1] with sparse rewards, so the
    # tilt is at most e^(1/lam)); "q_std": lam in units of the critic's spread over the batch,
    # exp(Q / (lam std Q)), the per-domain temperature of QAM's reference code made automatic.
    lam_scale: Literal["absolute", "q_std"] = "absolute"
    flow_steps: int = 10
    rollout: Literal["policy", "reference"] = "policy"
    lr: float = 2e-5
    weight_decay: float = 1e-4
    bc_lr: float = 3e-4


@dataclass(frozen=True)
class TrainConfig:
    """method: 'lwd' (DIVL + QAM), 'sft' (behaviour cloning only), 'hg_dagger' (behaviour cloning
    on demonstrations, intervention segments and successful online episodes) or 'recap'
    (advantage-conditioned behaviour cloning on all data, lwd_learner.recap)."""

    method: Literal["lwd", "sft", "hg_dagger", "recap"] = "lwd"
    # What BC clones (replay.bc_frames): demonstrations, the whole buffer, or HG-DAgger's selection.
    bc_data: Literal["demos", "all", "hg_dagger"] = "demos"
    batch_size: int = 64
    bc_steps: int = 2000
    rl_steps: int = 2000
    decay_steps: int = 100_000  # cosine schedules' horizon
    log_every: int = 50
    ckpt_every: int = 500
    publish_every: int = 50
    online_ratio: float = 0.5
    seed: int = 0
    # Where minibatches are drawn: "device" keeps the replay resident on the accelerator and
    # samples inside the jitted update (no host round trip); "host" gathers them in numpy
    # (always used with several processes, each drawing its own shard).
    replay: Literal["device", "host"] = "device"
    # Random-shift augmentation of camera frames (pixels, DrQ-style), applied when sampling.
    aug_shift: int = 0
    # Frozen-encoder path: after this many steps the image backbone is frozen, its features
    # are cached per frame, and every later update trains only the heads. None: never freeze.
    encoder_steps: int | None = None
    # RECAP: share of each task's chunks labelled positive, and how often (steps) labels are redone.
    recap_positive_fraction: float = 0.3
    recap_relabel_every: int = 500


@dataclass(frozen=True)
class LearnerConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    divl: DIVLConfig = field(default_factory=DIVLConfig)
    qam: QAMConfig = field(default_factory=QAMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def online_config(cfg: LearnerConfig) -> LearnerConfig:
    """The paper's online changes: tau_base 0.9, n = 1."""
    return dataclasses.replace(cfg, divl=dataclasses.replace(cfg.divl, tau_base=0.9, nstep=1))


def trains_critic(t: TrainConfig) -> bool:
    """Methods that learn a value model (DIVL) alongside behaviour cloning."""
    return t.method in ("lwd", "recap")


def bc_rule(t: TrainConfig) -> str:
    """The BC data rule a run uses: HG-DAgger's selection for method 'hg_dagger', else bc_data."""
    return "hg_dagger" if t.method == "hg_dagger" else t.bc_data


def apply_overrides(cfg: LearnerConfig, assignments: list[str]) -> LearnerConfig:
    """`section.field=value` assignments (e.g. train.encoder_steps=2000, model.encoder.pool=spatial),
    each value parsed as JSON when it parses (numbers, true/false, null, lists), else a string."""
    d = to_dict(cfg)
    for item in assignments:
        key, sep, raw = item.partition("=")
        path = key.strip().split(".")
        node = d
        for part in path[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"unknown config key {key!r}")
            node = node[part]
        if not sep or not isinstance(node, dict) or path[-1] not in node or isinstance(node[path[-1]], dict):
            raise ValueError(f"expected section.field=value with a known field, got {item!r}")
        try:
            node[path[-1]] = json.loads(raw)
        except json.JSONDecodeError:
            node[path[-1]] = raw
    return from_dict(d)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(d: dict) -> LearnerConfig:
    """Inverse of to_dict (tuples restored from JSON lists)."""

    def build(cls, data):
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            v = data[f.name]
            if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING
                                        else None):
                v = build(f.default_factory, v)
            elif isinstance(v, list):
                v = tuple(v)
            kwargs[f.name] = v
        return cls(**kwargs)

    d = {**d, "model": {**d.get("model", {})}}
    if "encoder" in d["model"] and "pool" not in d["model"]["encoder"]:
        # Checkpoints written before the pooling option existed were built with mean pooling.
        d["model"]["encoder"] = {**d["model"]["encoder"], "pool": "mean"}
    return build(LearnerConfig, d)
