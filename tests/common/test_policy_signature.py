"""policy_io.read_signature for any robot: joints and cameras come from the model's metadata and
must match its inputs; a policy without cameras ("cameras": "[]") has no images input."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from lwd_common import policy_io


def model(joints: int = 7, cameras: list[str] | None = None, horizon: int = 20, images: bool = False, **meta):
    """A tiny real ONNX graph obeying the contract's shapes: actions = noise."""
    inputs = [
        helper.make_tensor_value_info("joint_pos", TensorProto.FLOAT, ["B", joints]),
        helper.make_tensor_value_info("task_id", TensorProto.INT64, ["B"]),
        helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["B", horizon, joints]),
    ]
    if images:
        c = len(cameras or [])
        inputs.insert(0, helper.make_tensor_value_info("images", TensorProto.UINT8, ["B", c, 24, 32, 3]))
    out = helper.make_tensor_value_info("actions", TensorProto.FLOAT, ["B", horizon, joints])
    graph = helper.make_graph([helper.make_node("Identity", ["noise"], ["actions"])], "p", inputs, [out])
    m = helper.make_model(graph)
    names = [f"j{i}" for i in range(joints)]
    props = {
        "joint_names": json.dumps(names),
        "cameras": json.dumps(cameras or []),
        "control_hz": "20",
        **meta,
    }
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(m)
    return m


def test_a_policy_without_cameras_has_no_image_input_and_no_image_size():
    sig = policy_io.read_signature(model())
    assert sig.cameras == () and sig.image_size is None and sig.image_height == 0
    assert (sig.num_joints, sig.horizon, sig.control_hz) == (7, 20, 20.0)
    assert sig.joint_names == tuple(f"j{i}" for i in range(7))


def test_a_policy_with_cameras_reports_their_names_and_the_image_size():
    sig = policy_io.read_signature(model(cameras=["wrist", "scene"], images=True))
    assert sig.cameras == ("wrist", "scene") and sig.image_size == (24, 32) and sig.num_cameras == 2


def test_an_images_input_with_another_camera_count_than_the_metadata_is_refused():
    m = model(cameras=["wrist", "scene"], images=True)
    m.metadata_props[1].value = json.dumps(["wrist"])
    with pytest.raises(
        ValueError, match=r"input 'images' must be \[B, 1, H, W, 3\].*1 cameras in its 'cameras'"
    ):
        policy_io.read_signature(m)


def test_joint_pos_of_another_width_than_the_joint_names_is_refused():
    m = model(joints=7)
    m.metadata_props[0].value = json.dumps(["a", "b"])
    with pytest.raises(ValueError, match=r"input 'joint_pos' must be \[B, 2\]"):
        policy_io.read_signature(m)


def test_empty_camera_metadata_with_an_images_input_is_refused():
    with pytest.raises(ValueError, match="'cameras' is \\[\\] but the graph has an 'images' input"):
        policy_io.read_signature(model(cameras=[], images=True))


def _with_rtc_inputs(m, names=policy_io.RTC_INPUTS, horizon: int = 20, joints: int = 7):
    shapes = {
        policy_io.INPUT_PREFIX: (TensorProto.FLOAT, ["B", horizon, joints]),
        policy_io.INPUT_PREFIX_LEN: (TensorProto.INT64, ["B"]),
        policy_io.INPUT_DELAY: (TensorProto.INT64, ["B"]),
    }
    for name in names:
        m.graph.input.append(helper.make_tensor_value_info(name, *shapes[name]))
    return m


def test_a_policy_with_the_prefix_inputs_is_a_real_time_chunking_policy():
    assert policy_io.read_signature(_with_rtc_inputs(model())).rtc
    assert not policy_io.read_signature(model()).rtc  # older graphs: the plain sampler


def test_a_policy_with_only_some_prefix_inputs_is_refused():
    m = _with_rtc_inputs(model(), names=(policy_io.INPUT_PREFIX, policy_io.INPUT_PREFIX_LEN))
    with pytest.raises(ValueError, match=r"missing input 'delay' \(a real-time-chunking"):
        policy_io.read_signature(m)


def test_a_prefix_input_of_another_shape_than_the_noise_is_refused():
    with pytest.raises(ValueError, match=r"input 'prefix' must be \[B, 20, 7\]"):
        policy_io.read_signature(_with_rtc_inputs(model(), horizon=10))
