"""Small real ONNX policies that obey `lwd_common.policy_io`, for tests, demos and the benchmark.

actions[b, k] = joint_pos[b] + (k + 1) * drift + noise_scale * noise[b, k] + image_gain * f(images)

where f is a tiny conv net over the three camera frames (so inference costs
something and depends on the images). `conv_channels` sets the cost: the
default policy (`default_policy`) takes a few ms on one CPU core. Builders for
contract-breaking models let tests check that the actor refuses them.

    python -m lwd_testing.models out.onnx [--version v1] [--image-size 96] [--channels 32]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lwd_common import policy_io
from lwd_description.robot import CAMERA_NAMES, CHUNK_HORIZON, JOINT_NAMES, NUM_JOINTS

OPSET = 17


def _const(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr), name)


def build_policy(
    path: str | Path,
    version: str = "test-v1",
    image_size: int = 32,
    conv_channels: int = 4,
    drift: float = 0.001,
    noise_scale: float = 0.0,
    image_gain: float = 1e-4,
    instructions: tuple[str, ...] = ("<unknown>", "pick up the cube"),
    noise_horizon: int = CHUNK_HORIZON,
    action_joints: int = NUM_JOINTS,
    nan_actions: bool = False,
    seed: int = 0,
) -> Path:
    """Write a contract-obeying policy (or, with odd shapes/nan, a broken one) to `path`."""
    rng = np.random.default_rng(seed)
    c = conv_channels
    h = w = image_size
    nodes = [
        helper.make_node("Reshape", ["images", "img_shape"], ["img_flat"]),  # [B*3, H, W, 3]
        helper.make_node("Transpose", ["img_flat"], ["img_nchw_u8"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["img_nchw_u8"], ["img_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["img_f", "inv255"], ["img_n"]),
        helper.make_node("Conv", ["img_n", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),  # [B*3, C, 1, 1]
        helper.make_node("Reshape", ["pooled", "feat_shape"], ["feat"]),  # [B, 3*C]
        helper.make_node("MatMul", ["feat", "w_out"], ["img_term"]),  # [B, J]
        helper.make_node("Mul", ["img_term", "gain"], ["img_term_s"]),
        helper.make_node("Cast", ["task_id"], ["task_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["task_f", "axis1"], ["task_col"]),  # [B, 1]
        helper.make_node("Mul", ["task_col", "task_gain"], ["task_term"]),  # [B, 1]
        helper.make_node("Add", ["joint_pos", "img_term_s"], ["base0"]),
        helper.make_node("Add", ["base0", "task_term"], ["base1"]),
        helper.make_node("Unsqueeze", ["base1", "axis1"], ["base"]),  # [B, 1, 16]
        helper.make_node("Mul", ["noise", "noise_scale"], ["noise_s"]),
        helper.make_node("Add", ["base", "ramp"], ["planned"]),  # [B, 30, 16]
        helper.make_node("Add", ["planned", "noise_s"], ["sum"]),
    ]
    if action_joints != NUM_JOINTS:
        nodes.append(helper.make_node("Slice", ["sum", "sl_start", "sl_end", "sl_axes"], ["sliced"]))
        last = "sliced"
    else:
        last = "sum"
    if nan_actions:
        nodes.append(helper.make_node("Mul", [last, "nan"], ["actions"]))
    else:
        nodes.append(helper.make_node("Identity", [last], ["actions"]))
    ramp = (np.arange(1, CHUNK_HORIZON + 1, dtype=np.float32)[:, None] * drift * np.ones(NUM_JOINTS, np.float32))
    inits = [
        _const("img_shape", np.array([-1, h, w, 3], np.int64)),
        _const("feat_shape", np.array([-1, len(CAMERA_NAMES) * c], np.int64)),
        _const("inv255", np.array(1.0 / 255.0, np.float32)),
        _const("w1", (rng.standard_normal((c, 3, 3, 3)) * 0.2).astype(np.float32)),
        _const("b1", np.zeros(c, np.float32)),
        _const("w2", (rng.standard_normal((c, c, 3, 3)) * 0.2).astype(np.float32)),
        _const("b2", np.zeros(c, np.float32)),
        _const("w_out", (rng.standard_normal((len(CAMERA_NAMES) * c, NUM_JOINTS)) * 0.1).astype(np.float32)),
        _const("gain", np.array(image_gain, np.float32)),
        _const("task_gain", np.array(1e-4, np.float32)),
        _const("axis1", np.array([1], np.int64)),
        _const("noise_scale", np.array(noise_scale, np.float32)),
        _const("ramp", ramp[None]),
        _const("nan", np.array(np.nan, np.float32)),
        _const("sl_start", np.array([0], np.int64)),
        _const("sl_end", np.array([action_joints], np.int64)),
        _const("sl_axes", np.array([2], np.int64)),
    ]
    used = {i for n in nodes for i in n.input}
    inits = [t for t in inits if t.name in used]
    inputs = [
        helper.make_tensor_value_info(policy_io.INPUT_IMAGES, TensorProto.UINT8, ["B", len(CAMERA_NAMES), h, w, 3]),
        helper.make_tensor_value_info(policy_io.INPUT_JOINT_POS, TensorProto.FLOAT, ["B", NUM_JOINTS]),
        helper.make_tensor_value_info(policy_io.INPUT_TASK_ID, TensorProto.INT64, ["B"]),
        helper.make_tensor_value_info(policy_io.INPUT_NOISE, TensorProto.FLOAT, ["B", noise_horizon, NUM_JOINTS]),
    ]
    outputs = [helper.make_tensor_value_info(policy_io.OUTPUT_ACTIONS, TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "lwd_test_policy", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    for key, value in {
        policy_io.META_VERSION: version,
        policy_io.META_INSTRUCTIONS: json.dumps(list(instructions)),
        policy_io.META_FLOW_STEPS: "1",
        policy_io.META_JOINT_NAMES: json.dumps(list(JOINT_NAMES)),
        policy_io.META_CAMERAS: json.dumps(list(CAMERA_NAMES)),
    }.items():
        model.metadata_props.add(key=key, value=value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def default_policy(path: str | Path, version: str = "default-v1") -> Path:
    """A policy of realistic onboard cost (a few ms on one CPU core): 96x96 frames, 32 channels."""
    return build_policy(path, version=version, image_size=96, conv_channels=32, noise_scale=1e-3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--version", default="default-v1")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--drift", type=float, default=0.001)
    a = p.parse_args(argv)
    build_policy(a.out, version=a.version, image_size=a.image_size, conv_channels=a.channels,
                 drift=a.drift, noise_scale=1e-3)
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
