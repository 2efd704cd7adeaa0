"""The learner's one config source: frozen dataclasses (defaults follow METHOD.md's hyperparameters,
sizes small enough for a 2-core CPU) and named presets of them.

Every field carries a docstring because `python -m lwd_learner.cli ... --help` prints them (tyro
reads them, as openpi's configs are read); a preset is a whole `LearnerConfig`, so what a run used
is one name plus the flags it overrode, and the checkpoint records the resolved config. This module
imports no CLI library: the learner runs without one (e.g. from a source copy on a GPU machine).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lwd_description.robot import (
    CAMERA_NAMES,
    CHUNK_HORIZON,
    CONTROL_HZ,
    GRIPPER_JOINTS,
    JOINT_NAMES,
    RobotDescription,
)


@dataclass(frozen=True)
class EncoderConfig:
    """Observation encoder: cameras, joint positions and the instruction to one feature vector."""

    kind: str = "conv"
    """Registered image encoder (networks.ENCODERS); exports to ONNX if its ops have jaxpr_onnx rules."""
    image_size: tuple[int, int] = (64, 64)
    """Height and width the camera frames are decoded to (the exported policy expects this size)."""
    conv_channels: tuple[int, ...] = (16, 32, 32)
    """Channels of each conv layer of the image backbone."""
    pool: Literal["mean", "spatial"] = "mean"
    """Pooling of the conv features: "mean", a global mean per channel (what an object looks like,
    not where it is); "spatial", the mean plus spatial-softmax keypoints (x, y per channel)."""
    joint_hidden: int = 64
    """Width of the joint-position embedding."""
    text_kind: str = "vocab"
    """Registered instruction encoder (networks.TEXT_ENCODERS); exports like the image encoder."""
    vocab_capacity: int = 64
    """Instruction slots: room for instructions that first appear online."""
    task_dim: int = 32
    """Width of the instruction embedding."""
    out_dim: int = 128
    """Width of the fused observation feature."""


@dataclass(frozen=True)
class PolicyConfig:
    """Flow-matching policy head over the whole action chunk."""

    hidden: tuple[int, ...] = (512, 512, 512)
    """Hidden widths of the flow head's MLP."""
    time_features: int = 16
    """Sinusoidal features of the flow time w."""
    noise_scale: float = 0.0
    """The deployed sampler starts its flow from noise x this scale (inside the exported graph, so
    robots, evaluation and `BaseAgent.act` agree). 1 samples the learned distribution; 0 starts every
    chunk from the origin: the same state gives the same chunk, and on can_to_bin that lifted BC
    from 0.28 to 0.41 success (docs/learner.md, "Deployed sampling"). Training is unaffected."""
    rtc_max_guidance: float = 5.0
    """Real-time chunking's maximum guidance weight beta (Black et al. 2025 use 5): how hard the
    deployed sampler pulls a new chunk onto the rows of the previous one still to be executed
    (`flow.rtc_sample`; docs/learner.md, "Deployed sampling"). Baked into the exported graph and
    written to its metadata; training is unaffected."""


@dataclass(frozen=True)
class CriticConfig:
    """Critic: two Q heads and the categorical (distributional) value head."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the Q and value heads."""
    action_dim: int = 64
    """Width of the attention-pooled action-chunk encoding."""
    num_atoms: int = 201
    """Atoms of the categorical value distribution."""
    v_min: float = -0.1
    """Lowest atom (returns are in [0, 1] with sparse rewards)."""
    v_max: float = 1.1
    """Highest atom."""


