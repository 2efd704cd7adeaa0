"""The ONNX policy contract between the learner (exporter) and the actor (runtime).

One ONNX graph is the whole sampler: noise in, action chunk out, a fixed number
of flow steps inside. Inputs (B = batch, dynamic):
    images     uint8   [B, 3, H, W, 3]   RGB, cameras in CAMERA_NAMES order
    joint_pos  float32 [B, 16]           measured joint positions, JOINT_NAMES order
    task_id    int64   [B]               index into the model's `instructions` list
    noise      float32 [B, 30, 16]       standard normal, the flow's starting point
Output:
    actions    float32 [B, 30, 16]       absolute joint-position targets, one row per step

H and W are fixed by the model (read them from the input shape) and the actor
resizes camera frames to them. Normalisation happens inside the graph. The
model's metadata_props carry the keys below; `instructions` is a JSON list
whose index 0 is the fallback for an unknown instruction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lwd_description.robot import CAMERA_NAMES, CHUNK_HORIZON, JOINT_NAMES, NUM_JOINTS

INPUT_IMAGES = "images"
INPUT_JOINT_POS = "joint_pos"
INPUT_TASK_ID = "task_id"
INPUT_NOISE = "noise"
OUTPUT_ACTIONS = "actions"

META_VERSION = "lwd_policy_version"
META_INSTRUCTIONS = "instructions"  # JSON list of strings
META_FLOW_STEPS = "flow_steps"
META_JOINT_NAMES = "joint_names"  # JSON list, must equal JOINT_NAMES
META_CAMERAS = "cameras"  # JSON list, must equal CAMERA_NAMES
META_CONTROL_HZ = "control_hz"  # rate the chunk's rows were trained at; an actor at another rate refuses it


@dataclass(frozen=True)
class PolicySignature:
    """What an actor needs to know about a loaded policy."""

    image_height: int
    image_width: int
    instructions: tuple[str, ...]
    version: str
    horizon: int = CHUNK_HORIZON

    def task_id(self, instruction: str) -> int:
        try:
            return self.instructions.index(instruction)
        except ValueError:
            return 0


def _dims(arg) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in arg.type.tensor_type.shape.dim]


def read_signature(model) -> PolicySignature:
    """Check an `onnx.ModelProto` against the contract; raise ValueError saying what is wrong."""
    from onnx import TensorProto  # onnx is only needed by exporters and checkers

    inputs = {i.name: i for i in model.graph.input}
    outputs = {o.name: o for o in model.graph.output}
    want_in = {
        INPUT_IMAGES: (TensorProto.UINT8, 5),
        INPUT_JOINT_POS: (TensorProto.FLOAT, 2),
        INPUT_TASK_ID: (TensorProto.INT64, 1),
        INPUT_NOISE: (TensorProto.FLOAT, 3),
    }
    problems = []
    for name, (dtype, rank) in want_in.items():
        arg = inputs.get(name)
        if arg is None:
            problems.append(f"missing input {name!r}")
            continue
        if arg.type.tensor_type.elem_type != dtype:
            problems.append(f"input {name!r} has element type {arg.type.tensor_type.elem_type}, want {dtype}")
        if len(_dims(arg)) != rank:
            problems.append(f"input {name!r} has rank {len(_dims(arg))}, want {rank}")
    if OUTPUT_ACTIONS not in outputs:
        problems.append(f"missing output {OUTPUT_ACTIONS!r}")
    if problems:
        raise ValueError("policy does not match the lwd ONNX contract: " + "; ".join(problems))
    img = _dims(inputs[INPUT_IMAGES])
    if img[1] != len(CAMERA_NAMES) or img[4] != 3 or not all(isinstance(d, int) and d > 0 for d in img[2:4]):
        raise ValueError(f"input 'images' must be [B, 3, H, W, 3] with fixed H, W; got {img}")
    for name in (INPUT_JOINT_POS,):
        if _dims(inputs[name])[-1] != NUM_JOINTS:
            raise ValueError(f"input {name!r} must end in {NUM_JOINTS}; got {_dims(inputs[name])}")
    noise = _dims(inputs[INPUT_NOISE])
    if noise[1:] != [CHUNK_HORIZON, NUM_JOINTS]:
        raise ValueError(f"input 'noise' must be [B, {CHUNK_HORIZON}, {NUM_JOINTS}]; got {noise}")
    meta = {p.key: p.value for p in model.metadata_props}
    if META_JOINT_NAMES in meta and tuple(json.loads(meta[META_JOINT_NAMES])) != JOINT_NAMES:
        raise ValueError("policy joint_names differ from this robot's JOINT_NAMES")
    instructions = tuple(json.loads(meta.get(META_INSTRUCTIONS, '["<unknown>"]')))
    return PolicySignature(int(img[2]), int(img[3]), instructions, meta.get(META_VERSION, "unversioned"))
