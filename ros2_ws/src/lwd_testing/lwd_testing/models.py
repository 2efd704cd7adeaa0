"""Small real ONNX policies that obey `lwd_common.policy_io`, for tests, demos and the benchmark.

Each is a tiny learner policy (lwd_learner FlowPolicy: conv encoder, flow head, relative actions)
exported by the learner's own exporter (`lwd_learner.export_onnx`), so the actor's tests run the
graph robots get, not a hand-written look-alike. Its parameters are set so its output is known:

actions[b, k] = joint_pos[b] * relative + (k + 1) * drift + noise_scale * noise[b, k] + O(image_gain)

with `relative` 1 for arm joints and 0 for the grippers (grippers are absolute, as in the learner):
the flow head's output bias is the drift ramp and its kernel, image_gain times a random matrix, makes
the chunk depend (slightly) on the images and the instruction. `conv_channels` sets the cost: the
default policy (`default_policy`) takes a few ms on one CPU core. Builders for contract-breaking
models let tests check that the actor refuses them. `robot` (a `RobotDescription`, a name or a YAML
path; default the G1) sets the joints, cameras, horizon and control rate: the policy's inputs,
outputs and metadata are that robot's (`lwd_common.policy_io`). Needs the learner (JAX) installed.

    python -m lwd_testing.models out.onnx [--version v1] [--image-size 96] [--channels 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from lwd_common import policy_io
from lwd_description.robot import (
    CAMERA_NAMES,
    CHUNK_HORIZON,
    CONTROL_HZ,
    JOINT_NAMES,
    RobotDescription,
    load_robot,
)


def _init_leaf(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Random weights in numpy from the parameter shapes (flax's own init would compile ~80 XLA ops,
    ~8 s of a test run on 2 cores)."""
    if name == "bias":
        return np.zeros(shape, np.float32)
    if name == "scale":
        return np.ones(shape, np.float32)
    fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def flow_policy_shapes(cfg):
    """The parameter shapes of an lwd_learner FlowPolicy of ModelConfig `cfg` (no XLA compile)."""
    import jax
    import jax.numpy as jnp

    from lwd_learner.networks import FlowPolicy

    spec = jax.ShapeDtypeStruct
    return jax.eval_shape(
        FlowPolicy(cfg).init,
        spec((2,), jnp.uint32),
        spec((1, cfg.num_cameras, *cfg.encoder.image_size, 3), jnp.uint8),
        spec((1, cfg.num_joints + cfg.state_dim), jnp.float32),
        spec((1,), jnp.int32),
        spec((1, cfg.horizon, cfg.num_joints), jnp.float32),
        spec((1,), jnp.float32),
    )