@dataclass(frozen=True)
class ModelConfig:
    """Network shapes; a checkpoint's model section must match its weights."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """Observation encoder."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Policy head."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """Critic heads."""
    horizon: int = CHUNK_HORIZON
    """Action-chunk length H (steps at control_hz)."""
    control_hz: float = CONTROL_HZ
    """Rate the chunk's rows are executed at (written into the exported policy; an actor at another
    rate refuses it)."""
    relative_actions: bool = False
    """Action chunks relative to the joint positions they start from (arm joints; grippers stay
    absolute), as openpi does: the policy predicts motion, not where in joint space it is."""
    joint_names: tuple[str, ...] = JOINT_NAMES
    """The robot's joints, in the order of the joint-position input and of every action row (the
    G1's two 7-DoF arms and two grippers by default; a store's episodes set it, `meta.joint_names`)."""
    gripper_joints: tuple[str, ...] = GRIPPER_JOINTS
    """Joints that stay absolute with relative_actions (names not in joint_names are ignored)."""
    cameras: tuple[str, ...] = CAMERA_NAMES
    """Camera names, in the order of the image input (0..N; none: a state-only encoder; a store's
    episodes set it, `meta.cameras`)."""
    state_names: tuple[str, ...] = ()
    """Named state vectors besides the joint positions (e.g. object_pose), encoded with them
    (array API, lwd_learner.arrays; an exported policy takes none)."""
    state_dims: tuple[int, ...] = ()
    """Width of each of state_names' vectors (same order)."""

    def __post_init__(self) -> None:
        if len(self.state_names) != len(self.state_dims):
            raise ValueError(
                f"model.state_names {self.state_names} and model.state_dims {self.state_dims} differ in length"
            )
        for what, names in (("joint_names", self.joint_names), ("cameras", self.cameras)):
            if len(set(names)) != len(names):
                raise ValueError(f"model.{what} repeats a name: {names}")
        if not self.joint_names:
            raise ValueError("model.joint_names is empty: actions need at least one joint")

    @property
    def num_joints(self) -> int:
        """Joint commands per step: len(joint_names)."""
        return len(self.joint_names)

    @property
    def num_cameras(self) -> int:
        """Cameras per observation: len(cameras)."""
        return len(self.cameras)

    @property
    def state_dim(self) -> int:
        """Width of the extra state vectors together: sum(state_dims)."""
        return int(sum(self.state_dims))


def robot_model(m: ModelConfig, robot: RobotDescription) -> ModelConfig:
    """`m` for a robot description (lwd_description): its joints, grippers, cameras, control rate and
    chunk horizon; the network sizes stay `m`'s."""
    return dataclasses.replace(
        m,
        joint_names=robot.joint_names,
        gripper_joints=robot.gripper_joints,
        cameras=robot.camera_names,
        control_hz=robot.control_hz,
        horizon=robot.chunk_horizon,
    )


def relative_action_mask(cfg: ModelConfig) -> np.ndarray:
    """[J] 1 where a chunk's targets are taken relative to the current joint position, else 0
    (all 0 with absolute actions; grippers are always absolute)."""
    if not cfg.relative_actions:
        return np.zeros(cfg.num_joints, np.float32)
    return np.array([0.0 if n in cfg.gripper_joints else 1.0 for n in cfg.joint_names], np.float32)


@dataclass(frozen=True)
class DIVLConfig:
    """Distributional value learning (DIVL); value_kind "expectile" is the scalar-IQL baseline,
    adaptive_tau False the constant-tau ablation."""

    value_kind: Literal["divl", "expectile"] = "divl"
    """Value model: "divl", a categorical value read at an adaptive quantile; "expectile", scalar IQL."""
    gamma: float = 0.9999
    """Per-step discount."""
    nstep: int = 1
    """Chunks n in the TD target (the paper: 10 offline on long-horizon tasks, else 1; 1 online)."""
    takeover: Literal["episode", "failure"] = "episode"
    """How an operator's takeover is labelled (`replay.episode_transitions`). "episode" (the
    paper's): every step carries the episode's outcome, the policy's own steps before a rescue too.
    "failure" (RLIF-style): the policy's segment before a takeover ends at the takeover as a failure
    (done, return 0); the operator's steps keep the episode's outcome. With an operator who rescues
    most episodes to success, "episode" saturates the critic near 1 whatever the policy did before
    the rescue; "failure" makes the takeover itself the policy's failure signal (docs/learner.md)."""
    tau_base: float = 0.6
    """Quantile before the entropy correction: tau = clip(tau_base - alpha H(s)) (0.9 online)."""
    alpha: float = 0.3
    """Weight of the value distribution's normalised entropy in tau."""
    tau_min: float = 0.05
    """Lower clip of tau (not given by the paper)."""
    tau_max: float = 0.99
    """Upper clip of tau (not given by the paper)."""
    adaptive_tau: bool = True
    """Entropy-adaptive tau; off: every state reads the value at constant_tau (ablation)."""
    constant_tau: float = 0.52
    """The quantile used when adaptive_tau is off."""
    expectile: float = 0.7
    """Expectile of the scalar-IQL baseline (value_kind "expectile")."""
    ema: float = 0.005
    """Polyak rate of the target critic."""
    lr: float = 5e-4
    """Critic learning rate (cosine-decayed over train.decay_steps)."""


