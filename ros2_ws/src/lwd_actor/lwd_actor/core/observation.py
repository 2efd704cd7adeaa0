"""The synchronised observation the policy and the recorder see, and input validation.

Conversion from raw message fields lives here (not in the node) so that bad
input handling is ROS-free and tested directly: every problem raises
`InputError` with a message fit for a log line, and the node drops the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lwd_common.preprocessing import bgr_to_rgb
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES

JOINTS_INPUT = "joint_states"


class InputError(ValueError):
    """A sensor message the actor cannot use (wrong encoding, size, joints)."""


@dataclass(frozen=True)
class Observation:
    """Camera frames and joint positions whose stamps lie within the sync slop."""

    images: dict[str, np.ndarray]  # camera -> HxWx3 uint8 RGB (never mutated after creation)
    joint_pos: np.ndarray  # (16,) float64, JOINT_NAMES order
    stamps: dict[str, float]  # input name (cameras, "joint_states") -> header stamp, seconds

    @property
    def stamp(self) -> float:
        """Observation time: the joint state's stamp."""
        return self.stamps[JOINTS_INPUT]


def rgb_image(
    encoding: str, height: int, width: int, step: int, data: bytes | Sequence[int],
    expected_hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """HxWx3 uint8 RGB view of an rgb8 (or bgr8, converted) image message; InputError otherwise.

    Frames stay at the camera's size here: the recorder stores them as they are and the policy
    runtime prepares its input with `lwd_common.preprocessing`, the learner's code."""
    if encoding not in ("rgb8", "bgr8"):
        raise InputError(f"unsupported image encoding {encoding!r} (want rgb8)")
    if height <= 0 or width <= 0:
        raise InputError(f"image has size {height}x{width}")
    if expected_hw is not None and (height, width) != tuple(expected_hw):
        raise InputError(f"image is {height}x{width}, expected {expected_hw[0]}x{expected_hw[1]}")
    if step < width * 3:
        raise InputError(f"image row step {step} < width*3 = {width * 3}")
    try:
        buf = np.frombuffer(data, np.uint8)  # zero-copy for bytes / array.array (rclpy uint8[])
    except TypeError:
        buf = np.asarray(data, np.uint8).ravel()
    if buf.size != height * step:
        raise InputError(f"image data has {buf.size} bytes, want height*step = {height * step}")
    img = buf.reshape(height, step)[:, : width * 3].reshape(height, width, 3)
    return bgr_to_rgb(img) if encoding == "bgr8" else np.ascontiguousarray(img)


def ordered_joints(names: Sequence[str], values: Sequence[float], what: str = "joint_states") -> np.ndarray:
    """Values reordered to JOINT_NAMES; InputError if a joint is missing or counts disagree."""
    names = list(names)
    if len(names) != len(values):
        raise InputError(f"{what}: {len(names)} names but {len(values)} positions")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in JOINT_NAMES if n not in index]
    if missing:
        raise InputError(f"{what}: missing joints {missing}")
    arr = np.asarray(values, dtype=np.float64)
    return arr[[index[n] for n in JOINT_NAMES]]


def all_inputs() -> tuple[str, ...]:
    return (*CAMERA_NAMES, JOINTS_INPUT)
