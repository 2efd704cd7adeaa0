"""Flax (linen) networks: observation encoder, flow policy, critic with a categorical value head.

Pluggable encoder interface: an observation encoder is a linen Module built from an
`EncoderConfig` whose `__call__(images, joint_pos, task_id) -> [B, D]` takes
    images    uint8   [B, cameras, H, W, 3]  (cameras may be 0, or images None: no cameras)
    joint_pos float32 [B, J + S]  the state vector: joint positions and then any extra state
                                  vectors (ModelConfig.state_names), each normalised by the data
    task_id   int32   [B]      (index into the instruction vocabulary)
Register it in ENCODERS under a name and select it with `EncoderConfig.kind`
(a pretrained VLA backbone is wrapped the same way).
Text encoders (TEXT_ENCODERS, `EncoderConfig.text_kind`) map task ids to vectors.

The ONNX policy is traced from these modules (lwd_learner.export_onnx via jaxpr_onnx), so
any encoder exports whose JAX operations have a conversion rule there; an operation
without one is named at export time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from lwd_learner.config import EncoderConfig, ModelConfig, PolicyConfig


class VocabTaskEmbedding(nn.Module):
    """Fixed task vocabulary: one learned vector per instruction (index 0 = unknown)."""

    cfg: EncoderConfig

    @nn.compact
    def __call__(self, task_id):
        return nn.Embed(self.cfg.vocab_capacity, self.cfg.task_dim, name="table")(task_id)


class ModuleFactory(Protocol):
    """How a registry builds its module: the config, and the submodule's name in its parent."""

    def __call__(self, cfg: EncoderConfig, *, name: str) -> nn.Module: ...


TEXT_ENCODERS: dict[str, ModuleFactory] = {"vocab": VocabTaskEmbedding}


def spatial_keypoints(x):
    """Spatial softmax: per channel of x [N, h, w, C], the expected (x, y) position in [-1, 1] -> [N, 2C].

    Global mean pooling keeps *what* a camera sees but not *where*; a policy that must reach an
    object placed at random needs the where (docs/learner.md, "Encoder")."""
    n, h, w, c = x.shape
    logits = jnp.transpose(x, (0, 3, 1, 2)).reshape(n, c, h * w)
    att = nn.softmax(logits, axis=-1)
    return jnp.einsum("ncp,pk->nck", att, keypoint_grid(h, w)).reshape(n, 2 * c)


def keypoint_grid(h: int, w: int) -> np.ndarray:
    """[h*w, 2] pixel-centre coordinates (x, y) in [-1, 1], row-major like a flattened feature map."""
    ys, xs = np.meshgrid(np.linspace(-1.0, 1.0, h), np.linspace(-1.0, 1.0, w), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float32)


def image_feature_dim(cfg: EncoderConfig) -> int:
    """Width of one camera's image features: mean-pooled channels, plus 2 keypoint coordinates
    per channel with pool 'spatial'."""
    c = cfg.conv_channels[-1]
    return c * (3 if cfg.pool == "spatial" else 1)


class ConvObsEncoder(nn.Module):
    """Small shared conv tower per camera (the image *backbone*), pooled, fused with the state
    vector's (joints and extra state vectors) and the task's features. `images` is either uint8
    frames [B, cams, H, W, 3] or the backbone's precomputed features float32
    [B, cams * image_feature_dim] (the frozen-encoder path); with `features_only=True` the call
    returns those backbone features. With no cameras (`images` None or [B, 0, ...]) there is no
    backbone: the encoder is state-only (state MLP and task embedding)."""

    cfg: EncoderConfig

    @nn.compact
    def __call__(self, images, joint_pos=None, task_id=None, features_only: bool = False):
        if images is None or (images.dtype == jnp.uint8 and images.shape[1] == 0):
            b = (joint_pos if images is None else images).shape[0]
            x = None if images is None else jnp.zeros((b, 0), jnp.float32)
            if features_only:
                return x
        elif images.dtype == jnp.uint8:
            b, c = images.shape[:2]
            x = images.astype(jnp.float32).reshape((b * c, *images.shape[2:])) / 255.0
            for i, ch in enumerate(self.cfg.conv_channels):
                x = nn.relu(nn.Conv(ch, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), name=f"conv{i}")(x))
            pooled = jnp.mean(x, axis=(1, 2))
            if self.cfg.pool == "spatial":
                pooled = jnp.concatenate([pooled, spatial_keypoints(x)], axis=-1)
            x = pooled.reshape(b, c * pooled.shape[-1])
        else:
            x = images
        if features_only:
            return x
        j = nn.silu(nn.Dense(self.cfg.joint_hidden, name="joint")(joint_pos))
        t = TEXT_ENCODERS[self.cfg.text_kind](self.cfg, name="text")(task_id)
        parts = [j, t] if x is None or x.shape[-1] == 0 else [x, j, t]
        z = nn.Dense(self.cfg.out_dim, name="fuse")(jnp.concatenate(parts, axis=-1))
        return nn.LayerNorm(name="norm")(z)


ENCODERS: dict[str, ModuleFactory] = {"conv": ConvObsEncoder}


