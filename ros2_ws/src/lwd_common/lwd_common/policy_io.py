"""The ONNX policy contract between the learner (exporter) and the actor (runtime).

One ONNX graph is the whole sampler: noise in, action chunk out, a fixed number
of flow steps inside. Inputs (B = batch, dynamic; C cameras, J joints, H the horizon):
    images     uint8   [B, C, H_img, W_img, 3]  RGB, cameras in metadata `cameras` order
                                                (absent when `cameras` is "[]": a policy without cameras)
    joint_pos  float32 [B, J]                   measured joint positions, metadata `joint_names` order
    task_id    int64   [B]                      index into the model's `instructions` list
    noise      float32 [B, H, J]                standard normal, the flow's starting point
  optional, all three or none (a graph with them is a real-time-chunking policy, `rtc`):
    prefix     float32 [B, H, J]                absolute joint targets already planned for the
                                                chunk's steps (the previous chunk's remaining
                                                rows), zero rows from prefix_len on
    prefix_len int64   [B]                      rows of `prefix` that are planned (0: no prefix,
                                                the plain sampler)
    delay      int64   [B]                      rows that execute before this chunk arrives
                                                (clipped to prefix_len): output rows < delay are
                                                the prefix's exactly, rows up to prefix_len are
                                                guided towards it (real-time chunking)
Output:
    actions    float32 [B, H, J]                absolute joint-position targets, one row per step

C = len(cameras), J = len(joint_names); the G1 (the default robot) has C = 3, J = 16, H = 30.
H_img and W_img are fixed by the model (read them from the input shape) and the actor resizes
camera frames to them. Normalisation happens inside the graph. The model's metadata_props carry
the keys below: `joint_names` and `cameras` JSON lists (a robot's actor refuses a policy whose
lists differ from its robot description's), `control_hz` (the rate its chunk rows were trained
at), `flow_steps`, `instructions`, a JSON list whose index 0 is the fallback for an unknown
instruction, and, in an RTC policy, `rtc_max_guidance` (the guidance weight cap baked into it). `read_signature` checks a model against this contract for any robot; whether it fits
a given robot is the actor's check (`lwd_actor.core.policy_runtime.check_deployment`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

INPUT_IMAGES = "images"
INPUT_JOINT_POS = "joint_pos"
INPUT_TASK_ID = "task_id"
INPUT_NOISE = "noise"
INPUT_PREFIX = "prefix"
INPUT_PREFIX_LEN = "prefix_len"
INPUT_DELAY = "delay"
RTC_INPUTS = (INPUT_PREFIX, INPUT_PREFIX_LEN, INPUT_DELAY)
OUTPUT_ACTIONS = "actions"

META_VERSION = "lwd_policy_version"
META_INSTRUCTIONS = "instructions"  # JSON list of strings
META_FLOW_STEPS = "flow_steps"
META_JOINT_NAMES = "joint_names"  # JSON list: the order of joint_pos / noise / actions columns
META_CAMERAS = "cameras"  # JSON list: the order of the images input's cameras ("[]": no images input)
META_CONTROL_HZ = "control_hz"  # rate the chunk's rows were trained at; an actor at another rate refuses it
META_RTC_MAX_GUIDANCE = "rtc_max_guidance"  # an RTC policy's cap on the guidance weight (beta)


@dataclass(frozen=True)
class PolicySignature:
    """What an actor needs to know about a loaded policy.

    `joint_names` / `cameras` are None when the model's metadata does not say (an actor refuses
    such a model: nothing says its inputs are in the robot's order); `control_hz` likewise."""

    image_size: tuple[int, int] | None  # (height, width) of the images input; None: no cameras
    instructions: tuple[str, ...]
    version: str
    horizon: int
    joint_names: tuple[str, ...] | None
    cameras: tuple[str, ...] | None
    num_joints: int
    num_cameras: int
    control_hz: float | None = None
    rtc: bool = False  # has the prefix / prefix_len / delay inputs (real-time chunking)

    @property
    def image_height(self) -> int:
        """Height of the images input (0 without cameras)."""
        return self.image_size[0] if self.image_size else 0

    @property
    def image_width(self) -> int:
        """Width of the images input (0 without cameras)."""
        return self.image_size[1] if self.image_size else 0

    def task_id(self, instruction: str) -> int:
        try:
            return self.instructions.index(instruction)
        except ValueError:
            return 0


def _name_list(meta: dict[str, str], key: str) -> tuple[str, ...] | None:
    if key not in meta:
        return None
    try:
        value = json.loads(meta[key])
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"policy metadata {key!r} must be a JSON list of names, got {meta[key][:200]!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"policy metadata {key!r} names a {key[:-1] if key.endswith('s') else key} twice")
    return tuple(value)


def _dims(arg) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in arg.type.tensor_type.shape.dim]


