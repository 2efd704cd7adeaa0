"""ONNX policy runtime: contract check at load, provider choice, async worker."""

import numpy as np
import pytest
from conftest import make_obs

from lwd_actor.core.inference_worker import InferenceRequest, InferenceWorker
from lwd_actor.core.policy_runtime import (
    CPU,
    CUDA,
    OnnxPolicy,
    PolicyError,
    RuntimeConfig,
    choose_provider,
    cuda_libraries,
    providers_to_request,
)
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

        def infer(self, obs, instruction, **rtc):
            raise RuntimeError("kaput")

    worker = InferenceWorker(Broken())
    try:
        worker.submit(InferenceRequest(make_obs(0.0), 0, 0, ""))
        worker.wait_idle()
        (res,) = worker.poll()
        assert res.actions is None and "kaput" in res.error and worker.failures == 1
    finally:
        worker.close()


GPU_ORT = ["TensorrtExecutionProvider", CUDA, CPU]  # what onnxruntime-gpu lists, GPU or not


def test_provider_choice_cpu_when_cuda_is_not_preferred_even_where_it_is_available():
    choice = choose_provider(False, GPU_ORT, [], [CPU])
    assert choice.requested == (CPU,) and choice.active == CPU and not choice.fallback
    assert choice.describe() == CPU


def test_provider_choice_cuda_when_preferred_listed_loadable_and_the_session_runs_on_it():
    assert providers_to_request(True, GPU_ORT, []) == (CUDA, CPU)
    choice = choose_provider(True, GPU_ORT, [], [CUDA, CPU], "13.0")
    assert choice.active == CUDA and not choice.fallback and choice.why == ""


def test_provider_choice_says_why_cuda_is_not_used():
    # the CPU-only onnxruntime package: no CUDA provider at all
    cpu_only = choose_provider(True, [CPU], [], [CPU])
    assert cpu_only.fallback and "no CUDA provider" in cpu_only.why and "onnxruntime-gpu" in cpu_only.why
    # onnxruntime-gpu without the CUDA libraries (this machine): CUDA not even asked for
    missing = ["libcublasLt.so.13", "libcudnn.so.9"]
    assert providers_to_request(True, GPU_ORT, missing) == (CPU,)
    no_libs = choose_provider(True, GPU_ORT, missing, [CPU], "13.0")
    assert no_libs.requested == (CPU,) and no_libs.active == CPU
    assert (
        "CUDA 13.0 / cuDNN 9" in no_libs.why and "libcublasLt.so.13, libcudnn.so.9 not found" in no_libs.why
    )
    assert "lwd_actor[cuda]" in no_libs.why
    # asked for CUDA, libraries there, but ONNX Runtime fell back (no GPU, old driver)
    silent = choose_provider(True, GPU_ORT, [], [CPU], "13.0")
    assert silent.requested == (CUDA, CPU) and silent.fallback and "did not start" in silent.why
    assert silent.describe().startswith(f"{CPU} ({CUDA} preferred, not used: ")


def test_cuda_libraries_follow_the_cuda_version_onnx_runtime_was_built_with():
    assert cuda_libraries("13.0")[:3] == ("libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13")
    assert "libcudnn.so.9" in cuda_libraries("12.8") and cuda_libraries("") == ()


def test_a_policy_with_prefer_cuda_reports_what_really_runs_and_why(tmp_path):
    p = OnnxPolicy(build_policy(tmp_path / "p.onnx"), RuntimeConfig(prefer_cuda=True))
    choice = p.provider_choice
    assert p.provider == choice.active == p.session.get_providers()[0]
    if choice.active == CUDA:  # a machine with a GPU and the CUDA wheels
        assert choice.why == ""
    else:  # here: onnxruntime-gpu without the CUDA libraries
        assert choice.fallback and choice.why and choice.requested == (CPU,)


def test_worker_hands_the_requests_rtc_inputs_to_the_policy():
    seen = {}

    class Recording:
        version = "rec"

        def infer(self, obs, instruction, **rtc):
            seen.update(rtc)
            return np.zeros((30, 16))

    prefix = np.arange(30 * 16, dtype=np.float32).reshape(30, 16)
    worker = InferenceWorker(Recording())
    try:
        worker.submit(InferenceRequest(make_obs(0.0), 5, 0, "", prefix=prefix, prefix_len=11, delay=2))
        worker.wait_idle()
        (res,) = worker.poll()
        assert res.actions is not None
        np.testing.assert_array_equal(seen["prefix"], prefix)
        assert (seen["prefix_len"], seen["delay"]) == (11, 2)
    finally:
        worker.close()
