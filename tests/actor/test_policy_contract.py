"""The actor refuses, at load, a contract-obeying policy that does not fit it: no joint-name or camera
metadata, another control rate, an input aspect ratio its configured cameras do not have. Broken
variants are real ONNX files: a test policy whose metadata is edited with the onnx package."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from lwd_actor.core.policy_runtime import OnnxPolicy, PolicyError, RuntimeConfig
from lwd_actor.core.policy_switch import PolicySwitch
from lwd_common import policy_io
from lwd_common.policy_io import META_CONTROL_HZ
from lwd_testing.models import build_policy
from lwd_testing.sinks import PolicyUpdate

ACTOR = RuntimeConfig(control_hz=30.0)


def with_metadata(path: Path, drop: tuple[str, ...] = (), **set_: str) -> Path:
    """Rewrite the policy at `path` with metadata keys dropped or set; returns `path`."""
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props if p.key not in drop} | set_
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_a_fitting_policy_loads(tmp_path):
    path = with_metadata(build_policy(tmp_path / "p.onnx", image_size=32), **{META_CONTROL_HZ: "30"})
    policy = OnnxPolicy(path, RuntimeConfig(control_hz=30.0, camera_hw=(480, 480)))
    assert policy.metadata[META_CONTROL_HZ] == "30"


@pytest.mark.parametrize(
    ("drop", "match"),
    [
        (
            (policy_io.META_JOINT_NAMES,),
            "no 'joint_names' metadata: nothing says its inputs are in this robot's order",
        ),
        ((policy_io.META_CAMERAS,), "no 'cameras' metadata"),
    ],
)
def test_a_policy_without_joint_or_camera_metadata_is_refused(tmp_path, drop, match):
    path = with_metadata(build_policy(tmp_path / "p.onnx"), drop=drop)
    with pytest.raises(PolicyError, match=match):
        OnnxPolicy(path, ACTOR)


def test_a_policy_with_cameras_in_another_order_is_refused(tmp_path):
    path = with_metadata(
        build_policy(tmp_path / "p.onnx"), cameras=json.dumps(["left_wrist", "head", "right_wrist"])
    )
    with pytest.raises(
        PolicyError, match="'cameras' metadata \\['left_wrist', 'head', 'right_wrist'\\] differs"
    ):
        OnnxPolicy(path, ACTOR)


def test_a_policy_trained_for_another_control_rate_is_refused(tmp_path):
    path = with_metadata(build_policy(tmp_path / "p.onnx"), **{META_CONTROL_HZ: "15"})
    with pytest.raises(PolicyError, match="trained for control_hz 15, the actor runs at 30 Hz"):
        OnnxPolicy(path, ACTOR)
    assert OnnxPolicy(path, RuntimeConfig(control_hz=15.0)).signature.image_height == 32


def test_policy_input_of_another_aspect_ratio_than_the_configured_cameras_is_refused(tmp_path):
    path = build_policy(tmp_path / "p.onnx", image_size=32)  # 1:1
    with pytest.raises(
        PolicyError,
        match=r"configured frame size: camera frames 480x640 .* do not have the "
        r"aspect ratio of the policy input 32x32",
    ):
        OnnxPolicy(path, RuntimeConfig(camera_hw=(480, 640)))
    OnnxPolicy(path, RuntimeConfig(camera_hw=(64, 64)))  # larger, same shape: resized, fine


def test_a_downloaded_policy_that_does_not_fit_is_refused_and_the_current_one_keeps_running(tmp_path):
    current = OnnxPolicy(build_policy(tmp_path / "a.onnx", version="v000001"), ACTOR)
    bad = with_metadata(build_policy(tmp_path / "b.onnx"), **{META_CONTROL_HZ: "10"})
    errors: list[str] = []
    switch = PolicySwitch(current.version, None, ACTOR, error=errors.append)
    assert switch.offer(PolicyUpdate(str(bad), "v000002")) is None
    assert "v000002" in switch.refused and "control_hz 10" in errors[0]
