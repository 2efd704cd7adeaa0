"""The bridge storing episodes in a real S3 server (SeaweedFS), and the learner's reader taking them from there."""

from __future__ import annotations

import hashlib

import pytest
from bridgeutil import make_meta, make_steps, outcome

from lwd_common.episode import Episode, content_hash
from lwd_common.store import EpisodeStore
from lwd_common.transport import BridgeClient, ClientConfig
from lwd_learner.replay import StoreReader
from lwd_testing.s3_server import seaweedfs
from rosutil import wait_for


def start_s3_bridge(procs, tmp_path, endpoint, s3, store_url):
    proc = procs.python(
        "bridge",
        "-m",
        "lwd_learner_bridge.server",
        "--root",
        str(tmp_path / "bridge"),
        "--store",
        store_url,
        "--bind",
        endpoint,
        env={**procs.env, **s3.env()},
    )
    assert wait_for(lambda: "listening on" in procs.log("bridge") or proc.poll() is not None, 30), procs.log(
        "bridge"
    )
    assert proc.poll() is None, procs.log("bridge")
    return proc


@pytest.fixture
def client(tmp_path, endpoint):
    c = BridgeClient(
        ClientConfig(
            endpoint=endpoint,
            robot_id="robot0",
            spool_dir=str(tmp_path / "spool"),
            steps_per_chunk=8,
            ack_timeout_s=0.5,
        )
    )
    yield c
    c.close()


def stream(client, index: int, n: int = 24) -> tuple[str, str]:
    meta, steps = make_meta("robot0", index), make_steps(n, seed=index)
    client.begin(meta)
    for s in steps:
        client.add_step(s)
    client.end(outcome(n, index))
    return meta.episode_id, content_hash(Episode.from_steps(meta, steps, outcome(n, index)))


def test_streamed_episodes_land_in_s3_and_the_learner_reads_them_verified(
    procs, tmp_path, endpoint, client, s3_server
):
    url = s3_server.url(f"lwd/{tmp_path.name}")
    start_s3_bridge(procs, tmp_path, endpoint, s3_server, url)
    expected = dict(stream(client, i) for i in range(3))
    assert client.wait_idle(30), client.stats()
    store = EpisodeStore(url)
    snap = store.latest_snapshot()
    assert set(snap.episode_ids) == set(expected)
    assert {i: hashlib.sha256(store.read_bytes(i)).hexdigest() for i in expected} == expected
    assert dict(zip(snap.episode_ids, snap.content_hashes, strict=True)) == expected  # sha256 in the snapshot
    assert not (tmp_path / "bridge" / "store").exists()  # nothing went to the local default
    reader = StoreReader(url)
    assert sorted(e.meta.episode_id for e in reader.poll()) == sorted(expected)
    assert reader.poll() == []  # each episode once


def test_episodes_sent_while_the_object_store_is_down_are_stored_once_it_is_back(
    procs, tmp_path, endpoint, client
):
    with seaweedfs(tmp_path / "s3") as s3:
        url = s3.url("lwd/fleet")
        start_s3_bridge(procs, tmp_path, endpoint, s3, url)
        expected = dict(stream(client, i) for i in range(2))
        assert client.wait_idle(30), client.stats()
        s3.kill()  # kill -9: the bridge cannot store or commit
        expected |= dict(stream(client, i) for i in range(2, 5))
        assert not client.wait_idle(3)  # the robot keeps them spooled: nothing acknowledged
        s3.start()  # same ports, same data
        assert client.wait_idle(120), client.stats()
        snap = EpisodeStore(url).latest_snapshot()
        assert sorted(snap.episode_ids) == sorted(expected)  # every one, each once
        assert dict(zip(snap.episode_ids, snap.content_hashes, strict=True)) == expected
