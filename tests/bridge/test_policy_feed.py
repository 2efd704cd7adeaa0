"""Policy fan-out through S3 and the queue: the learner's feed reaches every bridge, and each bridge's
robots, verified; an outage of the queue or a bridge delays a version and never loses it; bytes that do
not match their hash are never served. Real SeaweedFS, NATS JetStream and bridge processes."""

from __future__ import annotations

import hashlib
import json
import signal

import pytest
from bridgeutil import free_endpoint
from conftest import start_bridge

from lwd_common.blobs import open_blobs
from lwd_common.policy_feed import SUBJECT, PolicyAnnouncement, PolicyFeed, info_key, onnx_key
from lwd_common.policy_store import PolicyInfo, PolicyStore
from lwd_common.queue import JetStream
from lwd_common.transport import BridgeClient, ClientConfig
from lwd_testing.nats_server import nats_jetstream
from rosutil import wait_for


@pytest.fixture
def queue(tmp_path):
    with nats_jetstream(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def plane(tmp_path, s3_server, queue):
    """The store's URL and the learner's feed over its own local policy store."""
    url = s3_server.url(f"lwd/{tmp_path.name}")
    published = PolicyStore(tmp_path / "learner_policies")
    feed = PolicyFeed(published, url, queue.url)
    yield url, published, feed
    feed.close()


def start_fed_bridge(procs, tmp_path, name, endpoint, url, queue, s3):
    return start_bridge(
        procs, tmp_path / name, endpoint, "--store", url, "--queue", queue.url, name=name, env=s3.env()
    )


def client(tmp_path, endpoint, robot_id):
    return BridgeClient(
        ClientConfig(endpoint=endpoint, robot_id=robot_id, spool_dir=str(tmp_path / f"spool_{robot_id}"))
    )


def fetched(c: BridgeClient, version: str, timeout: float = 30) -> bytes | None:
    """The bytes of `version` once the robot's bridge serves it (None if it never does)."""
    got: list = []

    def poll() -> bool:
        p = c.fetch_policy_if_newer("")
        if p is not None and p.version == version:
            got.append(p)
        return bool(got)

    return got[0].path.read_bytes() if wait_for(poll, timeout) else None


def test_a_fed_policy_reaches_the_robots_of_every_bridge_verified(procs, tmp_path, plane, queue, s3_server):
    url, published, feed = plane
    endpoints = [free_endpoint(), free_endpoint()]
    for i, ep in enumerate(endpoints):
        start_fed_bridge(procs, tmp_path, f"bridge{i}", ep, url, queue, s3_server)
    info = published.publish(b"policy-one" * 1000, training_step=100)
    assert feed.offer(info.version)
    robots = [client(tmp_path, ep, f"robot{i}") for i, ep in enumerate(endpoints)]
    try:
        for robot in robots:  # each bridge has its own durable consumer: both get the version
            assert fetched(robot, info.version) == b"policy-one" * 1000, procs.log("bridge0")
    finally:
        for robot in robots:
            robot.close()
    assert PolicyStore(tmp_path / "bridge1" / "policies").get(info.version) == info


def test_a_policy_fed_while_the_queue_is_down_reaches_the_bridge_once_it_is_back(
    procs, tmp_path, plane, queue, s3_server, endpoint
):
    url, published, feed = plane
    start_fed_bridge(procs, tmp_path, "bridge", endpoint, url, queue, s3_server)
    queue.kill()
    info = published.publish(b"policy-one" * 1000, training_step=100)
    assert not feed.offer(info.version)  # uploaded, not announced: kept pending, the learner goes on
    assert feed.pending == [info.version]
    queue.start()
    assert wait_for(feed.flush, 60)
    robot = client(tmp_path, endpoint, "robot0")
    try:
        assert fetched(robot, info.version, 60) == b"policy-one" * 1000, procs.log("bridge")[-3000:]
    finally:
        robot.close()


def test_versions_fed_while_a_bridge_is_down_are_mirrored_when_it_restarts(
    procs, tmp_path, plane, queue, s3_server, endpoint
):
    url, published, feed = plane
    bridge = start_fed_bridge(procs, tmp_path, "bridge", endpoint, url, queue, s3_server)
    procs.stop(bridge, signal.SIGKILL)
    versions = [published.publish(f"policy-{i}".encode() * 1000, training_step=i).version for i in range(3)]
    for v in versions:
        assert feed.offer(v)
    # a new bridge (a new durable consumer), and the same one back
    start_fed_bridge(procs, tmp_path, "bridge2", endpoint, url, queue, s3_server)
    start_fed_bridge(procs, tmp_path, "bridge", free_endpoint(), url, queue, s3_server)
    for root in ("bridge", "bridge2"):
        store = PolicyStore(tmp_path / root / "policies")
        assert wait_for(lambda s=store: s.versions() == versions, 60), procs.log(root)[-3000:]


def test_a_fed_version_whose_bytes_do_not_match_its_hash_is_never_served(
    procs, tmp_path, plane, queue, s3_server, endpoint
):
    url, published, feed = plane
    start_fed_bridge(procs, tmp_path, "bridge", endpoint, url, queue, s3_server)
    blobs = open_blobs(url)
    good = b"policy-one" * 1000
    forged = PolicyInfo("v000001", hashlib.sha256(good).hexdigest(), 0.0, 1, len(good))
    blobs.create(onnx_key("v000001"), b"policy-0ne" * 1000)  # bit rot or tampering in the object store
    blobs.create(info_key("v000001"), json.dumps(forged.to_dict()).encode())
    stream = JetStream(queue.url, "test", {"LWD_POLICIES": SUBJECT})
    try:
        stream.publish([(SUBJECT, PolicyAnnouncement("v000001", forged.sha256).encode(), "v000001")])
    finally:
        stream.close()
    assert wait_for(lambda: "v000001 refused" in procs.log("bridge"), 30), procs.log("bridge")[-3000:]
    assert PolicyStore(tmp_path / "bridge" / "policies").versions() == []
    published.publish(b"unused" * 10, training_step=0)  # the learner's own v000001 (never fed)
    info = published.publish(b"policy-two" * 1000, training_step=2)
    assert feed.offer(info.version)  # the follower is not stuck on the bad one
    robot = client(tmp_path, endpoint, "robot0")
    try:
        assert fetched(robot, info.version) == b"policy-two" * 1000
    finally:
        robot.close()
    assert PolicyStore(tmp_path / "bridge" / "policies").versions() == [info.version]
