"""The synchronised observation the policy and the recorder see, and input validation.

Conversion from raw message fields lives here (not in the node) so that bad
input handling is ROS-free and tested directly: every problem raises
`InputError` with a message fit for a log line, and the node drops the message.

Joint states may come from several sources on one topic (arm and gripper
controllers each publish their own JointState): `JointStateMerger` merges them by
name and keeps each joint's own stamp, so a source that falls silent makes its
joints stale instead of freezing them at their last value.
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lwd_common.preprocessing import bgr_to_rgb, decode_jpeg, resize
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES

JOINTS_INPUT = "joint_states"
ASPECT_TOLERANCE = 0.02  # relative H:W difference between camera and policy input still accepted
# Image data `np.frombuffer` reads without a copy; any other sequence of ints is converted.
_BUFFERS = (bytes, bytearray, memoryview, array.array, np.ndarray)


class InputError(ValueError):
    """A sensor message the actor cannot use (wrong encoding, size, joints)."""


class JointsIncomplete(InputError):
    """Joint states are usable, but some joints have not been published by any source yet."""


@dataclass(frozen=True)
class Observation:
    """Camera frames and joint positions whose stamps lie within the sync slop."""

    images: dict[str, np.ndarray]  # camera -> HxWx3 uint8 RGB (never mutated after creation)
    joint_pos: np.ndarray  # (J,) float64, the robot's joint order (G1: 16, JOINT_NAMES)
    stamps: dict[str, float]  # input name (cameras, "joint_states") -> header stamp, seconds

    @property
    def stamp(self) -> float:
        """Observation time: the joint state's stamp."""
        return self.stamps[JOINTS_INPUT]


def rgb_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: bytes | Sequence[int],
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
    if isinstance(data, _BUFFERS):
        buf = np.frombuffer(data, np.uint8)  # zero-copy for bytes / array.array (rclpy uint8[])
    else:  # a plain sequence of ints (e.g. a list)
        buf = np.asarray(data, np.uint8).ravel()
    if buf.size != height * step:
        raise InputError(f"image data has {buf.size} bytes, want height*step = {height * step}")
    img = buf.reshape(height, step)[:, : width * 3].reshape(height, width, 3)
    return bgr_to_rgb(img) if encoding == "bgr8" else np.ascontiguousarray(img)


def ordered_joints(
    names: Sequence[str],
    values: Sequence[float],
    what: str = "joint_states",
    joint_names: Sequence[str] = JOINT_NAMES,
) -> np.ndarray:
    """Values reordered to `joint_names` (the robot's order; default the G1's); InputError if a joint
    is missing or counts disagree."""
    names = list(names)
    if len(names) != len(values):
        raise InputError(f"{what}: {len(names)} names but {len(values)} positions")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise InputError(f"{what}: missing joints {missing}")
    arr = np.asarray(values, dtype=np.float64)
    return arr[[index[n] for n in joint_names]]


def all_inputs(cameras: Sequence[str] = CAMERA_NAMES) -> tuple[str, ...]:
    """The inputs a synchronised observation needs: the robot's cameras (default the G1's) and its joints."""
    return (*cameras, JOINTS_INPUT)


def input_label(name: str) -> str:
    """How an input is named in logs and messages: its topic (relative to the robot namespace)."""
    return JOINTS_INPUT if name == JOINTS_INPUT else f"camera/{name}"


def aspect_mismatch(
    frame_hw: tuple[int, int], target_hw: tuple[int, int], target: str = "the policy input"
) -> str:
    """Why frames of `frame_hw` cannot be resized to `target_hw` ("" if they can).

    Resizing to the policy's size is what preprocessing is for; squashing is not: a frame whose
    H:W differs from the policy's by more than ASPECT_TOLERANCE reaches the policy distorted,
    which only a policy trained on the same distortion (i.e. on these cameras) would expect,
    and the policy file cannot say which cameras it was trained on."""
    fh, fw = frame_hw
    th, tw = target_hw
    if abs((fh / fw) / (th / tw) - 1.0) <= ASPECT_TOLERANCE:
        return ""
    return (
        f"camera frames {fh}x{fw} (H:W {fh / fw:.3f}) do not have the aspect ratio of {target} "
        f"{th}x{tw} (H:W {th / tw:.3f}); resizing would squash them"
    )


