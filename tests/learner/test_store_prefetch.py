"""The learner's store reader prefetching (StoreReader): a thread follows HEAD and downloads this
shard's next payloads into a byte-bounded cache; a poll returns exactly what it did without one.

Real stores (a directory, and SeaweedFS for S3), never mocks."""

from __future__ import annotations

import threading
import time

import pytest
import toytask

from lwd_common.blobs import DirectoryBlobs
from lwd_common.episode import encode_episode
from lwd_common.store import HEAD_KEY, EpisodeCorrupt, EpisodeStore
from lwd_learner.replay import StoreReader

EPISODES = toytask.mixed_dataset(0, n_demo=4, n_rollout=8, n_play=0)  # 12 episodes, ~62 KB each
IDS = [e.meta.episode_id for e in EPISODES]
EPISODE_BYTES = max(len(encode_episode(e)) for e in EPISODES)


def commit(store: EpisodeStore, ids: list[str]) -> None:
    """One snapshot version adding `ids`, in that order."""
    by_id = dict(zip(IDS, EPISODES, strict=True))
    for i in ids:
        store.put(by_id[i])
    store.commit_snapshot(ids)


def ids_of(episodes) -> list[str]:
    return [e.meta.episode_id for e in episodes]


def wait_until(check, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def reader():
    """Makes readers that follow HEAD every 20 ms; each is closed after the test."""
    made: list[StoreReader] = []

    def make(root, **kwargs) -> StoreReader:
        made.append(StoreReader(root, head_every_s=0.02, **kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_poll_returns_the_same_episodes_in_the_same_order_with_and_without_prefetching(tmp_path, reader):
    store = EpisodeStore(tmp_path)
    commit(store, IDS[:3])
    plain = StoreReader(tmp_path, prefetch_bytes=0)
    ahead = reader(tmp_path)
    ahead.start_prefetch()  # racing the polls from the start, the backlog included
    for versions in ([], [IDS[3:5]], [IDS[5:7], IDS[7:8]], [IDS[8:12]]):  # versions committed between polls
        for added in versions:
            commit(store, added)
        assert ids_of(ahead.poll()) == ids_of(plain.poll())
    assert plain.episodes_seen == ahead.episodes_seen == len(IDS)
    stats = ahead.prefetch_stats()
    assert stats["hits"] + stats["misses"] == len(IDS)


def test_the_prefetcher_fills_the_cache_ahead_of_poll_so_poll_downloads_nothing(tmp_path, reader):
    store = EpisodeStore(tmp_path)
    r = reader(tmp_path)
    assert r.poll() == [] and r.poll() == []  # the second poll starts the prefetcher
    commit(store, IDS[:4])
    commit(store, IDS[4:6])
    wait_until(lambda: r.prefetch_stats()["cached"] == 6)
    assert ids_of(r.poll()) == IDS[:6]
    stats = r.prefetch_stats()
    assert (stats["hits"], stats["misses"], stats["cached"], stats["cached_bytes"]) == (6, 0, 0, 0)


def test_the_cache_never_holds_more_than_its_byte_bound_and_poll_still_returns_everything(tmp_path, reader):
    store = EpisodeStore(tmp_path)
    bound = int(2.5 * EPISODE_BYTES)  # room for two episodes
    r = reader(tmp_path, prefetch_bytes=bound)
    r.start_prefetch()
    for batch in (IDS[:6], IDS[6:]):
        commit(store, batch)
        wait_until(lambda: r.prefetch_stats()["cached"] == 2)  # full: the other downloads wait
        time.sleep(0.2)  # ... and stay waiting
        assert r.prefetch_stats()["cached"] == 2
        assert ids_of(r.poll()) == batch  # the rest downloaded by poll itself, in commit order
    stats = r.prefetch_stats()
    assert stats["peak_bytes"] <= bound
    assert stats["hits"] >= 4 and stats["hits"] + stats["misses"] == len(IDS)


def test_sharded_readers_each_cache_and_return_only_their_shard_and_together_cover_all(tmp_path, reader):
    store = EpisodeStore(tmp_path)
    shards = [reader(tmp_path, shard=(k, 2)) for k in range(2)]
    for r in shards:
        r.start_prefetch()
    for added in (IDS[:3], IDS[3:7], IDS[7:9]):  # odd sizes: shards cross version boundaries
        commit(store, added)
    wait_until(lambda: [r.prefetch_stats()["cached"] for r in shards] == [5, 4])
    got = [ids_of(r.poll()) for r in shards]
    assert got == [IDS[0:9:2], IDS[1:9:2]]  # episode k (commit order) to shard k mod 2
    for r in shards:
        stats = r.prefetch_stats()
        assert stats["misses"] == 0 and stats["cached"] == 0  # it had cached exactly its shard


def test_episodes_prefetched_beyond_the_agreed_version_stay_cached_for_the_next_poll(tmp_path, reader):
    store = EpisodeStore(tmp_path)
    agreed = [1]
    r = reader(tmp_path, agree=lambda head: agreed[0])
    r.start_prefetch()
    commit(store, IDS[:3])
    commit(store, IDS[3:6])
    wait_until(lambda: r.prefetch_stats()["cached"] == 6)
    assert ids_of(r.poll()) == IDS[:3] and r.snapshot_version == 1
    assert r.prefetch_stats()["cached"] == 3
    agreed[0] = 2
    assert ids_of(r.poll()) == IDS[3:6]
    assert r.prefetch_stats()["hits"] == 6


def test_an_episode_whose_bytes_do_not_match_its_sha256_is_refused_with_or_without_prefetching(
    tmp_path, reader
):
    store = EpisodeStore(tmp_path)
    plain = StoreReader(tmp_path, prefetch_bytes=0)
    ahead = reader(tmp_path, downloads=1)  # one at a time, in commit order
    ahead.start_prefetch()
    for e in EPISODES[:2]:
        store.put(e)
    store.commit_snapshot({IDS[0]: "0" * 64, IDS[1]: ""})  # the first's recorded sha256 is wrong
    wait_until(lambda: ahead.prefetch_stats()["cached"] == 1)  # the second; the first was refused
    with pytest.raises(EpisodeCorrupt):
        plain.poll()
    with pytest.raises(EpisodeCorrupt):
        ahead.poll()


def test_a_failing_store_is_logged_and_retried_without_stopping_the_prefetcher(tmp_path, reader, caplog):
    store = EpisodeStore(tmp_path)
    commit(store, IDS[:1])
    r = reader(tmp_path)
    assert ids_of(r.poll()) == IDS[:1] and r.poll() == []
    DirectoryBlobs(tmp_path).replace(HEAD_KEY, b"not json")  # every read of HEAD fails
    wait_until(lambda: r.prefetch_stats()["errors"] >= 1)
    assert "prefetching from" in caplog.text
    commit(store, IDS[1:4])  # the writer rewrites HEAD
    wait_until(lambda: r.prefetch_stats()["cached"] == 3)  # the same thread, after its back-off
    assert ids_of(r.poll()) == IDS[1:4]


def test_close_stops_the_prefetch_thread_and_polls_still_read_everything(tmp_path, reader):
    store = EpisodeStore(tmp_path)
    before = set(threading.enumerate())
    r = reader(tmp_path)
    r.start_prefetch()
    started = set(threading.enumerate()) - before
    assert started
    r.close()
    r.close()  # twice is fine
    assert not any(t.is_alive() for t in started)
    commit(store, IDS[:3])
    assert ids_of(r.poll()) == IDS[:3] and r.poll() == []  # downloaded by poll; no thread again
    assert set(threading.enumerate()) - before == set()
    assert r.prefetch_stats()["misses"] == 3


def test_prefetching_from_s3_fills_the_cache_and_poll_returns_the_episodes(tmp_path, reader, s3_server):
    url = s3_server.url(f"lwd/prefetch-{tmp_path.name}")
    store = EpisodeStore(url)
    r = reader(url)
    r.start_prefetch()
    commit(store, IDS[:4])
    wait_until(lambda: r.prefetch_stats()["cached"] == 4)
    assert ids_of(r.poll()) == IDS[:4]
    assert r.prefetch_stats()["hits"] == 4