@dataclass(frozen=True)
class QAMConfig:
    """QAM policy extraction: the flow policy regressed onto pi_beta exp(Q / lam) via the adjoint."""

    lam: float = 2.0
    """Temperature lambda of the tilt exp(Q / lambda)."""
    lam_scale: Literal["absolute", "q_std", "grad_rms"] = "absolute"
    """Scale of lam: "absolute", pi* ∝ pi_beta exp(Q / lam), the paper's (Q in [0, 1] with sparse rewards, so the
    tilt is at most e^(1/lam)); "q_std": lam in units of the critic's spread over the batch,
    exp(Q / (lam std Q)), the per-domain temperature of QAM's reference code made automatic;
    "grad_rms": lam in units of the RMS of the critic's action gradient at the batch's sampled
    chunks, so the terminal adjoint has RMS 1 / lam and how far QAM moves the policy does not
    depend on how steep the critic happens to be (logged as lam_effective). On the toy task an
    absolute lam small enough to move the policy was unstable: the same lam gained +0.35 after 400
    steps and lost everything (0.10) by 800 on one seed, and lost 0.03 at 400 on another
    (tests/learner/test_learning.py)."""
    flow_steps: int = 10
    """Euler steps K of the sampler, the memoryless rollout and the exported policy."""
    rollout: Literal["policy", "reference"] = "policy"
    """Which flow the QAM rollouts follow: the current policy, or the frozen BC reference (the
    paper's text)."""
    reference: Literal["frozen", "bc_ema"] = "frozen"
    """The reference pi_beta of the tilt: "frozen", the behaviour-cloned checkpoint (the paper's);
    "bc_ema", an EMA of a flow that keeps behaviour cloning during RL on batches of the BC pool
    (train.bc_data; "hg_dagger" clones the operator's corrections and the autonomous successes), as
    QAM's reference code keeps a jointly trained BC flow: the corrections then reach the policy
    directly, not only through Q (docs/learner.md, "Reference")."""
    reference_ema: float = 0.01
    """Polyak rate of the "bc_ema" reference toward its BC-trained flow."""
    reference_warmup: int = 100
    """Steps over which the "bc_ema" cloning flow's learning rate rises from 0 to bc_lr."""
    lr: float = 2e-5
    """Policy learning rate during QAM (AdamW, cosine-decayed)."""
    weight_decay: float = 1e-4
    """AdamW weight decay during QAM."""
    bc_lr: float = 3e-4
    """Policy learning rate during behaviour cloning (Adam, cosine-decayed)."""


