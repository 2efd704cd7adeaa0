"""Policy swaps at episode boundaries: newer policy loaded under its published version, broken ones refused once."""

from lwd_actor.core.policy_switch import PolicySwitcher, PolicyUpdate
from lwd_testing.models import build_policy


def test_provider_update_is_loaded_under_its_published_version(tmp_path):
    path = build_policy(tmp_path / "v000003.onnx", version="exported-at-step-900")
    switcher = PolicySwitcher(lambda current: PolicyUpdate(str(path), "v000003"))
    policy = switcher.newer_policy("v000002")
    assert policy is not None and policy.version == "v000003"


def test_bare_path_takes_the_version_from_the_model_metadata(tmp_path):
    path = build_policy(tmp_path / "p.onnx", version="meta-v9")
    assert PolicySwitcher(lambda current: str(path)).newer_policy("x").version == "meta-v9"


def test_nothing_newer_keeps_the_current_policy():
    asked = []
    switcher = PolicySwitcher(lambda current: asked.append(current))
    assert switcher.newer_policy("v000001") is None and asked == ["v000001"]


def test_broken_policy_is_refused_reported_and_not_retried(tmp_path):
    bad = build_policy(tmp_path / "bad.onnx", noise_horizon=10)
    reports, logs, calls = [], [], []

    def provider(current):
        calls.append(current)
        return PolicyUpdate(str(bad), "v000004")

    switcher = PolicySwitcher(provider, report=lambda *r: reports.append(r), log=logs.append)
    assert switcher.newer_policy("v000003") is None
    assert switcher.newer_policy("v000003") is None
    assert len(calls) == 2 and len(reports) == 1 and reports[0][:2] == ("v000004", False)
    assert "keeping v000003" in logs[0]


def test_a_failing_provider_does_not_block_the_boundary():
    def provider(current):
        raise ConnectionError("bridge down")

    logs = []
    assert PolicySwitcher(provider, log=logs.append).newer_policy("v1") is None
    assert "bridge down" in logs[0]