def read_signature(model) -> PolicySignature:
    """Check an `onnx.ModelProto` against the contract; raise ValueError saying what is wrong."""
    from onnx import TensorProto  # onnx is only needed by exporters and checkers

    meta = {p.key: p.value for p in model.metadata_props}
    joint_names = _name_list(meta, META_JOINT_NAMES)
    cameras = _name_list(meta, META_CAMERAS)
    inputs = {i.name: i for i in model.graph.input}
    outputs = {o.name: o for o in model.graph.output}
    want_in = {
        INPUT_JOINT_POS: (TensorProto.FLOAT, 2),
        INPUT_TASK_ID: (TensorProto.INT64, 1),
        INPUT_NOISE: (TensorProto.FLOAT, 3),
    }
    if cameras != ():  # a policy without cameras ("cameras": "[]") has no images input
        want_in = {INPUT_IMAGES: (TensorProto.UINT8, 5), **want_in}
    elif INPUT_IMAGES in inputs:
        raise ValueError("policy metadata 'cameras' is [] but the graph has an 'images' input")
    problems = []
    rtc = any(name in inputs for name in RTC_INPUTS)
    if rtc:  # all three or none
        want_in.update(
            {
                INPUT_PREFIX: (TensorProto.FLOAT, 3),
                INPUT_PREFIX_LEN: (TensorProto.INT64, 1),
                INPUT_DELAY: (TensorProto.INT64, 1),
            }
        )
    for name, (dtype, rank) in want_in.items():
        arg = inputs.get(name)
        if arg is None:
            hint = (
                " (a real-time-chunking policy has all of prefix, prefix_len, delay)"
                if name in RTC_INPUTS
                else ""
            )
            problems.append(f"missing input {name!r}{hint}")
            continue
        if arg.type.tensor_type.elem_type != dtype:
            problems.append(f"input {name!r} has element type {arg.type.tensor_type.elem_type}, want {dtype}")
        if len(_dims(arg)) != rank:
            problems.append(f"input {name!r} has rank {len(_dims(arg))}, want {rank}")
    if OUTPUT_ACTIONS not in outputs:
        problems.append(f"missing output {OUTPUT_ACTIONS!r}")
    if problems:
        raise ValueError("policy does not match the lwd ONNX contract: " + "; ".join(problems))
    image_size: tuple[int, int] | None = None
    num_cameras = 0
    if INPUT_IMAGES in want_in:
        img = _dims(inputs[INPUT_IMAGES])
        c = len(cameras) if cameras is not None else img[1]
        if (
            img[1] != c
            or not (isinstance(c, int) and c > 0)
            or img[4] != 3
            or not all(isinstance(d, int) and d > 0 for d in img[2:4])
        ):
            raise ValueError(
                f"input 'images' must be [B, {c}, H, W, 3] with fixed H, W"
                + (f" ({c} cameras in its 'cameras' metadata)" if cameras is not None else "")
                + f"; got {img}"
            )
        image_size, num_cameras = (int(img[2]), int(img[3])), int(c)
    joints = _dims(inputs[INPUT_JOINT_POS])[-1]
    if joint_names is not None and joints != len(joint_names):
        raise ValueError(
            f"input 'joint_pos' must be [B, {len(joint_names)}] (the {len(joint_names)} joints of its "
            f"'joint_names' metadata); got {_dims(inputs[INPUT_JOINT_POS])}"
        )
    if not (isinstance(joints, int) and joints > 0):
        raise ValueError(
            f"input 'joint_pos' must be [B, J] with a fixed J; got {_dims(inputs[INPUT_JOINT_POS])}"
        )
    noise = _dims(inputs[INPUT_NOISE])
    if not (isinstance(noise[1], int) and noise[1] > 0) or noise[2] != joints:
        raise ValueError(f"input 'noise' must be [B, horizon, {joints}] with a fixed horizon; got {noise}")
    if rtc and _dims(inputs[INPUT_PREFIX])[1:] != noise[1:]:
        raise ValueError(
            f"input 'prefix' must be [B, {noise[1]}, {joints}] like 'noise'; got {_dims(inputs[INPUT_PREFIX])}"
        )
    control_hz = None
    if META_CONTROL_HZ in meta:
        try:
            control_hz = float(meta[META_CONTROL_HZ])
        except ValueError:
            control_hz = math.nan
    instructions = tuple(json.loads(meta.get(META_INSTRUCTIONS, '["<unknown>"]')))
    return PolicySignature(
        image_size=image_size,
        instructions=instructions,
        version=meta.get(META_VERSION, "unversioned"),
        horizon=int(noise[1]),
        joint_names=joint_names,
        cameras=cameras,
        num_joints=int(joints),
        num_cameras=num_cameras,
        control_hz=control_hz,
        rtc=rtc,
    )


def rtc_feeds(horizon: int, num_joints: int, batch: int, prefix=None, prefix_len=None, delay=None) -> dict:
    """The real-time-chunking inputs of an RTC policy for `batch` observations.

    `prefix`: absolute joint targets already planned for the new chunk's first steps, [B, n, J]
    (or [n, J] for batch 1) with n <= horizon rows (padded with zero rows to the horizon; rows past
    the horizon are dropped); None: no prefix. `prefix_len` (scalar or [B], default n) and `delay`
    (scalar or [B], default 0) are clipped to [0, n] and [0, prefix_len]. With no prefix, the feeds
    make the graph the plain sampler (prefix_len 0)."""
    import numpy as np

    full = np.zeros((batch, horizon, num_joints), np.float32)
    if prefix is None:
        zeros = np.zeros((batch,), np.int64)
        return {INPUT_PREFIX: full, INPUT_PREFIX_LEN: zeros, INPUT_DELAY: zeros.copy()}
    rows = np.asarray(prefix, np.float32)
    if rows.ndim == 2:
        rows = rows[None]
    if rows.ndim != 3 or rows.shape[0] != batch or rows.shape[2] != num_joints:
        raise ValueError(f"prefix must be [{batch}, n, {num_joints}] joint targets; got {list(rows.shape)}")
    n = min(rows.shape[1], horizon)
    full[:, :n] = rows[:, :n]
    length = np.clip(np.broadcast_to(np.asarray(n if prefix_len is None else prefix_len), (batch,)), 0, n)
    frozen = np.clip(np.broadcast_to(np.asarray(0 if delay is None else delay), (batch,)), 0, length)
    full[np.arange(horizon)[None, :] >= length[:, None]] = 0.0  # the contract: zero rows from prefix_len on
    return {
        INPUT_PREFIX: full,
        INPUT_PREFIX_LEN: length.astype(np.int64),
        INPUT_DELAY: frozen.astype(np.int64),
    }
