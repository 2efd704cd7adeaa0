"""ONNX Runtime session for an lwd policy (contract: `lwd_common.policy_io`).

A model is checked three times before it may drive a robot: its declared inputs
must match the contract (`read_signature`); it must fit this actor's robot
(`check_deployment`: joint-name and camera metadata naming the robot description's joints
and cameras in order, its chunk horizon, the actor's control rate if the model declares
one, an input aspect ratio that the configured camera frames have); and one trial
inference on zeros must return a finite [1, H, J] action chunk (G1: [1, 30, 16]; a real-time-chunking
policy is tried without and with a prefix). Any failure raises
`PolicyError` at load (= lifecycle configure, or a downloaded policy refused and
rolled back), never later in the control loop.

Providers are chosen deliberately (`choose_provider`, a pure function of what was
preferred, what ONNX Runtime lists, which CUDA libraries load and what the session
really runs on): CPU unless CUDA is asked for (`prefer_cuda`); CUDA is asked of ONNX
Runtime only if it lists it *and* the CUDA/cuDNN libraries it was built against load
(onnxruntime-gpu lists CUDA on machines without them and then fails noisily), and it
counts only if the session really comes up on it. `ProviderChoice.why` says, in
words, why the preferred provider is not the one running.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lwd_actor.core.observation import Observation, aspect_mismatch
from lwd_common import policy_io
from lwd_common.preprocessing import JPEG_QUALITY, policy_images
from lwd_description.robot import CAMERA_NAMES, CHUNK_HORIZON, DEFAULT_ROBOT, JOINT_NAMES, RobotDescription

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


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
    # The robot the policy must fit (its description's; defaults: the G1's).
    robot: str = DEFAULT_ROBOT
    joint_names: tuple[str, ...] = JOINT_NAMES
    cameras: tuple[str, ...] = CAMERA_NAMES
    chunk_horizon: int = CHUNK_HORIZON

    @classmethod
    def for_robot(cls, robot: RobotDescription, **kwargs) -> RuntimeConfig:
        """The config of an actor of `robot` (its rate unless `control_hz` is given)."""
        kwargs.setdefault("control_hz", robot.control_hz)
        return cls(
            robot=robot.name,
            joint_names=robot.joint_names,
            cameras=robot.camera_names,
            chunk_horizon=robot.chunk_horizon,
            **kwargs,
        )


def check_deployment(
    signature: policy_io.PolicySignature, metadata: dict[str, str], config: RuntimeConfig
) -> None:
    """Raise PolicyError if a contract-obeying model does not fit this actor (see the module doc)."""
    problems = []
    for key, want in (
        (policy_io.META_JOINT_NAMES, config.joint_names),
        (policy_io.META_CAMERAS, config.cameras),
    ):
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
            problems.append(
                f"'{key}' metadata {list(got)} differs from this robot's {list(want)} (robot {config.robot})"
            )
    if signature.horizon != config.chunk_horizon:
        problems.append(
            f"input 'noise' has a horizon of {signature.horizon} steps, robot {config.robot}'s "
            f"chunk_horizon is {config.chunk_horizon}"
        )
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
    if config.camera_hw is not None and signature.image_size is not None:
        why = aspect_mismatch(config.camera_hw, signature.image_size)
        if why:
            problems.append(f"configured frame size: {why}")
    if problems:
        raise PolicyError("policy does not fit this actor: " + "; ".join(problems))


@dataclass(frozen=True)
class ProviderChoice:
    """Which ONNX Runtime execution provider runs a policy, and why not the preferred one."""

    preferred: str  # CUDA with prefer_cuda, else CPU
    requested: tuple[str, ...]  # what ONNX Runtime was asked for, in order
    active: str  # what the session runs on (its first provider)
    why: str = ""  # why `active` is not `preferred` ("" when it is)

    @property
    def fallback(self) -> bool:
        return self.active != self.preferred

    def describe(self) -> str:
        """One line for logs and diagnostics."""
        if not self.fallback:
            return self.active
        return f"{self.active} ({self.preferred} preferred, not used: {self.why})"


def providers_to_request(
    prefer_cuda: bool, available: Sequence[str], missing_cuda_libs: Sequence[str]
) -> tuple[str, ...]:
    """Ask for CUDA (then CPU) only when it is preferred, listed, and its libraries load."""
    if prefer_cuda and CUDA in available and not missing_cuda_libs:
        return (CUDA, CPU)
    return (CPU,)


def choose_provider(
    prefer_cuda: bool,
    available: Sequence[str],
    missing_cuda_libs: Sequence[str],
    session_providers: Sequence[str],
    cuda_build: str = "",
) -> ProviderChoice:
    """What runs and why (pure): `available` is `onnxruntime.get_available_providers()`,
    `missing_cuda_libs` the CUDA/cuDNN libraries that did not load, `session_providers` what the
    session reports (`InferenceSession.get_providers()`), `cuda_build` ONNX Runtime's CUDA version."""
    preferred = CUDA if prefer_cuda else CPU
    requested = providers_to_request(prefer_cuda, available, missing_cuda_libs)
    active = session_providers[0] if session_providers else "none"
    why = ""
    if active != preferred:
        if CUDA not in available:
            why = (
                f"this ONNX Runtime has no CUDA provider (available: {', '.join(available) or 'none'}); "
                "CUDA needs the onnxruntime-gpu package"
            )
        elif missing_cuda_libs:
            built = f" {cuda_build}" if cuda_build else ""
            why = (
                f"the CUDA{built} / cuDNN 9 libraries ONNX Runtime needs do not load: "
                f"{', '.join(missing_cuda_libs)} not found (install the lwd_actor[cuda] extra, docs/actor.md)"
            )
        elif CUDA in requested:
            why = "ONNX Runtime did not start the CUDA provider (no usable GPU or driver?); its log says why"
        else:
            why = f"the session runs on {active}"
    return ProviderChoice(preferred, requested, active, why)


