"""A client in this process and a bridge in its own process, over real ZeroMQ on localhost."""

import json
import subprocess
import sys

import pytest
from bridgeutil import make_meta, make_steps, outcome, snapshot_ids, stored_hashes
from conftest import start_bridge

from lwd_common.episode import Episode, content_hash
from lwd_common.policy_store import PolicyStore
from lwd_common.transport import BridgeClient, BridgeError, ClientConfig
from rosutil import wait_for


@pytest.fixture
def bridge(procs, tmp_path, endpoint):
    root = tmp_path / "bridge"
    start_bridge(procs, root, endpoint)
    return root


@pytest.fixture
def client(robot0):
    return robot0


def stream(client, index: int, n: int = 30) -> str:
    meta, steps = make_meta("robot0", index), make_steps(n, seed=index)
    client.begin(meta)
    for s in steps:
        client.add_step(s)
    client.end(outcome(n, index))
    return content_hash(Episode.from_steps(meta, steps, outcome(n, index)))


def test_streamed_episodes_are_stored_byte_identical_and_visible(bridge, client):
    expected = {f"robot0-ep{i:04d}": stream(client, i, n=20 + i) for i in range(3)}
    assert client.wait_idle(20), client.stats()
    assert stored_hashes(bridge) == expected
    assert snapshot_ids(bridge) == set(expected)
    assert client.stats()["committed"] == 3 and not any((client.spool.episodes_dir).iterdir())


def test_policy_is_downloaded_only_when_newer(bridge, client):
    store = PolicyStore(bridge / "policies")
    assert client.fetch_policy_if_newer("") is None
    blob = bytes(range(256)) * 9000  # > 2 MiB at the default chunk size of 1 MiB: several chunks
    info = store.publish(blob, training_step=100, extra={"note": "first"})
    got = client.fetch_policy_if_newer(None)
    assert got is not None and got.version == info.version and got.path.read_bytes() == blob
    assert got.info == info
    assert client.fetch_policy_if_newer(info.version) is None


def test_corrupted_checkpoint_is_refused_and_previous_kept(bridge, client):
    store = PolicyStore(bridge / "policies")
    first = store.publish(b"policy-one" * 1000, training_step=1)
    assert client.fetch_policy_if_newer("").version == first.version
    second = store.publish(b"policy-two" * 1000, training_step=2)
    store.path_of(second.version).write_bytes(b"policy-tw0" * 1000)  # bit rot after publishing
    assert client.fetch_policy_if_newer(first.version) is None
    assert client.stats()["policy_rejected"] == 1 and "sha256" in client.error
    assert [p.version for p in client.policies.local()] == [first.version]
    assert not client.policies.tmp_path.exists()


def test_rollback_returns_previous_policy_and_never_refetches_the_bad_one(bridge, client):
    store = PolicyStore(bridge / "policies")
    first = store.publish(b"a" * 100, training_step=1)
    client.fetch_policy_if_newer("")
    second = store.publish(b"b" * 100, training_step=2)
    assert client.fetch_policy_if_newer(first.version).version == second.version
    back = client.rollback_policy(second.version)
    assert back.version == first.version
    assert client.fetch_policy_if_newer(first.version) is None


def test_loaded_policy_shows_in_fleet_status(bridge, client, endpoint):
    info = PolicyStore(bridge / "policies").publish(b"x" * 10, training_step=5)
    stream(client, 0)
    client.fetch_policy_if_newer("")
    client.report_policy_loaded(info.version)
    assert client.wait_idle(20)

    def robot0_policy() -> str:
        robots = json.loads((bridge / "status.json").read_text())["robots"]
        return robots.get("robot0", {}).get("policy_version", "")

    assert wait_for(lambda: robot0_policy() == info.version, 10)
    out = subprocess.run(
        [sys.executable, "-m", "lwd_learner_bridge.status", "--endpoint", endpoint],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("robot0"))
    assert info.version in row and " 1 " in row
    assert "episode end->committed p50" in out.stdout


def test_client_with_other_robot_config_is_refused_clearly(bridge, tmp_path, endpoint):
    c = BridgeClient(
        ClientConfig(
            endpoint=endpoint,
            robot_id="robot9",
            spool_dir=str(tmp_path / "s9"),
            config_hash="deadbeefdeadbeef",
        )
    )
    try:
        with pytest.raises(BridgeError, match="config hash deadbeefdeadbeef"):
            c.wait_connected(10)
    finally:
        c.close()


def test_prefetching_client_has_the_new_policy_ready_before_the_boundary(bridge, tmp_path, endpoint):
    c = BridgeClient(
        ClientConfig(
            endpoint=endpoint, robot_id="robot3", spool_dir=str(tmp_path / "s3"), policy_prefetch_s=0.1
        )
    )
    try:
        info = PolicyStore(bridge / "policies").publish(b"p" * 5000, training_step=9)
        assert wait_for(lambda: info.version in c.policy_ready_at, 10)
        got = c.fetch_policy_if_newer("")
        assert got.version == info.version and got.path.read_bytes() == b"p" * 5000
        assert c.fetch_policy_if_newer(info.version) is None
    finally:
        c.close()