def random_flow_params(cfg, seed: int = 0, jitter: float = 0.05) -> dict:
    """Random FlowPolicy parameters of ModelConfig `cfg`, drawn in numpy from their shapes (flax's
    init compiles XLA ops per shape: seconds on two cores): fan-in scaled kernels, unit LayerNorm
    scales, plus `jitter` noise on every leaf, so biases and the (zero-initialised) output layer are
    not zero and the flow's field is not either."""
    import jax

    rng = np.random.default_rng(seed)

    def leaf(path, x):
        base = _init_leaf(rng, path[-1].key, x.shape).astype(np.float64)
        return (base + jitter * rng.standard_normal(x.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, flow_policy_shapes(cfg))


@lru_cache(maxsize=32)
def _policy_bytes(
    version: str,
    image_size: int,
    conv_channels: int,
    drift: float,
    noise_scale: float,
    image_gain: float,
    instructions: tuple[str, ...],
    noise_horizon: int,
    action_joints: int,
    nan_actions: bool,
    seed: int,
    joint_names: tuple[str, ...] = JOINT_NAMES,
    cameras: tuple[str, ...] = CAMERA_NAMES,
    grippers: tuple[str, ...] = (),
    horizon: int = CHUNK_HORIZON,
    control_hz: float = CONTROL_HZ,
) -> bytes:
    """The serialised model (cached: the actor's tests build the same few policies many times)."""
    import jax  # imported here so that importing this module stays cheap
    import jax.numpy as jnp

    from lwd_learner.config import EncoderConfig, ModelConfig, PolicyConfig
    from lwd_learner.export_onnx import policy_sampler, sampler_to_onnx

    if not cameras:
        raise ValueError("lwd_testing.models builds policies with cameras only")
    g1 = joint_names == JOINT_NAMES and cameras == CAMERA_NAMES and horizon == CHUNK_HORIZON
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    if "joint_names" in fields:  # the learner's model names the robot's joints and cameras
        robot_fields: dict = {"joint_names": joint_names, "gripper_joints": grippers, "cameras": cameras}
        learner_relative = True
    else:  # a learner whose relative-action mask is the G1's: another robot applies its own mask
        robot_fields = {"num_joints": len(joint_names), "num_cameras": len(cameras)}
        learner_relative = g1
    rel_mask = np.array([0.0 if n in grippers else 1.0 for n in joint_names], np.float32)
    cfg = ModelConfig(
        encoder=EncoderConfig(
            image_size=(image_size, image_size),
            conv_channels=(conv_channels, conv_channels),
            joint_hidden=8,
            task_dim=4,
            vocab_capacity=max(8, len(instructions)),
            out_dim=16,
        ),
        policy=PolicyConfig(hidden=(16,), time_features=4, noise_scale=noise_scale),
        relative_actions=learner_relative,
        horizon=horizon,
        **robot_fields,
    )
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map_with_path(
        lambda path, leaf: _init_leaf(rng, path[-1].key, leaf.shape), flow_policy_shapes(cfg)
    )
    out = params["params"]["head"]["out"]
    ramp = (
        np.arange(1, cfg.horizon + 1, dtype=np.float32)[:, None] * drift * np.ones(cfg.num_joints, np.float32)
    )
    out["kernel"] = (image_gain * rng.standard_normal(out["kernel"].shape)).astype(np.float32)
    out["bias"] = ramp.reshape(-1)
    zero, one = np.zeros(cfg.num_joints, np.float32), np.ones(cfg.num_joints, np.float32)
    norm = {"joint_mean": zero, "joint_std": one, "action_mean": zero, "action_std": one}
    sample = policy_sampler(params, norm, cfg, flow_steps=1)  # one Euler step of length 1: noise + field

    def sampler(images, joint_pos, task_id, noise):
        if noise_horizon != cfg.horizon:  # contract-breaking: a noise input the flow cannot take as is
            noise = jnp.concatenate([noise] * -(-cfg.horizon // noise_horizon), axis=1)[:, : cfg.horizon]
        actions = sample(images, joint_pos, task_id, noise)
        if not learner_relative:
            actions = actions + joint_pos[:, None, :] * rel_mask
        actions = actions[..., :action_joints]
        return actions * jnp.nan if nan_actions else actions

    model = sampler_to_onnx(sampler, cfg, instructions, 1, version, noise_horizon=noise_horizon, check=False)
    meta = {p.key: p.value for p in model.metadata_props}
    meta[policy_io.META_JOINT_NAMES] = json.dumps(list(joint_names))
    meta[policy_io.META_CAMERAS] = json.dumps(list(cameras))
    meta[policy_io.META_CONTROL_HZ] = f"{control_hz:g}"
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def build_policy(
    path: str | Path,
    version: str = "test-v1",
    image_size: int = 32,
    conv_channels: int = 4,
    drift: float = 0.001,
    noise_scale: float = 0.0,
    image_gain: float = 1e-4,
    instructions: tuple[str, ...] = ("<unknown>", "pick up the cube"),
    noise_horizon: int | None = None,
    action_joints: int | None = None,
    nan_actions: bool = False,
    seed: int = 0,
    robot: RobotDescription | str | None = None,
) -> Path:
    """Write a contract-obeying policy of `robot` (default the G1) to `path`; with odd shapes
    (`noise_horizon`, `action_joints`: default the robot's horizon and joints) or nan, a broken one."""
    desc = robot if isinstance(robot, RobotDescription) else load_robot(robot)
    data = _policy_bytes(
        version,
        image_size,
        conv_channels,
        float(drift),
        float(noise_scale),
        float(image_gain),
        tuple(instructions),
        noise_horizon or desc.chunk_horizon,
        action_joints or desc.num_joints,
        nan_actions,
        seed,
        desc.joint_names,
        desc.camera_names,
        desc.gripper_joints,
        desc.chunk_horizon,
        desc.control_hz,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def default_policy(path: str | Path, version: str = "default-v1") -> Path:
    """A policy of realistic onboard cost (a few ms on one CPU core): 96x96 frames, 32 channels."""
    return build_policy(path, version=version, image_size=96, conv_channels=64, noise_scale=1e-3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--version", default="default-v1")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--drift", type=float, default=0.001)
    a = p.parse_args(argv)
    build_policy(
        a.out,
        version=a.version,
        image_size=a.image_size,
        conv_channels=a.channels,
        drift=a.drift,
        noise_scale=1e-3,
    )
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
