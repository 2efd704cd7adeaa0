"""The bridge storing episodes in a real S3 server (SeaweedFS), and the learner's reader taking them from there."""

from __future__ import annotations

import hashlib

from bridgeutil import stream_episode
from conftest import start_bridge

from lwd_common.store import EpisodeStore
from lwd_learner.replay import StoreReader
from lwd_testing.s3_server import seaweedfs


def test_streamed_episodes_land_in_s3_and_the_learner_reads_them_verified(
    procs, tmp_path, endpoint, robot0, s3_server
):
    url = s3_server.url(f"lwd/{tmp_path.name}")
    start_bridge(procs, tmp_path / "bridge", endpoint, "--store", url, env=s3_server.env())
    expected = dict(stream_episode(robot0, i) for i in range(3))
    assert robot0.wait_idle(30), robot0.stats()
    store = EpisodeStore(url)
    snap = store.latest_snapshot()
    assert set(snap.episode_ids) == set(expected)
    assert {i: hashlib.sha256(store.read_bytes(i)).hexdigest() for i in expected} == expected
    assert dict(zip(snap.episode_ids, snap.content_hashes, strict=True)) == expected  # sha256 in the snapshot
    assert not (tmp_path / "bridge" / "store").exists()  # nothing went to the local default
    reader = StoreReader(url)
    try:
        assert sorted(e.meta.episode_id for e in reader.poll()) == sorted(expected)
        assert reader.poll() == []  # each episode once
    finally:
        reader.close()  # its prefetch thread, before the session's S3 server stops


def test_episodes_sent_while_the_object_store_is_down_are_stored_once_it_is_back(
    procs, tmp_path, endpoint, robot0
):
    with seaweedfs(tmp_path / "s3") as s3:
        url = s3.url("lwd/fleet")
        start_bridge(procs, tmp_path / "bridge", endpoint, "--store", url, env=s3.env())
        expected = dict(stream_episode(robot0, i) for i in range(2))
        assert robot0.wait_idle(30), robot0.stats()
        s3.kill()  # kill -9: the bridge cannot store or commit
        expected |= dict(stream_episode(robot0, i) for i in range(2, 5))
        assert not robot0.wait_idle(3)  # the robot keeps them spooled: nothing acknowledged
        s3.start()  # same ports, same data
        assert robot0.wait_idle(120), robot0.stats()
        snap = EpisodeStore(url).latest_snapshot()
        assert sorted(snap.episode_ids) == sorted(expected)  # every one, each once
        assert dict(zip(snap.episode_ids, snap.content_hashes, strict=True)) == expected
