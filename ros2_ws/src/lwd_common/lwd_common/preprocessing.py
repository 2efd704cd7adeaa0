"""The one owner of image preprocessing: what a camera frame becomes before a policy sees it.

Training and deployment must see identical pixels for the same camera frame, so every path
goes through the functions below and nothing else decodes, resizes or reorders channels:

- Colour order: RGB everywhere. OpenCV works in BGR; the conversion happens only here
  (`encode_jpeg`, `decode_jpeg`) and for `bgr8` camera messages (`bgr_to_rgb`, called by the
  actor's `lwd_actor.core.observation.rgb_image`).
- Storage: frames are recorded and streamed as JPEG (`encode_jpeg`, default quality
  `JPEG_QUALITY`, OpenCV's default 4:2:0 chroma subsampling).
- Resize: `cv2.INTER_AREA` (`INTERPOLATION`), after JPEG decoding (a frame is compressed at
  the camera's size, then shrunk). Area averaging is the interpolation that does not alias
  when shrinking camera frames to the model's small input; frames already at the model size
  are not touched.
- Policy input (`lwd_common.policy_io`): uint8 RGB, layout [B, cameras, H, W, 3] in
  CAMERA_NAMES order, H x W the model's. No normalisation outside the model: the learner's
  encoder and the exported ONNX graph scale by 1/255 (`PIXEL_SCALE`) themselves.

The learner only has the JPEG bytes, so the learner sees `resize(decode(jpeg))`. A deployed
policy (actor, simulator evaluation) has the raw frame; `policy_frame` puts it through the same
JPEG round trip at the quality the frame is recorded with, so it sees exactly those pixels too.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

JPEG_QUALITY = 80  # quality of recorded frames, and of the deployment-side round trip
INTERPOLATION = cv2.INTER_AREA  # the one resize interpolation (see the module docstring)
PIXEL_SCALE = 1.0 / 255.0  # uint8 -> [0, 1]; applied inside the model, never before it


def bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    """Swap the channel order of an HxWx3 image (BGR <-> RGB); a contiguous copy."""
    return np.ascontiguousarray(image[:, :, ::-1])


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Encode an HxWx3 uint8 RGB image: the one image format on disk and wire."""
    _check_rgb(rgb)
    ok, buf = cv2.imencode(".jpg", bgr_to_rgb(rgb), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode JPEG bytes to an HxWx3 uint8 RGB image."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("not a decodable JPEG image")
    return bgr_to_rgb(bgr)


def resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`rgb` at `size` = (height, width) with `INTERPOLATION`; unchanged when already that size."""
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    return cv2.resize(rgb, (w, h), interpolation=INTERPOLATION)


def frame_from_jpeg(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """What the policy sees of a recorded frame: decoded, then resized to the model's size."""
    return resize(decode_jpeg(data), size)


def frames_from_jpeg(frames: Sequence[bytes], size: tuple[int, int]) -> np.ndarray:
    """`frame_from_jpeg` of each recorded frame of one camera: uint8 [T, H, W, 3] (the learner's path)."""
    out = np.empty((len(frames), *size, 3), np.uint8)
    for i, f in enumerate(frames):
        out[i] = frame_from_jpeg(f, size)
    return out


def policy_frame(rgb: np.ndarray, size: tuple[int, int], quality: int = JPEG_QUALITY) -> np.ndarray:
    """What the policy sees of a live RGB frame: the pixels the learner will decode from its record."""
    return frame_from_jpeg(encode_jpeg(rgb, quality), size)


def policy_images(
    frames: Sequence[np.ndarray], size: tuple[int, int], quality: int = JPEG_QUALITY
) -> np.ndarray:
    """One observation's live frames (CAMERA_NAMES order) as policy input: uint8 [cameras, H, W, 3]."""
    return np.stack([policy_frame(f, size, quality) for f in frames])


def policy_batch(images: np.ndarray, size: tuple[int, int], quality: int = JPEG_QUALITY) -> np.ndarray:
    """A batch of live frames uint8 [B, cameras, h, w, 3] as the ONNX `images` input [B, cameras, H, W, 3]."""
    if images.dtype != np.uint8 or images.ndim != 5 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 [B, cameras, H, W, 3], got {images.dtype} {images.shape}")
    return np.stack([policy_images(list(obs), size, quality) for obs in images])