@dataclass(frozen=True)
class TrainConfig:
    """Run recipe: the method, budgets, replay and logging."""

    method: Literal["lwd", "sft", "hg_dagger", "recap"] = "lwd"
    """Method, the agent that trains (lwd_learner.agents.AGENTS, one module each): "lwd", DIVL + QAM;
    "sft": behaviour cloning only; "hg_dagger": behaviour cloning on demonstrations, intervention
    segments and successful online episodes; "recap": advantage-conditioned behaviour cloning on all
    data (lwd_learner.recap)."""
    bc_data: Literal["demos", "all", "hg_dagger"] = "demos"
    """What BC clones (replay.bc_frames): demonstrations, the whole buffer, or HG-DAgger's selection."""
    batch_size: int = 64
    """Minibatch size (CPU-sized; the paper's is 256)."""
    bc_steps: int = 2000
    """Behaviour-cloning steps before the RL phase (the critic learns alongside with "lwd")."""
    rl_steps: int = 2000
    """DIVL + QAM steps after BC (offline; methods without a critic skip them)."""
    decay_steps: int = 100_000
    """Horizon of the cosine learning-rate schedules."""
    log_every: int = 50
    """Steps between lines of metrics.jsonl."""
    ckpt_every: int = 500
    """Steps between checkpoints (one is also written on exit and on SIGTERM)."""
    publish_every: int = 50
    """Online: steps between published policies."""
    online_ratio: float = 0.5
    """Online: share of each minibatch drawn from the online buffer (1:1 mixing)."""
    seed: int = 0
    """Seed of the initialisation and the minibatch streams."""
    replay: Literal["device", "host"] = "device"
    """Where minibatches are drawn: "device" keeps the replay resident on the accelerator and
    samples inside the jitted update (no host round trip); "host" gathers them in numpy (always used
    with several processes, each drawing its own shard)."""
    aug_shift: int = 0
    """Random-shift augmentation of camera frames (pixels, DrQ-style), applied when sampling."""
    encoder_steps: int | None = None
    """Frozen-encoder path: after this many steps the image backbone is frozen, its features are
    cached per frame, and every later update trains only the heads. None: never freeze."""
    recap_positive_fraction: float = 0.3
    """RECAP: share of each task's chunks labelled positive."""
    recap_relabel_every: int = 500
    """RECAP: steps between recomputed advantage labels."""


@dataclass(frozen=True)
class LearnerConfig:
    """Everything a learner run is configured by; saved with every checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Network shapes."""
    divl: DIVLConfig = field(default_factory=DIVLConfig)
    """Value learning."""
    qam: QAMConfig = field(default_factory=QAMConfig)
    """Policy extraction."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Run recipe and budgets."""


def online_config(cfg: LearnerConfig) -> LearnerConfig:
    """The paper's online changes: tau_base 0.9, n = 1."""
    return dataclasses.replace(cfg, divl=dataclasses.replace(cfg.divl, tau_base=0.9, nstep=1))


def trains_critic(t: TrainConfig) -> bool:
    """Methods that learn a value model (DIVL) alongside behaviour cloning."""
    return t.method in ("lwd", "recap")


def critic_needs_own_batch(t: TrainConfig) -> bool:
    """During BC, the critic learns from a batch of the whole buffer beside the BC batch: the BC pool
    (bc_data other than "all") is a selection of it, mostly successes, and a critic shown only those
    saturates at 1 (docs/results/diagnostics.md)."""
    return trains_critic(t) and bc_rule(t) != "all"


def bc_rule(t: TrainConfig) -> str:
    """The BC data rule a run uses: HG-DAgger's selection for method 'hg_dagger', else bc_data."""
    return "hg_dagger" if t.method == "hg_dagger" else t.bc_data


def merge(cfg: LearnerConfig, partial: dict[str, Any]) -> LearnerConfig:
    """cfg with the fields of a nested partial mapping replaced (e.g. a JSON config file's
    {"train": {"bc_steps": 5000}}); an unknown section or field is a ValueError naming it, so a typo
    cannot be silently ignored."""
    d = to_dict(cfg)

    def walk(node: dict, part: dict, prefix: str) -> None:
        if not isinstance(part, dict):
            raise ValueError(f"config key {prefix!r} is a section; expected a mapping, got {part!r}")
        for k, v in part.items():
            key = f"{prefix}.{k}" if prefix else k
            if k not in node:
                raise ValueError(f"unknown config key {key!r}")
            if isinstance(node[k], dict):
                walk(node[k], v, key)
            else:
                node[k] = v

    walk(d, partial, "")
    return from_dict(d)


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
    """Nested plain dict of a config (what checkpoints store as JSON)."""
    return dataclasses.asdict(cfg)


