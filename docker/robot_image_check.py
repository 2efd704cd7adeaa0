"""What the robot image (docker/robot.Dockerfile) must hold, checked inside it: at build time by each
variant's last step, and on a robot by hand (the GPU variant's provider check, which needs a GPU):

    docker run --rm --gpus all lwd-robot:gpu /opt/lwd_venv/bin/python3 /opt/lwd_check/robot_image_check.py \
        --cuda --require-cuda

Checks, in order, each printed as one line; exit 1 at the first that fails:
  numpy     the distro's: imported from --numpy-dir, at the version robot-constraints.txt pins
  imports   everything the actor's processes import (the launch's and the node's)
  messages  lwd_msgs and a distro message with fixed-size (numpy) arrays serialize and round-trip
            through their C typesupport, compiled against that numpy
  scripts   (--install-base) every executable colcon installed starts with --interpreter
  onnx      a small ONNX model runs on ONNX Runtime's CPU provider
  cuda      (--cuda) ONNX Runtime has the CUDA provider and every CUDA/cuDNN library it loads is
            found (no GPU needed: loading is not running)
  gpu       (--require-cuda) a session really runs on CUDAExecutionProvider, as the actor decides
            it (lwd_actor.core.policy_runtime.choose_provider); needs a GPU and the NVIDIA runtime
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path

ACTOR_IMPORTS = (
    "numpy",
    "yaml",
    "zmq",
    "msgpack",
    "cv2",
    "onnx",
    "onnxruntime",
    "rclpy",
    "lwd_msgs.msg",
    "lwd_common.transport.curve",
    "lwd_description.robot",
    "lwd_actor.actor_node",
    "lwd_actor.core.policy_runtime",
)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class CheckFailed(Exception):
    pass


def ok(name: str, detail: str) -> None:
    print(f"ok    {name:9} {detail}", flush=True)


def pinned_numpy(constraints: Path) -> str:
    for line in constraints.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("numpy=="):
            return line.split("==", 1)[1].strip()
    raise CheckFailed(f"{constraints} pins no numpy")


def check_numpy(numpy_dir: str, constraints: Path | None) -> None:
    import numpy

    where = os.path.realpath(numpy.__file__)
    if not where.startswith(os.path.realpath(numpy_dir) + os.sep):
        raise CheckFailed(f"numpy {numpy.__version__} is imported from {where}, not from {numpy_dir}")
    if constraints is not None and numpy.__version__ != pinned_numpy(constraints):
        raise CheckFailed(
            f"numpy is {numpy.__version__}, {constraints} was resolved against {pinned_numpy(constraints)}"
        )
    ok("numpy", f"{numpy.__version__} from {os.path.dirname(where)}")


def check_imports() -> None:
    versions = []
    for name in ACTOR_IMPORTS:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure to import is the finding
            raise CheckFailed(f"import {name}: {type(exc).__name__}: {exc}") from exc
        version = getattr(module, "__version__", None)
        if version and "." not in name:
            versions.append(f"{name} {version}")
    ok("imports", ", ".join(versions))


def check_messages() -> None:
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CameraInfo

    from lwd_msgs.msg import ActionChunk

    chunk = ActionChunk(policy_version="v1", horizon=2, joint_names=["a", "b"], targets=[0.5, 1.5, 2.5, 3.5])
    back = deserialize_message(serialize_message(chunk), ActionChunk)
    if list(back.targets) != [0.5, 1.5, 2.5, 3.5] or list(back.joint_names) != ["a", "b"]:
        raise CheckFailed(f"lwd_msgs/ActionChunk did not round-trip: {back}")
    info = CameraInfo(k=[float(i) for i in range(9)])
    info_back = deserialize_message(serialize_message(info), CameraInfo)
    as_numpy = type(info_back.k).__name__ == "ndarray"
    if not as_numpy or [float(x) for x in info_back.k] != [float(i) for i in range(9)]:
        raise CheckFailed(f"sensor_msgs/CameraInfo.k did not round-trip as a numpy array: {info_back.k!r}")
    ok("messages", "lwd_msgs/ActionChunk and sensor_msgs/CameraInfo (numpy arrays) round-trip")


def check_scripts(install_base: Path, interpreter: str) -> None:
    scripts = sorted(p for p in install_base.glob("*/lib/*/*") if p.is_file() and os.access(p, os.X_OK))
    if not scripts:
        raise CheckFailed(f"no executables under {install_base}/*/lib/*/")
    for path in scripts:
        with open(path, "rb") as f:
            first = f.readline().decode(errors="replace").strip()
        if first.startswith("#!") and first != f"#!{interpreter}":
            raise CheckFailed(f"{path} starts with {first!r}, not #!{interpreter}: it would not see the venv")
    ok("scripts", f"{len(scripts)} executables run {interpreter}")


def tiny_model(path: Path) -> None:
    """y = x @ W + 1 for a [1, 4] input, opset 17 (any ONNX Runtime of the last years runs it)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(4, 2), "W")
    one = numpy_helper.from_array(np.ones((1, 2), dtype=np.float32), "one")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "one"], ["y"])],
        "lwd_image_check",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[w, one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def run_model(path: Path, providers: list[str]):
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    (y,) = session.run(None, {"x": np.ones((1, 4), dtype=np.float32)})
    if not np.allclose(y, [[13.0, 17.0]]):
        raise CheckFailed(f"the model computed {y}, not [[13, 17]] (providers {session.get_providers()})")
    return session


def check_onnx(model: Path) -> None:
    import onnxruntime as ort

    session = run_model(model, [CPU])
    ok("onnx", f"onnxruntime {ort.__version__} runs a model on {session.get_providers()[0]}")


def check_cuda() -> None:
    import onnxruntime as ort

    from lwd_actor.core.policy_runtime import cuda_libraries, missing_cuda_libraries, preload_cuda

    available = ort.get_available_providers()
    if CUDA not in available:
        raise CheckFailed(f"this onnxruntime has no {CUDA} (available: {available}): not onnxruntime-gpu?")
    build = str(getattr(ort, "cuda_version", "") or "")
    preload_cuda()
    missing = missing_cuda_libraries(build)
    if missing:
        raise CheckFailed(f"onnxruntime-gpu (CUDA {build}) cannot load {', '.join(missing)}")
    ok("cuda", f"onnxruntime {ort.__version__} (CUDA {build}) loads {', '.join(cuda_libraries(build))}")


def check_gpu(model: Path) -> None:
    import onnxruntime as ort

    from lwd_actor.core.policy_runtime import (
        choose_provider,
        missing_cuda_libraries,
        preload_cuda,
        providers_to_request,
    )

    available = ort.get_available_providers()
    build = str(getattr(ort, "cuda_version", "") or "")
    missing: list[str] = []
    if CUDA in available:
        preload_cuda()
        missing = missing_cuda_libraries(build)
    session = run_model(model, list(providers_to_request(True, available, missing)))
    choice = choose_provider(True, available, missing, session.get_providers(), build)
    if choice.fallback:
        raise CheckFailed(f"inference runs on {choice.describe()}")
    ok("gpu", f"a session runs on {choice.active}, as an actor with prefer_cuda:=true would")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--numpy-dir",
        default="/usr/lib/python3/dist-packages",
        help="where numpy must come from (default: the distro's python3-numpy)",
    )
    parser.add_argument("--constraints", type=Path, help="robot-constraints.txt: numpy must be its pin")
    parser.add_argument("--install-base", type=Path, help="colcon's install base (/opt/lwd)")
    parser.add_argument(
        "--interpreter",
        default=sys.executable,
        help="what the installed executables must run (default: this one)",
    )
    parser.add_argument("--cuda", action="store_true", help="the GPU variant: the CUDA libraries load")
    parser.add_argument(
        "--require-cuda",
        action="store_true",
        help="a session must really run on CUDA (a GPU and the NVIDIA runtime)",
    )
    args = parser.parse_args(argv)
    try:
        check_numpy(args.numpy_dir, args.constraints)
        check_imports()
        check_messages()
        if args.install_base is not None:
            check_scripts(args.install_base, args.interpreter)
        with tempfile.TemporaryDirectory() as tmp:
            model = Path(tmp) / "check.onnx"
            tiny_model(model)
            check_onnx(model)
            if args.cuda:
                check_cuda()
            if args.require_cuda:
                check_gpu(model)
    except CheckFailed as exc:
        print(f"FAIL  {exc}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
