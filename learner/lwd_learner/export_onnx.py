"""Export the trained flow policy as one ONNX graph: the whole Euler sampler, noise in, chunk out.

The graph is generated from the JAX sampler itself, `BaseAgent.sample_actions` (the function the learner
evaluates: encoder, flow head, K Euler steps, noise scale, relative actions, normalisation), traced
to a jaxpr and converted primitive by primitive (lwd_learner.jaxpr_onnx). There is no hand-written
mirror of networks.py to keep in step: a network change exports as it is, or, if it uses a JAX
primitive without a conversion rule, fails at export naming that primitive. The contract (input and
output names, dtypes, dynamic batch, metadata) is lwd_common/policy_io.py, for any robot: the
joint and camera names in the metadata are the model config's, `images` is [B, C, H, W, 3] with
C = len(cameras) and absent for a camera-free (state-only) model, `joint_pos` [B, J] with
J = len(joint_names). Models with extra state vectors (ModelConfig.state_names, an array-API
feature) have no such input in the contract and are refused.

By default the graph is a real-time-chunking policy (`policy_io.RTC_INPUTS`): it also takes the
previous chunk's planned rows (`prefix`, `prefix_len`) and the inference `delay`, and samples with
`flow.rtc_sample` (one VJP of the flow head per Euler step, converted like the rest);
`rtc=False` exports the plain sampler, the graph of older exports.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import onnx

from lwd_common import policy_io
from lwd_description.robot import CAMERA_NAMES, CONTROL_HZ, JOINT_NAMES
from lwd_learner.config import LearnerConfig, ModelConfig
from lwd_learner.jaxpr_onnx import OPSET, GraphInput, jax_to_onnx

__all__ = [
    "OPSET",
    "export_policy",
    "policy_inputs",
    "policy_sampler",
    "sampler_to_onnx",
    "write_metadata",
]


def policy_inputs(cfg: ModelConfig, noise_horizon: int | None = None, rtc: bool = False) -> list[GraphInput]:
    """The contract's graph inputs for a model of `cfg` (B is the dynamic batch; no `images` without
    cameras; with `rtc` the real-time-chunking inputs last). Task ids, prefix lengths and delays are
    int64 on the wire and int32 inside JAX (no x64)."""
    h, w = cfg.encoder.image_size
    images = [GraphInput(policy_io.INPUT_IMAGES, ("B", cfg.num_cameras, h, w, 3), np.uint8)]
    chunk = ("B", noise_horizon or cfg.horizon, cfg.num_joints)
    rtc_inputs = [
        GraphInput(policy_io.INPUT_PREFIX, chunk, np.float32),
        GraphInput(policy_io.INPUT_PREFIX_LEN, ("B",), np.int64, np.int32),
        GraphInput(policy_io.INPUT_DELAY, ("B",), np.int64, np.int32),
    ]
    return [
        *(images if cfg.num_cameras else []),
        GraphInput(policy_io.INPUT_JOINT_POS, ("B", cfg.num_joints), np.float32),
        GraphInput(policy_io.INPUT_TASK_ID, ("B",), np.int64, np.int32),
        GraphInput(policy_io.INPUT_NOISE, chunk, np.float32),
        *(rtc_inputs if rtc else []),
    ]


def write_metadata(
    model: onnx.ModelProto,
    instructions: list[str] | tuple[str, ...],
    flow_steps: int,
    version: str,
    cfg: ModelConfig | None = None,
    rtc_max_guidance: float | None = None,
) -> None:
    """The metadata_props an actor reads (policy_io.META_*); joint and camera names are `cfg`'s
    (None: the G1's); `rtc_max_guidance` for a real-time-chunking graph."""
    joints, cameras = (JOINT_NAMES, CAMERA_NAMES) if cfg is None else (cfg.joint_names, cfg.cameras)
    meta = {
        policy_io.META_VERSION: version,
        policy_io.META_INSTRUCTIONS: json.dumps(list(instructions)),
        policy_io.META_FLOW_STEPS: str(flow_steps),
        policy_io.META_JOINT_NAMES: json.dumps(list(joints)),
        policy_io.META_CAMERAS: json.dumps(list(cameras)),
        policy_io.META_CONTROL_HZ: f"{CONTROL_HZ if cfg is None else cfg.control_hz:g}",
    }
    if rtc_max_guidance is not None:
        meta[policy_io.META_RTC_MAX_GUIDANCE] = f"{rtc_max_guidance:g}"
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)