def from_dict(d: dict) -> LearnerConfig:
    """Inverse of to_dict (tuples restored from JSON lists)."""

    def build(cls, data):
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            v = data[f.name]
            if dataclasses.is_dataclass(
                f.default_factory if f.default_factory is not dataclasses.MISSING else None
            ):
                v = build(f.default_factory, v)
            elif isinstance(v, list):
                v = tuple(v)
            kwargs[f.name] = v
        return cls(**kwargs)

    d = {**d, "model": {**d.get("model", {})}}
    legacy_joints = d["model"].pop("num_joints", None)  # configs before joint_names / cameras
    legacy_cameras = d["model"].pop("num_cameras", None)
    if legacy_joints not in (None, len(d["model"].get("joint_names", JOINT_NAMES))) or legacy_cameras not in (
        None,
        len(d["model"].get("cameras", CAMERA_NAMES)),
    ):
        raise ValueError(
            f"config has num_joints={legacy_joints}, num_cameras={legacy_cameras} but no joint_names/cameras "
            "naming them (set model.joint_names and model.cameras)"
        )
    if "encoder" in d["model"] and "pool" not in d["model"]["encoder"]:
        # Checkpoints written before the pooling option existed were built with mean pooling.
        d["model"]["encoder"] = {**d["model"]["encoder"], "pool": "mean"}
    return build(LearnerConfig, d)


def _with(cfg: LearnerConfig, **sections: dict[str, Any]) -> LearnerConfig:
    """cfg with some fields of some sections replaced, e.g. _with(cfg, train={"seed": 1})."""
    return merge(cfg, sections)


_DEFAULT = LearnerConfig()
_TINY_MODEL = {
    "encoder": {
        "image_size": (16, 16),
        "conv_channels": (4,),
        "joint_hidden": 16,
        "task_dim": 4,
        "out_dim": 16,
    },
    "policy": {"hidden": (32,)},
    "critic": {"hidden": (16,), "action_dim": 16},
}

# Named configs (as openpi names its training configs): `lwd_learner.cli offline --preset NAME`.
# name -> (what it is for, the config). Flags given with a preset override its fields.
PRESETS: dict[str, tuple[str, LearnerConfig]] = {
    "default": (
        "the dataclass defaults: METHOD.md's hyperparameters, a CPU-sized model and batch 64, "
        "2000 BC + 2000 DIVL+QAM steps, the image encoder trained throughout",
        _DEFAULT,
    ),
    "cpu": (
        "a 2-core CPU: batch 64, the encoder trained end to end for 500 steps then frozen (the heads "
        "train on cached features, BC ~20x faster), 20000 BC + 2000 DIVL+QAM steps (~6 min idle)",
        _with(_DEFAULT, train={"encoder_steps": 500, "bc_steps": 20_000, "rl_steps": 2_000}),
    ),
    "gpu": (
        "one H200 (../shared/GPU.md): the paper's batch 256, encoder trained throughout, 15000 BC + "
        "10000 DIVL+QAM steps (GPU.md's run), a checkpoint every 2000 steps, an online policy every "
        "1000 (~4 s at ~260 updates/s)",
        _with(
            _DEFAULT,
            train={
                "batch_size": 256,
                "bc_steps": 15_000,
                "rl_steps": 10_000,
                "log_every": 100,
                "ckpt_every": 2_000,
                "publish_every": 1_000,
            },
        ),
    ),
    "fleet": (
        "the fleet bootstrap's offline pretraining (`./lwd fleet`, lwd_actor.bringup.bootstrap): 500 encoder "
        "steps, then frozen, 8000 BC + 1000 DIVL+QAM steps",
        _with(_DEFAULT, train={"encoder_steps": 500, "bc_steps": 8_000, "rl_steps": 1_000}),
    ),
    "smoke": (
        "a dry run of a script at toy scale (seconds on a CPU, as ../shared/GPU.md asks before a GPU "
        "run): a tiny model at 16x16, 3 flow steps, batch 8, 20 BC + 10 DIVL+QAM steps",
        _with(
            _DEFAULT,
            model=_TINY_MODEL,
            qam={"flow_steps": 3},
            train={
                "batch_size": 8,
                "bc_steps": 20,
                "rl_steps": 10,
                "log_every": 5,
                "ckpt_every": 10,
                "publish_every": 5,
            },
        ),
    ),
}


def preset(name: str) -> LearnerConfig:
    """The named preset's config; ValueError naming the presets for an unknown name."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name][1]