def make_encoder(cfg: EncoderConfig, name: str) -> nn.Module:
    if cfg.kind not in ENCODERS:
        raise ValueError(f"unknown encoder kind {cfg.kind!r}; registered: {sorted(ENCODERS)}")
    return ENCODERS[cfg.kind](cfg, name=name)


def time_features(w, n: int):
    """Sinusoidal features of the flow time w [B] -> [B, n]."""
    freqs = np.exp(np.linspace(0.0, np.log(100.0), n // 2)).astype(np.float32)
    ang = w[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(ang), jnp.cos(ang)], axis=-1)


class FlowHead(nn.Module):
    """Vector field f(z, a^w, w) over the flattened action chunk."""

    cfg: PolicyConfig
    action_shape: tuple[int, ...]

    @nn.compact
    def __call__(self, z, a, w):
        b = a.shape[0]
        x = jnp.concatenate([z, a.reshape(b, -1), time_features(w, self.cfg.time_features)], axis=-1)
        for i, hdim in enumerate(self.cfg.hidden):
            x = nn.silu(nn.Dense(hdim, name=f"dense{i}")(x))
        out = nn.Dense(int(np.prod(self.action_shape)), name="out", kernel_init=nn.initializers.zeros)(x)
        return out.reshape(b, *self.action_shape)


class FlowPolicy(nn.Module):
    """Flow-matching policy: encoder + vector field; `encode` once, `field` per flow step."""

    cfg: ModelConfig

    if TYPE_CHECKING:  # applied without `mutable` here, so apply returns the method's output alone

        def apply(self, variables: Any, *args: Any, **kwargs: Any) -> Any: ...

    def setup(self):
        self.encoder = make_encoder(self.cfg.encoder, name="encoder")
        self.head = FlowHead(self.cfg.policy, (self.cfg.horizon, self.cfg.num_joints), name="head")

    def encode(self, images, joint_pos, task_id):
        return self.encoder(images, joint_pos, task_id)

    def image_features(self, images):
        """The backbone's per-frame features (what the frozen-encoder path caches)."""
        return self.encoder(images, features_only=True)

    def field(self, z, a, w):
        return self.head(z, a, w)

    def __call__(self, images, joint_pos, task_id, a, w):
        return self.field(self.encode(images, joint_pos, task_id), a, w)


class AttentionPool(nn.Module):
    """Attention pooling of the action chunk [B, H, J] with one learned query -> [B, D]."""

    dim: int

    @nn.compact
    def __call__(self, a):
        tokens = nn.Dense(self.dim, name="embed")(a)
        tokens = tokens + self.param("pos", nn.initializers.normal(0.02), (a.shape[1], self.dim))
        tokens = nn.silu(tokens)
        k = nn.Dense(self.dim, name="key")(tokens)
        v = nn.Dense(self.dim, name="value")(tokens)
        q = self.param("query", nn.initializers.normal(0.02), (self.dim,))
        scores = jnp.einsum("bhd,d->bh", k, q) / np.sqrt(self.dim)
        att = nn.softmax(scores, axis=-1)
        return jnp.einsum("bh,bhd->bd", att, v)


def _mlp(x, hidden, out, name):
    for i, hdim in enumerate(hidden):
        x = nn.silu(nn.LayerNorm(name=f"{name}_ln{i}")(nn.Dense(hdim, name=f"{name}_dense{i}")(x)))
    return nn.Dense(out, name=f"{name}_out")(x)


class CriticValue(nn.Module):
    """Twin Q heads on (state encoding, pooled action encoding) and a categorical value head
    (plus a scalar head for the expectile baseline), all on one shared encoder."""

    cfg: ModelConfig

    if TYPE_CHECKING:  # applied without `mutable` here, so apply returns the method's output alone

        def apply(self, variables: Any, *args: Any, **kwargs: Any) -> Any: ...

    def setup(self):
        self.encoder = make_encoder(self.cfg.encoder, name="encoder")
        self.pool = AttentionPool(self.cfg.critic.action_dim, name="pool")
        self.q_heads = [_Head(self.cfg.critic.hidden, 1, name=f"q{i}") for i in range(2)]
        self.v_dist = _Head(self.cfg.critic.hidden, self.cfg.critic.num_atoms, name="v_dist")
        self.v_scalar = _Head(self.cfg.critic.hidden, 1, name="v_scalar")

    def encode(self, images, joint_pos, task_id):
        return self.encoder(images, joint_pos, task_id)

    def q_from_z(self, z, a):
        x = jnp.concatenate([z, self.pool(a)], axis=-1)
        return jnp.stack([h(x)[:, 0] for h in self.q_heads])  # [2, B]

    def value_logits(self, z):
        return self.v_dist(z)

    def value_scalar(self, z):
        return self.v_scalar(z)[:, 0]

    def __call__(self, images, joint_pos, task_id, a):
        z = self.encode(images, joint_pos, task_id)
        return self.q_from_z(z, a), self.value_logits(z), self.value_scalar(z)


class _Head(nn.Module):
    hidden: tuple[int, ...]
    out: int

    @nn.compact
    def __call__(self, x):
        return _mlp(x, self.hidden, self.out, "mlp")