# The largest camera frame the actor decodes (a 4096 x 4096 RGB frame is 48 MiB): the size is read
# from the encoded header first, so a small file that claims 16000 x 16000 is refused undecoded.
MAX_IMAGE_PIXELS = 4096 * 4096
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, ...): not DHT (C4), JPG (C8), DAC (CC)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def encoded_image_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR or a JPEG's start-of-frame header, without decoding any
    pixels; InputError if the header cannot be read."""
    if data.startswith(_PNG_SIGNATURE):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise InputError("PNG without an IHDR header")
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(data):
            if data[i] != 0xFF:
                raise InputError("JPEG with a corrupt marker sequence")
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
                i += 2
                continue
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in _JPEG_SOF:
                if i + 9 > len(data):
                    break
                return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
            if marker == 0xDA or length < 2:  # image data before any frame header
                break
            i += 2 + length
        raise InputError("JPEG without a frame header")
    raise InputError("neither a PNG nor a JPEG (unknown signature)")


def compressed_image(
    fmt: str, data: bytes | Sequence[int], expected_hw: tuple[int, int] | None = None
) -> np.ndarray:
    """HxWx3 uint8 RGB from a sensor_msgs/CompressedImage (jpeg or png, as image_transport's
    `compressed` plugin sends them: colour encoded BGR); InputError otherwise. The size in the
    header is checked before anything is decoded: against `expected_hw` when given, and against
    MAX_IMAGE_PIXELS, so no frame can make the actor allocate and decode a huge image."""
    kind = fmt.lower()
    if "compresseddepth" in kind or not any(k in kind for k in ("jpeg", "jpg", "png")):
        raise InputError(f"unsupported compressed image format {fmt!r} (want jpeg or png)")
    raw = bytes(data)
    h, w = encoded_image_size(raw)
    if expected_hw is not None and (h, w) != tuple(expected_hw):
        raise InputError(f"image is {h}x{w}, expected {expected_hw[0]}x{expected_hw[1]} (not decoded)")
    if h * w > MAX_IMAGE_PIXELS:
        raise InputError(f"image is {h}x{w}, larger than the {MAX_IMAGE_PIXELS} pixels the actor decodes")
    try:
        img = decode_jpeg(raw)  # OpenCV's imdecode: JPEG or PNG by content
    except ValueError as exc:
        raise InputError(f"compressed image ({fmt}) does not decode: {exc}") from exc
    if img.shape[:2] != (h, w):
        raise InputError(f"image decodes to {img.shape[0]}x{img.shape[1]}, its header says {h}x{w}")
    return img


def fit_frame(
    img: np.ndarray, record_hw: tuple[int, int] | None, policy_hw: tuple[int, int] | None
) -> np.ndarray:
    """A received frame as the actor keeps it: resized to the recording size if one is configured
    (`lwd_common.preprocessing.resize`, so recorded frames are what the policy is prepared from),
    never squashed: InputError if its aspect ratio differs from the recording size's or the policy's."""
    if record_hw is not None:
        why = aspect_mismatch(img.shape[:2], record_hw, "the recording size (record_height x record_width)")
        if why:
            raise InputError(why)
        img = resize(img, record_hw)
    if policy_hw is not None:
        why = aspect_mismatch(img.shape[:2], policy_hw)
        if why:
            raise InputError(why)
    return img


class JointStateMerger:
    """Joint positions merged by name from every JointState source, with per-joint freshness.

    `add` takes one message (names, positions, stamp) and returns the full vector of `names`
    once every joint is known and none is older than `max_age_s` relative to this message's
    stamp; until then it raises `InputError` naming the missing or stale joints (the node
    reports it as the reason nothing can start, and logs it only when it persists). Names the
    robot model does not know are ignored; a message with none of its joints is refused.
    Not thread-safe: called from the executor thread only.
    """

    def __init__(self, max_age_s: float = 0.5, names: Sequence[str] = JOINT_NAMES):
        if max_age_s <= 0:
            raise ValueError("max_age_s must be > 0")
        self.max_age_s = max_age_s
        self.names = tuple(names)
        self._index = {n: i for i, n in enumerate(self.names)}
        self._values = np.zeros(len(self.names), np.float64)
        self._stamps = np.full(len(self.names), -np.inf)

    def add(
        self, names: Sequence[str], values: Sequence[float], stamp: float, what: str = JOINTS_INPUT
    ) -> tuple[np.ndarray, float]:
        names = list(names)
        if len(names) != len(values):
            raise InputError(f"{what}: {len(names)} names but {len(values)} positions")
        pos = [(self._index[n], i) for i, n in enumerate(names) if n in self._index]
        if not pos:
            raise InputError(
                f"{what}: none of its joints {names[:4]}{'...' if len(names) > 4 else ''} "
                f"is one of this robot's"
            )
        arr = np.asarray(values, np.float64)
        mine, theirs = (list(t) for t in zip(*pos, strict=True))
        if not np.isfinite(arr[theirs]).all():
            raise InputError(f"{what}: non-finite joint position")
        if stamp < self._stamps.max():
            older = self._stamps[mine] > stamp
            if older.all():  # time went backwards for all of them (sim reset): start over
                self._stamps[:] = -np.inf
        self._values[mine] = arr[theirs]
        self._stamps[mine] = stamp
        newest = float(self._stamps.max())
        missing = [n for n, t in zip(self.names, self._stamps, strict=True) if t == -np.inf]
        if missing:
            raise JointsIncomplete(f"{what}: missing joints {missing} (no source has published them yet)")
        stale = [n for n, t in zip(self.names, self._stamps, strict=True) if newest - t > self.max_age_s]
        if stale:
            raise InputError(
                f"{what}: joints {stale} are more than {self.max_age_s:g} s older than the "
                f"newest joint state (their source stopped publishing?)"
            )
        return self._values.copy(), newest
