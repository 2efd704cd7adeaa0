"""The episode store's snapshots: incremental, idempotent, crash-safe, on a directory and on real S3.

The S3 cases run against a real SeaweedFS server (the session's `s3_server`, lwd_testing.s3_server), never a mock.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from lwd_common.blobs import DirectoryBlobs
from lwd_common.store import SEGMENT_VERSIONS, EpisodeCorrupt, EpisodeStore, StoreConflict


@pytest.fixture(params=["directory", "s3"])
def location(request, tmp_path):
    if request.param == "directory":
        return str(tmp_path / "store")
    server = request.getfixturevalue("s3_server")
    return server.url(f"lwd/{request.node.name.replace('[', '-').rstrip(']')}-{tmp_path.name}")


def payload(eid: str) -> bytes:
    return f"episode {eid}".encode() * 10


def put(store: EpisodeStore, *ids: str) -> dict[str, str]:
    for i in ids:
        store.put_encoded(i, payload(i))
    return {i: hashlib.sha256(payload(i)).hexdigest() for i in ids}


class CountingBlobs:
    """A real backend, counting what a store asks of it."""

    def __init__(self, inner):
        self.inner, self.location = inner, inner.location
        self.calls: dict[str, int] = {}

    def __getattr__(self, name):
        fn = getattr(self.inner, name)

        def counted(*args):
            self.calls[name] = self.calls.get(name, 0) + 1
            return fn(*args)

        return counted


def test_put_is_write_once_and_commit_records_each_episodes_sha256(location):
    store = EpisodeStore(location)
    assert store.put_encoded("a", payload("a")) is True
    assert store.put_encoded("a", b"something else") is False  # a retry never replaces what is stored
    snap = store.commit_snapshot(put(store, "b") | {"a": ""})
    assert snap.version == 1 and set(snap.episode_ids) == {"a", "b"}
    full = store.latest_snapshot()
    assert dict(zip(full.episode_ids, full.content_hashes, strict=True)) == {
        i: hashlib.sha256(payload(i)).hexdigest() for i in "ab"
    }
    assert store.read_bytes("a", full.content_hashes[full.episode_ids.index("a")]) == payload("a")


def test_readers_see_only_committed_episodes(location):
    store = EpisodeStore(location)
    store.commit_snapshot(put(store, "a"))
    put(store, "b")  # stored, not committed
    reader = EpisodeStore(location)
    assert reader.latest_snapshot().episode_ids == ("a",)
    assert reader.changes_since(1).episode_ids == ()


def test_committing_an_episode_twice_adds_it_once(location):
    store = EpisodeStore(location)
    store.commit_snapshot(put(store, "a"))
    assert store.commit_snapshot({"a": ""}).episode_ids == ()  # nothing new: no version
    assert EpisodeStore(location).commit_snapshot(["a"]).version == 1  # also for a writer that restarted
    store.commit_snapshot(put(store, "b"))
    assert store.latest_snapshot().episode_ids == ("a", "b")


def test_changes_since_gives_each_reader_only_what_is_new(location):
    store = EpisodeStore(location)
    for i in range(5):
        store.commit_snapshot(put(store, f"e{i}"))
    new = EpisodeStore(location).changes_since(3)
    assert (new.version, new.episode_ids) == (5, ("e3", "e4"))


def test_a_corrupted_episode_is_refused_against_its_snapshot_hash(tmp_path):
    store = EpisodeStore(tmp_path)
    store.commit_snapshot(put(store, "a"))
    snap = store.latest_snapshot()
    store.path_of("a").write_bytes(b"bit rot")
    with pytest.raises(EpisodeCorrupt):
        store.read_bytes("a", snap.content_hashes[0])


def test_a_commit_costs_the_same_after_a_long_history(tmp_path):
    store = EpisodeStore(tmp_path)
    for i in range(SEGMENT_VERSIONS + 40):
        store.commit_snapshot({f"e{i}": "0" * 64})
    counting = CountingBlobs(DirectoryBlobs(tmp_path))
    store.blobs = counting
    store.commit_snapshot({"late": "0" * 64})
    # one delta created and HEAD replaced: nothing read, nothing listed, whatever the history
    assert counting.calls == {"create": 1, "replace": 1}


def test_a_whole_history_read_uses_segments_not_every_delta(tmp_path):
    store = EpisodeStore(tmp_path)
    n = 2 * SEGMENT_VERSIONS + 7
    for i in range(n):
        store.commit_snapshot({f"e{i}": "0" * 64})
    assert len(list((tmp_path / "snapshots" / "segment").iterdir())) == 2
    reader = EpisodeStore(tmp_path)
    counting = CountingBlobs(DirectoryBlobs(tmp_path))
    reader.blobs = counting
    snap = reader.latest_snapshot()
    assert snap.episode_ids == tuple(f"e{i}" for i in range(n))
    assert counting.calls["read"] <= 2 + 7 + 3  # 2 segments, 7 deltas, HEAD


def test_a_writer_that_died_before_moving_head_is_rolled_forward(location):
    store = EpisodeStore(location)
    store.commit_snapshot(put(store, "a"))
    # what a writer killed between its delta and HEAD leaves behind: version 2's delta, HEAD at 1
    record = {"version": 2, "ids": ["b"], "sha256": [put(store, "b")["b"]], "created_at": 0.0}
    store.blobs.create("snapshots/delta/0000000002.json", json.dumps(record).encode())
    assert EpisodeStore(location).head_version() == 1
    next_writer = EpisodeStore(location)
    snap = next_writer.commit_snapshot(put(next_writer, "c"))
    assert snap.version == 3
    assert EpisodeStore(location).latest_snapshot().episode_ids == ("a", "b", "c")


def test_two_writers_never_both_commit_a_version(location):
    first, second = EpisodeStore(location), EpisodeStore(location)
    first.commit_snapshot(put(first, "a"))  # version 1
    second.commit_snapshot(put(second, "b"))  # second reads HEAD (1) on its first commit: version 2
    with pytest.raises(StoreConflict):
        first.commit_snapshot(put(first, "c"))  # first still believes HEAD is 1: version 2 is taken
    assert first.commit_snapshot({"c": ""}).version == 3  # it reloads and goes on; nothing lost
    assert EpisodeStore(location).latest_snapshot().episode_ids == ("a", "b", "c")


def test_a_store_written_before_deltas_is_read_and_continued(tmp_path):
    (tmp_path / "episodes").mkdir()
    (tmp_path / "snapshots").mkdir()
    for i, ids in enumerate([["a"], ["a", "b"]], start=1):
        (tmp_path / "snapshots" / f"{i:010d}.json").write_text(
            json.dumps({"version": i, "episode_ids": ids, "created_at": 1.0})
        )
    store = EpisodeStore(tmp_path)
    put(store, "a", "b")
    assert store.latest_snapshot().episode_ids == ("a", "b")
    assert store.commit_snapshot(put(store, "c")).version == 3
    reader = EpisodeStore(tmp_path)
    assert reader.latest_snapshot().episode_ids == ("a", "b", "c")
    assert reader.read_snapshot(1).episode_ids == ("a",)
    assert reader.changes_since(1).episode_ids == ("b", "c")


def test_commit_without_ids_commits_what_is_stored_but_not_committed(location):
    store = EpisodeStore(location)
    put(store, "a", "b")
    assert set(store.commit_snapshot().episode_ids) == {"a", "b"}
    assert store.commit_snapshot().episode_ids == ()


def test_an_unknown_location_scheme_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        EpisodeStore("gs://bucket/x")


def test_an_unreachable_object_store_is_an_oserror_in_one_line(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    store = EpisodeStore("s3://lwd/nowhere")
    with pytest.raises(OSError, match=r"^S3 PUT episodes/a\.lwdep: ") as info:
        store.put_encoded("a", b"x")  # the bridge answers such a failure `store_error`: the robot retries
    assert "\n" not in str(info.value)


def test_an_s3_url_mangled_into_a_path_is_refused_not_made_a_local_folder(tmp_path):
    from pathlib import Path

    with pytest.raises(ValueError, match="mangled"):
        EpisodeStore(Path("s3://bucket/fleet"))  # Path() makes it "s3:/bucket/fleet"
    assert not Path("s3:").exists()
