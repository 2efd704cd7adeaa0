"""ONNX policy runtime: contract check at load, provider choice, async worker."""

import numpy as np
import pytest
from conftest import make_obs

from lwd_actor.core.inference_worker import InferenceRequest, InferenceWorker
from lwd_actor.core.policy_runtime import CPU, OnnxPolicy, PolicyError, RuntimeConfig
from lwd_testing.models import build_policy


def test_contract_obeying_policy_loads_on_cpu_and_returns_a_chunk(tmp_path):
    p = OnnxPolicy(build_policy(tmp_path / "p.onnx", version="v7"))
    assert p.provider == CPU and p.version == "v7" and len(p.sha256) == 64
    actions = p.infer(make_obs(0.0, np.full(16, 0.1)), "pick up the cube")
    assert actions.shape == (30, 16)
    assert actions[0, 0] == pytest.approx(0.1 + 0.001, abs=1e-3)


def test_camera_frames_of_another_size_are_resized_to_the_model_input(tmp_path):
    p = OnnxPolicy(build_policy(tmp_path / "p.onnx", image_size=24))
    assert p.prepare_images(make_obs(0.0, size=40)).shape == (1, 3, 24, 24, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"noise_horizon": 10}, "noise"), ({"action_joints": 8}, r"output 'actions' has shape \[1, 30, 8\]")],
)
def test_policy_with_wrong_shapes_is_refused_at_load(tmp_path, kwargs, match):
    with pytest.raises(PolicyError, match=match):
        OnnxPolicy(build_policy(tmp_path / "bad.onnx", **kwargs))


def test_missing_or_garbage_policy_file_is_refused(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        OnnxPolicy(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(PolicyError, match="not a readable ONNX model"):
        OnnxPolicy(tmp_path / "junk.onnx")


def test_cuda_request_falls_back_to_a_working_provider(tmp_path):
    p = OnnxPolicy(build_policy(tmp_path / "p.onnx"), RuntimeConfig(prefer_cuda=True))
    assert p.provider in ("CUDAExecutionProvider", CPU)
    assert p.infer(make_obs(0.0), "").shape == (30, 16)


def test_worker_runs_only_the_newest_pending_request(tmp_path):
    policy = OnnxPolicy(build_policy(tmp_path / "p.onnx"))
    worker = InferenceWorker(policy)
    try:
        reqs = [InferenceRequest(make_obs(0.0, np.full(16, k / 10)), k, 0, "") for k in range(20)]
        for r in reqs:
            worker.submit(r)
        assert worker.wait_idle()
        results = worker.poll()
        assert results[-1].request is reqs[-1]
        assert len(results) + worker.superseded == 20
        assert [r.chunk_id for r in results] == sorted(r.chunk_id for r in results)
    finally:
        worker.close()


def test_worker_survives_a_failing_policy_and_reports_the_error():
    class Broken:
        version = "broken"

        def infer(self, obs, instruction):
            raise RuntimeError("kaput")

    worker = InferenceWorker(Broken())
    try:
        worker.submit(InferenceRequest(make_obs(0.0), 0, 0, ""))
        worker.wait_idle()
        (res,) = worker.poll()
        assert res.actions is None and "kaput" in res.error and worker.failures == 1
    finally:
        worker.close()