def policy_sampler(params: dict, norm: dict, cfg: ModelConfig, flow_steps: int) -> Callable:
    """`BaseAgent.sample_actions` with these parameters and NormStats bound: (images, joint_pos, task_id,
    noise[, prefix, prefix_len, delay]) -> actions, the function an export traces (`images` None for
    a camera-free model; with the real-time-chunking inputs, the RTC sampler)."""
    from lwd_learner.agents import make_agent  # the agents pull in optax etc.; only exporting needs them

    _check_exportable(cfg)
    agent = make_agent(LearnerConfig(model=cfg))
    norm = {k: np.asarray(v, np.float32) for k, v in norm.items()}

    def sampler(images, joint_pos, task_id, noise, prefix=None, prefix_len=None, delay=None):
        return agent.sample_actions(
            params,
            norm,
            images,
            joint_pos,
            task_id,
            noise,
            steps=flow_steps,
            prefix=prefix,
            prefix_len=prefix_len,
            delay=delay,
        )

    return sampler


def sampler_to_onnx(
    sampler: Callable,
    cfg: ModelConfig,
    instructions: list[str] | tuple[str, ...],
    flow_steps: int,
    version: str,
    noise_horizon: int | None = None,
    check: bool = True,
    rtc: bool = False,
) -> onnx.ModelProto:
    """Trace `sampler` over the contract's inputs into a policy with its metadata. `check=False` and
    `noise_horizon` exist for lwd_testing.models, which builds contract-breaking policies on purpose.
    A camera-free model's graph has no `images` input: `sampler` gets None for it. With `rtc`,
    `sampler` also takes (prefix, prefix_len, delay) and the graph has those inputs."""
    _check_exportable(cfg)
    fn = sampler if cfg.num_cameras else (lambda *args: sampler(None, *args))
    inputs = policy_inputs(cfg, noise_horizon, rtc)
    model = jax_to_onnx(fn, inputs, [policy_io.OUTPUT_ACTIONS], "lwd_flow_policy")
    model.producer_name = "lwd_learner"
    guidance = cfg.policy.rtc_max_guidance if rtc else None
    write_metadata(model, instructions, flow_steps, version, cfg, rtc_max_guidance=guidance)
    onnx.checker.check_model(model)
    if check:
        policy_io.read_signature(model)  # the contract, for any robot
    return model


def _check_exportable(cfg: ModelConfig) -> None:
    if cfg.state_names:
        raise ValueError(
            f"cannot export a policy conditioned on extra state vectors {cfg.state_names}: the ONNX "
            "contract's inputs are images, joint_pos, task_id and noise (extra state vectors are a "
            "learner / array-API feature; train without model.state_names to deploy)"
        )


def export_policy(
    params: dict,
    norm: dict,
    cfg: ModelConfig,
    instructions: list[str],
    flow_steps: int,
    version: str = "unversioned",
    rtc: bool = True,
) -> onnx.ModelProto:
    """ONNX sampler of FlowPolicy params (`{'params': {...}}`) and the NormStats dict, by tracing
    `BaseAgent.sample_actions` with these values baked in as initialisers; a real-time-chunking policy
    unless `rtc=False` (module doc)."""
    return sampler_to_onnx(
        policy_sampler(params, norm, cfg, flow_steps), cfg, instructions, flow_steps, version, rtc=rtc
    )
