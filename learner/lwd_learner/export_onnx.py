"""Export the trained flow policy as one ONNX graph: the whole Euler sampler, noise in, chunk out.

Built op by op with onnx.helper from the linen parameters (no jax2onnx), following
lwd_common/policy_io.py exactly. Normalisation (image / 255, joint and action
mean/std) is inside the graph. Only the default "conv" encoder with the "vocab" text
encoder is exportable. Per flow step the state part of the first dense layer and the
time features are constants folded in at export time, so a step costs one
[B, 480] x [480, hidden] product plus the hidden layers.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lwd_common import policy_io
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES
from lwd_learner.config import ModelConfig, relative_action_mask
from lwd_learner.networks import image_feature_dim, keypoint_grid, time_features

OPSET = 17


class _Graph:
    def __init__(self):
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, value: np.ndarray, base: str = "c") -> str:
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), n))
        return n

    def op(self, op_type: str, inputs: list[str], base: str | None = None, **attrs) -> str:
        out = self.name(base or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def dense(self, x: str, p: dict) -> str:
        y = self.op("MatMul", [x, self.const(np.asarray(p["kernel"], np.float32), "W")])
        return self.op("Add", [y, self.const(np.asarray(p["bias"], np.float32), "b")])

    def silu(self, x: str) -> str:
        return self.op("Mul", [x, self.op("Sigmoid", [x])])


def export_policy(
    params: dict,
    norm: dict,
    cfg: ModelConfig,
    instructions: list[str],
    flow_steps: int,
    version: str = "unversioned",
) -> onnx.ModelProto:
    """Build the ONNX sampler from FlowPolicy params (`{'params': {...}}`) and NormStats dict."""
    e = cfg.encoder
    if e.kind != "conv" or e.text_kind != "vocab":
        raise ValueError(f"ONNX export supports the conv/vocab encoder only, not {e.kind}/{e.text_kind}")
    p = params["params"]
    enc, head = p["encoder"], p["head"]
    norm = {k: np.asarray(v, np.float32) for k, v in norm.items()}
    h_img, w_img = e.image_size
    horizon, joints = cfg.horizon, cfg.num_joints
    g = _Graph()

    # --- observation encoder -------------------------------------------------------------
    x = g.op("Cast", [policy_io.INPUT_IMAGES], to=TensorProto.FLOAT)
    x = g.op("Mul", [x, g.const(np.float32(1.0 / 255.0))])
    x = g.op("Reshape", [x, g.const(np.array([-1, h_img, w_img, 3], np.int64))])
    x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
    for i in range(len(e.conv_channels)):
        c = enc[f"conv{i}"]
        kernel = np.transpose(np.asarray(c["kernel"], np.float32), (3, 2, 0, 1))
        x = g.op("Conv", [x, g.const(kernel, "K"), g.const(np.asarray(c["bias"], np.float32), "b")],
                 strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=list(kernel.shape[2:]))
        x = g.op("Relu", [x])
    pooled = g.op("ReduceMean", [x], axes=[2, 3], keepdims=0)
    if e.pool == "spatial":  # networks.spatial_keypoints: softmax over the map, expected (x, y) per channel
        fh, fw = h_img, w_img
        for _ in e.conv_channels:  # each 3x3 stride-2 conv with padding 1 halves the map, rounding up
            fh, fw = (fh + 1) // 2, (fw + 1) // 2
        ch = e.conv_channels[-1]
        att = g.op("Softmax", [g.op("Reshape", [x, g.const(np.array([-1, ch, fh * fw], np.int64))])], axis=-1)
        kp = g.op("MatMul", [att, g.const(keypoint_grid(fh, fw), "grid")])
        kp = g.op("Reshape", [kp, g.const(np.array([-1, 2 * ch], np.int64))])
        pooled = g.op("Concat", [pooled, kp], axis=-1)
    x = g.op("Reshape", [pooled, g.const(np.array([-1, cfg.num_cameras * image_feature_dim(e)], np.int64))])
    q = g.op("Sub", [policy_io.INPUT_JOINT_POS, g.const(norm["joint_mean"])])
    q = g.op("Div", [q, g.const(norm["joint_std"])])
    j = g.silu(g.dense(q, enc["joint"]))
    table = np.asarray(enc["text"]["table"]["embedding"], np.float32)
    t = g.op("Gather", [g.const(table, "table"), policy_io.INPUT_TASK_ID], axis=0)
    z = g.dense(g.op("Concat", [x, j, t], axis=-1), enc["fuse"])
    z = g.op("LayerNormalization", [z, g.const(np.asarray(enc["norm"]["scale"], np.float32)),
                                    g.const(np.asarray(enc["norm"]["bias"], np.float32))],
             axis=-1, epsilon=1e-6)

    # --- Euler flow: a <- a + h f(z, a, w_k) ---------------------------------------------
    d0 = head["dense0"]
    k0 = np.asarray(d0["kernel"], np.float32)
    z_dim, a_dim = e.out_dim, horizon * joints
    w_z, w_a, w_t = k0[:z_dim], k0[z_dim:z_dim + a_dim], k0[z_dim + a_dim:]
    zproj = g.op("MatMul", [z, g.const(w_z, "Wz")])
    w_a_name = g.const(w_a, "Wa")
    hstep = 1.0 / flow_steps
    a = g.op("Reshape", [policy_io.INPUT_NOISE, g.const(np.array([-1, a_dim], np.int64))])
    a = g.op("Mul", [a, g.const(np.float32(cfg.policy.noise_scale))])  # PolicyConfig.noise_scale
    shape_flat = g.const(np.array([-1, a_dim], np.int64))
    hidden = [head[f"dense{i}"] for i in range(1, len(cfg.policy.hidden))]
    for k in range(flow_steps):
        tf = np.asarray(time_features(np.array([k * hstep], np.float32), cfg.policy.time_features))
        const_k = (tf @ w_t + np.asarray(d0["bias"], np.float32)).astype(np.float32)
        y = g.op("Add", [g.op("Add", [zproj, g.op("MatMul", [a, w_a_name])]), g.const(const_k, "tk")])
        y = g.silu(y)
        for layer in hidden:
            y = g.silu(g.dense(y, layer))
        v = g.dense(y, head["out"])
        a = g.op("Add", [a, g.op("Mul", [v, g.const(np.float32(hstep))])])
        a = g.op("Reshape", [a, shape_flat])
    a = g.op("Reshape", [a, g.const(np.array([-1, horizon, joints], np.int64))])
    a = g.op("Mul", [a, g.const(norm["action_std"])])
    out = g.op("Add", [a, g.const(norm["action_mean"])])
    mask = relative_action_mask(cfg)
    if mask.any():  # relative chunk: add back the joint positions it starts from
        start = g.op("Unsqueeze", [g.op("Mul", [policy_io.INPUT_JOINT_POS, g.const(mask)]),
                                   g.const(np.array([1], np.int64))])
        out = g.op("Add", [out, start])
    g.nodes.append(helper.make_node("Identity", [out], [policy_io.OUTPUT_ACTIONS]))

    inputs = [
        helper.make_tensor_value_info(policy_io.INPUT_IMAGES, TensorProto.UINT8,
                                      ["B", cfg.num_cameras, h_img, w_img, 3]),
        helper.make_tensor_value_info(policy_io.INPUT_JOINT_POS, TensorProto.FLOAT, ["B", joints]),
        helper.make_tensor_value_info(policy_io.INPUT_TASK_ID, TensorProto.INT64, ["B"]),
        helper.make_tensor_value_info(policy_io.INPUT_NOISE, TensorProto.FLOAT, ["B", horizon, joints]),
    ]
    outputs = [helper.make_tensor_value_info(policy_io.OUTPUT_ACTIONS, TensorProto.FLOAT, ["B", horizon, joints])]
    graph = helper.make_graph(g.nodes, "lwd_flow_policy", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lwd_learner")
    model.ir_version = 8
    meta = {
        policy_io.META_VERSION: version,
        policy_io.META_INSTRUCTIONS: json.dumps(list(instructions)),
        policy_io.META_FLOW_STEPS: str(flow_steps),
        policy_io.META_JOINT_NAMES: json.dumps(list(JOINT_NAMES)),
        policy_io.META_CAMERAS: json.dumps(list(CAMERA_NAMES)),
    }
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    policy_io.read_signature(model)
    return model
