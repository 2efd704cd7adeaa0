"""PolicyFetcher on its own, and with the actor's PolicySwitch, against a real bridge process over ZeroMQ."""

import json
from pathlib import Path

import pytest
from conftest import start_bridge

from lwd_actor.core.policy_switch import PolicySwitch
from lwd_common.policy_store import PolicyStore
from lwd_common.transport import BridgeClient, ClientConfig, PolicyFetcher
from lwd_testing.models import build_policy
from rosutil import wait_for


def robot_status(root: Path, robot_id: str = "robot0") -> dict:
    try:
        return json.loads((root / "status.json").read_text())["robots"].get(robot_id, {})
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "bridge"


@pytest.fixture
def fetcher(tmp_path, endpoint):
    f = PolicyFetcher(
        ClientConfig(
            endpoint=endpoint, robot_id="robot0", spool_dir=str(tmp_path / "spool"), policy_timeout_s=1.0
        )
    )
    yield f
    f.close()


def test_prefetch_downloads_in_the_background_and_hands_over_the_verified_file(
    procs, root, endpoint, fetcher
):
    start_bridge(procs, root, endpoint)
    blob = bytes(range(256)) * 9000  # several 1 MiB chunks
    info = PolicyStore(root / "policies").publish(blob, training_step=3)
    ready = []
    fetcher.prefetch("", ready.append)  # returns at once
    assert wait_for(lambda: ready, 10)
    assert ready[0].version == info.version and ready[0].path.read_bytes() == blob
    assert info.version in fetcher.policy_ready_at and fetcher.counters["policy_downloads"] == 1


def test_prefetch_hands_over_only_a_version_newer_than_asked(procs, root, endpoint, fetcher):
    start_bridge(procs, root, endpoint)
    store = PolicyStore(root / "policies")
    first = store.publish(b"one" * 100, training_step=1)
    assert fetcher.fetch_policy_if_newer("").version == first.version
    second = store.publish(b"two" * 100, training_step=2)
    ready = []
    fetcher.prefetch(second.version, ready.append)  # nothing newer than what we run
    fetcher.prefetch(first.version, ready.append)
    assert wait_for(lambda: ready, 10)
    assert [p.version for p in ready] == [second.version]


def test_rollback_marks_the_version_bad_for_good_and_tells_the_bridge(
    procs, root, endpoint, fetcher, tmp_path
):
    start_bridge(procs, root, endpoint)
    store = PolicyStore(root / "policies")
    first = store.publish(b"a" * 100, training_step=1)
    fetcher.fetch_policy_if_newer("")
    second = store.publish(b"b" * 100, training_step=2)
    ready = []
    fetcher.prefetch(first.version, ready.append)
    assert wait_for(lambda: ready, 10) and ready[0].version == second.version
    back = fetcher.rollback_policy(second.version, "trial inference failed")
    assert back is not None and back.version == first.version
    assert wait_for(lambda: robot_status(root).get("policy_ok") is False, 10), robot_status(root)
    assert fetcher.fetch_policy_if_newer(first.version) is None
    # a restarted robot (new fetcher, same policy directory) does not fetch it again either
    again = PolicyFetcher(
        ClientConfig(endpoint=endpoint, robot_id="robot0", spool_dir=str(tmp_path / "spool"))
    )
    try:
        assert again.fetch_policy_if_newer(first.version) is None
        assert again.counters["policy_downloads"] == 0
    finally:
        again.close()


def test_a_load_report_made_while_the_bridge_is_down_arrives_once_it_is_up(procs, root, endpoint, fetcher):
    fetcher.report_policy_loaded("v000007")  # never blocks, even with no bridge
    start_bridge(procs, root, endpoint)
    fetcher.prefetch("v000007")  # the next background round sends what is queued
    assert wait_for(lambda: robot_status(root).get("policy_version") == "v000007", 15), robot_status(root)


def test_actor_switch_and_fetcher_swap_a_good_policy_and_roll_back_a_broken_one(
    procs, root, endpoint, fetcher, tmp_path
):
    start_bridge(procs, root, endpoint)
    store = PolicyStore(root / "policies")
    good = store.publish(
        build_policy(tmp_path / "good.onnx", version="exported").read_bytes(), training_step=1
    )
    errors = []
    switch = PolicySwitch("initial", fetcher, error=errors.append)
    switch.request()  # as at activation
    assert wait_for(lambda: switch.ready_version == good.version, 20), errors
    policy = switch.at_boundary(can_swap=True, takeover=False)
    switch.swapped(policy)
    assert policy.version == good.version == switch.current_version
    assert wait_for(lambda: robot_status(root).get("policy_version") == good.version, 10), robot_status(root)

    bad = store.publish(build_policy(tmp_path / "bad.onnx", noise_horizon=10).read_bytes(), training_step=2)
    switch.request()  # as at an episode end
    assert wait_for(lambda: bad.version in fetcher.cache.bad_versions(), 20), errors
    assert wait_for(lambda: robot_status(root).get("policy_ok") is False, 10), robot_status(root)
    assert len(errors) == 1 and f"refusing new policy {bad.version}, keeping {good.version}" in errors[0]
    assert (
        switch.at_boundary(can_swap=True, takeover=False) is None and switch.current_version == good.version
    )
    downloads = fetcher.counters["policy_downloads"]
    switch.request()
    assert fetcher.fetch_policy_if_newer(good.version) is None  # the broken one is never fetched again
    assert fetcher.counters["policy_downloads"] == downloads == 2


def test_bridge_client_sends_the_fetchers_counters_with_the_streams(procs, root, endpoint, tmp_path):
    start_bridge(procs, root, endpoint)
    PolicyStore(root / "policies").publish(b"x" * 1000, training_step=1)
    client = BridgeClient(
        ClientConfig(endpoint=endpoint, robot_id="robot0", spool_dir=str(tmp_path / "s"), stats_every_s=0.2)
    )
    try:
        assert client.fetch_policy_if_newer("") is not None
        assert client.stats()["policy_downloads"] == 1 and client.stats()["frames_sent"] == 0

        def reported() -> dict:
            return robot_status(root).get("robot_counters", {})

        assert wait_for(lambda: reported().get("policy_downloads") == 1, 10), reported()
        assert "retries" in reported()
    finally:
        client.close()
