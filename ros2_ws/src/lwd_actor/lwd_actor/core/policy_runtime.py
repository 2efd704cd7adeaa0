"""ONNX Runtime session for an lwd policy (contract: `lwd_common.policy_io`).

A model is checked three times before it may drive a robot: its declared inputs
must match the contract (`read_signature`); it must fit this actor
(`check_deployment`: joint-name and camera metadata naming this robot's joints and
cameras in order, the actor's control rate if the model declares one, an input
aspect ratio that the configured camera frames have); and one trial inference on
zeros must return a finite [1, 30, 16] action chunk. Any failure raises
`PolicyError` at load (= lifecycle configure, or a downloaded policy refused and
rolled back), never later in the control loop.

Providers are chosen deliberately: CPU unless CUDA is asked for; CUDA is used
only if a session really comes up on it (onnxruntime-gpu lists CUDA as
available on machines without the CUDA libraries and then fails noisily).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lwd_actor.core.observation import Observation, aspect_mismatch
from lwd_common import policy_io
from lwd_common.preprocessing import JPEG_QUALITY, policy_images
from lwd_description.robot import CAMERA_NAMES, CHUNK_HORIZON, JOINT_NAMES, NUM_JOINTS

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# Control rate the policy was trained for (a float, Hz). Not yet in lwd_common.policy_io's contract and
# not written by the learner's exporter: checked when a model declares it, assumed equal otherwise.


class PolicyError(ValueError):
    """A policy file that cannot be used (unreadable, wrong contract, wrong output)."""


@dataclass(frozen=True)
class RuntimeConfig:
    prefer_cuda: bool = False
    intra_op_threads: int = 1  # leave the other core(s) to the control loop
    seed: int = 0
    jpeg_quality: int = JPEG_QUALITY  # the recorder's: the policy sees the pixels the learner will
    control_hz: float | None = None  # the actor's rate: a model declaring another one is refused
    camera_hw: tuple[int, int] | None = None  # configured frame size (recording, else camera): H:W must match


def check_deployment(
    signature: policy_io.PolicySignature, metadata: dict[str, str], config: RuntimeConfig
) -> None:
    """Raise PolicyError if a contract-obeying model does not fit this actor (see the module doc)."""
    problems = []
    for key, want in ((policy_io.META_JOINT_NAMES, JOINT_NAMES), (policy_io.META_CAMERAS, CAMERA_NAMES)):
        if key not in metadata:
            problems.append(
                f"no '{key}' metadata: nothing says its inputs are in this robot's order {list(want)}"
            )
            continue
        try:
            got = tuple(json.loads(metadata[key]))
        except (ValueError, TypeError):
            problems.append(f"'{key}' metadata is not a JSON list: {metadata[key]!r}")
            continue
        if got != want:
            problems.append(f"'{key}' metadata {list(got)} differs from this robot's {list(want)}")
    if config.control_hz is not None and policy_io.META_CONTROL_HZ in metadata:
        try:
            hz = float(metadata[policy_io.META_CONTROL_HZ])
        except ValueError:
            hz = math.nan
        if not math.isclose(hz, config.control_hz, rel_tol=1e-6):
            problems.append(
                f"trained for control_hz {metadata[policy_io.META_CONTROL_HZ]}, the actor runs at "
                f"{config.control_hz:g} Hz (its chunks would play at the wrong speed)"
            )
    if config.camera_hw is not None:
        why = aspect_mismatch(config.camera_hw, (signature.image_height, signature.image_width))
        if why:
            problems.append(f"configured frame size: {why}")
    if problems:
        raise PolicyError("policy does not fit this actor: " + "; ".join(problems))


def sha256_of(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _session(path: Path, providers: list[str], threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only; the CUDA probe below must not spam CPU machines
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


class OnnxPolicy:
    """One loaded policy. `infer` is called from the inference worker thread only."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: RuntimeConfig = RuntimeConfig(),
        version: str | None = None,
    ):
        """`version` overrides the model's metadata version (e.g. the PolicyStore version it came under)."""
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise PolicyError(f"policy file {self.path} does not exist")
        try:
            model = onnx.load(str(self.path))
        except Exception as exc:  # noqa: BLE001 - any parse failure means "not a usable model"
            raise PolicyError(f"{self.path}: not a readable ONNX model: {exc}") from exc
        try:
            self.signature = policy_io.read_signature(model)
        except ValueError as exc:
            raise PolicyError(f"{self.path}: {exc}") from exc
        self.metadata = {p.key: p.value for p in model.metadata_props}
        try:
            check_deployment(self.signature, self.metadata, config)
        except PolicyError as exc:
            raise PolicyError(f"{self.path}: {exc}") from exc
        self.sha256 = sha256_of(self.path)
        self.version = version or self.signature.version
        providers = [CPU]
        if config.prefer_cuda and CUDA in ort.get_available_providers():
            providers = [CUDA, CPU]
        try:
            self.session = _session(self.path, providers, config.intra_op_threads)
        except Exception as exc:  # noqa: BLE001
            raise PolicyError(f"{self.path}: ONNX Runtime refused the model: {exc}") from exc
        self.provider = self.session.get_providers()[0]
        self._rng = np.random.default_rng(config.seed)
        self.jpeg_quality = config.jpeg_quality
        self.loaded_at = time.time()
        self._check_output()

    def _check_output(self) -> None:
        h, w = self.signature.image_height, self.signature.image_width
        feeds = {
            policy_io.INPUT_IMAGES: np.zeros((1, len(CAMERA_NAMES), h, w, 3), np.uint8),
            policy_io.INPUT_JOINT_POS: np.zeros((1, NUM_JOINTS), np.float32),
            policy_io.INPUT_TASK_ID: np.zeros((1,), np.int64),
            policy_io.INPUT_NOISE: np.zeros((1, CHUNK_HORIZON, NUM_JOINTS), np.float32),
        }
        try:
            out = self.session.run([policy_io.OUTPUT_ACTIONS], feeds)[0]
        except Exception as exc:  # noqa: BLE001
            raise PolicyError(f"{self.path}: trial inference failed: {exc}") from exc
        if out.shape != (1, CHUNK_HORIZON, NUM_JOINTS):
            raise PolicyError(
                f"{self.path}: output 'actions' has shape {list(out.shape)}, want [1, {CHUNK_HORIZON}, {NUM_JOINTS}]"
            )

    def prepare_images(self, obs: Observation) -> np.ndarray:
        """[1, 3, H, W, 3] uint8 at the model's size, by `lwd_common.preprocessing` (the learner's pixels)."""
        size = (self.signature.image_height, self.signature.image_width)
        return policy_images([obs.images[cam] for cam in CAMERA_NAMES], size, self.jpeg_quality)[None]

    def infer(self, obs: Observation, instruction: str) -> np.ndarray:
        """Action chunk [30, 16] (float64, absolute joint targets) for one observation."""
        feeds = {
            policy_io.INPUT_IMAGES: self.prepare_images(obs),
            policy_io.INPUT_JOINT_POS: obs.joint_pos.astype(np.float32)[None],
            policy_io.INPUT_TASK_ID: np.array([self.signature.task_id(instruction)], np.int64),
            policy_io.INPUT_NOISE: self._rng.standard_normal((1, CHUNK_HORIZON, NUM_JOINTS)).astype(
                np.float32
            ),
        }
        return self.session.run([policy_io.OUTPUT_ACTIONS], feeds)[0][0].astype(np.float64)