def cuda_libraries(cuda_build: str) -> tuple[str, ...]:
    """Shared libraries ONNX Runtime's CUDA provider loads, for its CUDA major version."""
    major = cuda_build.split(".")[0] if cuda_build else ""
    if not major.isdigit():
        return ()
    return (
        f"libcudart.so.{major}",
        f"libcublasLt.so.{major}",
        f"libcublas.so.{major}",
        "libcurand.so.10",
        "libcudnn.so.9",
    )


def missing_cuda_libraries(cuda_build: str) -> list[str]:
    """Those of `cuda_libraries` the dynamic loader cannot load now (after `preload_cuda`)."""
    if not cuda_build:
        return ["the CUDA runtime (this ONNX Runtime was not built with CUDA)"]
    missing = []
    for name in cuda_libraries(cuda_build):
        try:
            ctypes.CDLL(name)
        except OSError:
            missing.append(name)
    return missing


def preload_cuda() -> None:
    """Let ONNX Runtime load CUDA/cuDNN from the NVIDIA wheels (site-packages/nvidia/...), quietly:
    `onnxruntime.preload_dlls` prints a line per library it does not find; `missing_cuda_libraries`
    says which afterwards."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
        preload()


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
        # Past check_deployment the model's joints, cameras and horizon are the robot's.
        self.cameras = config.cameras
        self.num_joints = len(config.joint_names)
        self.horizon = self.signature.horizon
        self.sha256 = sha256_of(self.path)
        self.version = version or self.signature.version
        available = ort.get_available_providers()
        cuda_build = str(getattr(ort, "cuda_version", "") or "")
        missing: list[str] = []
        if config.prefer_cuda and CUDA in available:
            preload_cuda()
            missing = missing_cuda_libraries(cuda_build)
        providers = providers_to_request(config.prefer_cuda, available, missing)
        try:
            self.session = _session(self.path, list(providers), config.intra_op_threads)
        except Exception as exc:  # noqa: BLE001
            raise PolicyError(f"{self.path}: ONNX Runtime refused the model: {exc}") from exc
        self.provider_choice = choose_provider(
            config.prefer_cuda, available, missing, self.session.get_providers(), cuda_build
        )
        self.provider = self.provider_choice.active
        self._rng = np.random.default_rng(config.seed)
        self.jpeg_quality = config.jpeg_quality
        self.loaded_at = time.time()
        self._check_output()

    @property
    def rtc(self) -> bool:
        """The policy takes a prefix (real-time chunking: `infer`'s prefix / prefix_len / delay)."""
        return self.signature.rtc

    def _check_output(self) -> None:
        feeds = {
            policy_io.INPUT_JOINT_POS: np.zeros((1, self.num_joints), np.float32),
            policy_io.INPUT_TASK_ID: np.zeros((1,), np.int64),
            policy_io.INPUT_NOISE: np.zeros((1, self.horizon, self.num_joints), np.float32),
        }
        if self.cameras:
            h, w = self.signature.image_height, self.signature.image_width
            feeds[policy_io.INPUT_IMAGES] = np.zeros((1, len(self.cameras), h, w, 3), np.uint8)
        trials = [feeds]
        if self.rtc:  # without a prefix, and guided by a whole-chunk prefix with one frozen row
            plain = policy_io.rtc_feeds(self.horizon, self.num_joints, 1)
            prefix = np.zeros((1, self.horizon, self.num_joints), np.float32)
            guided = policy_io.rtc_feeds(self.horizon, self.num_joints, 1, prefix, self.horizon, 1)
            trials = [{**feeds, **plain}, {**feeds, **guided}]
        for trial in trials:
            try:
                out = self.session.run([policy_io.OUTPUT_ACTIONS], trial)[0]
            except Exception as exc:  # noqa: BLE001
                raise PolicyError(f"{self.path}: trial inference failed: {exc}") from exc
            want = (1, self.horizon, self.num_joints)
            if out.shape != want:
                raise PolicyError(
                    f"{self.path}: output 'actions' has shape {list(out.shape)}, want {list(want)}"
                )

    def prepare_images(self, obs: Observation) -> np.ndarray:
        """[1, C, H, W, 3] uint8 at the model's size, by `lwd_common.preprocessing` (the learner's pixels)."""
        size = (self.signature.image_height, self.signature.image_width)
        return policy_images([obs.images[cam] for cam in self.cameras], size, self.jpeg_quality)[None]

    def infer(
        self,
        obs: Observation,
        instruction: str,
        prefix: np.ndarray | None = None,
        prefix_len: int | None = None,
        delay: int | None = None,
    ) -> np.ndarray:
        """Action chunk [H, J] (float64, absolute joint targets) for one observation (G1: [30, 16]).

        Real-time chunking (a policy with `rtc`; others ignore these): `prefix` [n, J] the absolute
        targets already planned for the new chunk's first n <= H steps (the old chunk's remaining
        rows), `prefix_len` how many of them count (default n), `delay` how many execute before
        this chunk arrives (default 0): the chunk's first `delay` rows are the prefix's exactly and
        the rows up to `prefix_len` are guided towards it (`lwd_common.policy_io.rtc_feeds`)."""
        feeds = {
            policy_io.INPUT_JOINT_POS: obs.joint_pos.astype(np.float32)[None],
            policy_io.INPUT_TASK_ID: np.array([self.signature.task_id(instruction)], np.int64),
            policy_io.INPUT_NOISE: self._rng.standard_normal((1, self.horizon, self.num_joints)).astype(
                np.float32
            ),
        }
        if self.cameras:
            feeds[policy_io.INPUT_IMAGES] = self.prepare_images(obs)
        if self.rtc:
            feeds.update(policy_io.rtc_feeds(self.horizon, self.num_joints, 1, prefix, prefix_len, delay))
        return self.session.run([policy_io.OUTPUT_ACTIONS], feeds)[0][0].astype(np.float64)
