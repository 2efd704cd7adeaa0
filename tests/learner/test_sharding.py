"""Data parallelism: the update sharded over 4 virtual CPU devices equals the single-device update."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def test_sharded_update_equals_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    here = Path(__file__).parent
    out = subprocess.run(
        [sys.executable, str(here / "sharded_step.py")],
        cwd=here,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    assert r["device_count"] == 4
    assert r["single"]["devices"] == 1 and r["sharded"]["devices"] == 4
    for k, v in r["single"]["metrics"].items():
        np.testing.assert_allclose(r["sharded"]["metrics"][k], v, rtol=2e-4, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(r["sharded"]["param_sum"], r["single"]["param_sum"], rtol=1e-5)
    np.testing.assert_allclose(r["sharded"]["param_first"], r["single"]["param_first"], rtol=1e-4, atol=1e-6)
