"""The S3 + queue data plane: announcements on a real NATS JetStream server, a coordinator process
committing them to a real S3 store (SeaweedFS), and kill -9 of either at any moment losing nothing."""

from __future__ import annotations

import hashlib
import signal
from collections import Counter

import pytest
from bridgeutil import stream_episode
from conftest import start_bridge

from lwd_common.store import EpisodeStore
from lwd_learner.replay import StoreReader
from lwd_learner_bridge.announcements import Announcement, Announcer
from lwd_testing.nats_server import nats_jetstream
from rosutil import wait_for


@pytest.fixture
def queue(tmp_path):
    with nats_jetstream(tmp_path / "nats") as server:
        yield server


def announce_stored(store: EpisodeStore, queue_url: str, ids: list[str]) -> dict[str, str]:
    hashes = {}
    for i in ids:
        data = f"episode {i}".encode() * 20
        store.put_encoded(i, data)
        hashes[i] = hashlib.sha256(data).hexdigest()
    announce(queue_url, hashes)
    return hashes


def announce(queue_url: str, hashes: dict[str, str]) -> None:
    announcer = Announcer(queue_url)
    try:
        announcer.publish([Announcement(i, h, "robot0", 0.0) for i, h in hashes.items()])
    finally:
        announcer.close()


def start_coordinator(procs, store_url, queue_url, s3, name="coordinator", batch=16):
    return procs.python(
        name,
        "-m",
        "lwd_learner_bridge.coordinator",
        "--store",
        store_url,
        "--queue",
        queue_url,
        "--batch",
        str(batch),
        env={**procs.env, **s3.env()},
    )


def committed(url: str) -> list[str]:
    snap = EpisodeStore(url).latest_snapshot()
    return list(snap.episode_ids) if snap else []


def test_a_coordinator_killed_mid_stream_commits_every_announcement_exactly_once(
    procs, queue, s3_server, tmp_path
):
    url = s3_server.url(f"lwd/{tmp_path.name}")
    # 2,000 announcements committed 4 at a time: 500 commits, seconds of work, so the kill lands mid-stream
    hashes = {f"robot0-ep{i:04d}": hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000)}
    announce(queue.url, hashes)
    first = start_coordinator(procs, url, queue.url, s3_server, batch=4)
    assert wait_for(lambda: len(committed(url)) >= 16, 60), procs.log("coordinator")
    procs.stop(first, signal.SIGKILL)  # somewhere between fetch, commit and ack
    partial = len(committed(url))
    assert partial < len(hashes)  # the kill did land mid-stream
    start_coordinator(procs, url, queue.url, s3_server, name="coordinator2", batch=512)
    assert wait_for(lambda: len(committed(url)) >= len(hashes), 120), procs.log("coordinator2")
    snap = EpisodeStore(url).latest_snapshot()
    assert Counter(snap.episode_ids) == Counter(hashes.keys())  # every one, none twice
    assert dict(zip(snap.episode_ids, snap.content_hashes, strict=True)) == hashes


def test_announcements_survive_a_kill_of_the_queue_server(procs, queue, s3_server, tmp_path):
    url = s3_server.url(f"lwd/{tmp_path.name}")
    ids = [f"robot1-ep{i:04d}" for i in range(30)]
    announce_stored(EpisodeStore(url), queue.url, ids)
    queue.kill()  # kill -9 before anyone consumed them
    queue.start()
    start_coordinator(procs, url, queue.url, s3_server)
    assert wait_for(lambda: len(committed(url)) >= len(ids), 60), procs.log("coordinator")
    assert Counter(committed(url)) == Counter(ids)


def test_the_same_episode_announced_twice_is_committed_once(procs, queue, s3_server, tmp_path):
    url = s3_server.url(f"lwd/{tmp_path.name}")
    store = EpisodeStore(url)
    announce_stored(store, queue.url, ["robot0-a", "robot0-b"])
    start_coordinator(procs, url, queue.url, s3_server)
    assert wait_for(lambda: len(committed(url)) == 2, 60), procs.log("coordinator")
    announce_stored(store, queue.url, ["robot0-a", "robot0-c"])  # a bridge that restarted re-announces "a"
    assert wait_for(lambda: "robot0-c" in committed(url), 60), procs.log("coordinator")
    assert Counter(committed(url)) == Counter(["robot0-a", "robot0-b", "robot0-c"])


def start_data_plane_bridge(procs, tmp_path, endpoint, url, queue, s3):
    start_bridge(procs, tmp_path / "bridge", endpoint, "--store", url, "--queue", queue.url, env=s3.env())


def test_robot_to_learner_through_s3_and_the_queue_with_the_coordinator_killed(
    procs, queue, s3_server, tmp_path, endpoint, robot0
):
    url = s3_server.url(f"lwd/{tmp_path.name}")
    start_data_plane_bridge(procs, tmp_path, endpoint, url, queue, s3_server)
    coordinator = start_coordinator(procs, url, queue.url, s3_server)
    expected = dict(stream_episode(robot0, i) for i in range(3))
    assert robot0.wait_idle(30), robot0.stats()  # acknowledged once stored and announced
    procs.stop(coordinator, signal.SIGKILL)
    expected |= dict(stream_episode(robot0, i) for i in range(3, 6))
    assert robot0.wait_idle(30), robot0.stats()  # the queue holds them: robots need no coordinator
    start_coordinator(procs, url, queue.url, s3_server, name="coordinator2")
    assert wait_for(lambda: len(committed(url)) >= len(expected), 60), procs.log("coordinator2")
    snap = EpisodeStore(url).latest_snapshot()
    assert dict(zip(snap.episode_ids, snap.content_hashes, strict=True)) == expected
    assert sorted(e.meta.episode_id for e in StoreReader(url).poll()) == sorted(expected)


def test_episodes_sent_while_the_queue_server_is_down_are_announced_once_it_is_back(
    procs, queue, s3_server, tmp_path, endpoint, robot0
):
    url = s3_server.url(f"lwd/{tmp_path.name}")
    start_data_plane_bridge(procs, tmp_path, endpoint, url, queue, s3_server)
    start_coordinator(procs, url, queue.url, s3_server)
    expected = dict([stream_episode(robot0, 0)])
    assert robot0.wait_idle(30), robot0.stats()
    queue.kill()
    expected |= dict(stream_episode(robot0, i) for i in range(1, 4))
    assert not robot0.wait_idle(3)  # stored in S3, not announced: the robot keeps them
    queue.start()
    assert robot0.wait_idle(90), (robot0.stats(), procs.log("bridge")[-3000:])
    assert wait_for(lambda: len(committed(url)) >= len(expected), 60), procs.log("coordinator")
    assert Counter(committed(url)) == Counter(expected.keys())
