"""A small real policy for cameras that are not square (640x480, 1920x1080), for tests and benchmarks.

The actor refuses frames whose aspect ratio differs from the policy input's (resizing never
squashes), and `lwd_testing.models.build_policy` only makes square inputs. Its conv + mean-pool
encoder works at any input size, and the exported graph bakes the size in at two places only:
the `images` input's H, W and the reshape that folds the cameras into the batch. This rewrites
both; the actor's own load check (a trial inference) proves the graph still runs.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import onnx

from lwd_testing.models import build_policy


def policy_hw(camera_h: int, camera_w: int, min_side: int = 24) -> tuple[int, int]:
    """The smallest policy input with the cameras' aspect ratio and no side under `min_side`."""
    g = gcd(camera_h, camera_w)
    h, w = camera_h // g, camera_w // g
    while min(h, w) < min_side:
        h, w = 2 * h, 2 * w
    return h, w


def camera_policy(path: str | Path, height: int, width: int, **kwargs) -> Path:
    """`build_policy` (same keyword arguments) with an H x W image input instead of a square one."""
    side = max(height, width)
    path = build_policy(path, image_size=side, **kwargs)
    model = onnx.load(str(path))
    dims = next(i for i in model.graph.input if i.name == "images").type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = height, width
    reshapes = 0
    for init in model.graph.initializer:
        value = onnx.numpy_helper.to_array(init)
        if value.dtype == np.int64 and value.tolist() == [-1, side, side, 3]:
            new = np.array([-1, height, width, 3], np.int64)
            init.CopyFrom(onnx.numpy_helper.from_array(new, init.name))
            reshapes += 1
    if reshapes != 1:
        raise RuntimeError(f"expected one image reshape in the exported policy, found {reshapes}")
    del model.graph.value_info[:]  # shapes inferred for the square input
    onnx.save(model, str(path))
    return path
