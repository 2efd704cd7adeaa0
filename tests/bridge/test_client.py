"""Robot-side behaviour that needs no bridge: the episode stream's spooling and refusals, the policy cache."""

import errno
import hashlib
import time

import pytest
from bridgeutil import free_endpoint, make_meta, make_steps, outcome

from lwd_common.policy_store import PolicyInfo
from lwd_common.transport import ClientConfig, EpisodeStream, PolicyCache, PolicyFetcher, PolicyHashMismatch


@pytest.fixture
def client(tmp_path):
    c = EpisodeStream(
        ClientConfig(
            endpoint=free_endpoint(), robot_id="robot0", spool_dir=str(tmp_path / "spool"), steps_per_chunk=10
        )
    )
    yield c
    c.close()


def test_every_frame_is_spooled_while_the_bridge_is_unreachable(client):
    meta = make_meta("robot0", 0)
    client.begin(meta)
    for s in make_steps(25, seed=0):
        client.add_step(s)
    client.end(outcome(25, 0))
    files = sorted(p.name for p in (client.spool.episodes_dir / meta.episode_id).iterdir())
    assert files == ["00000000.frm", "00000001.frm", "00000002.frm", "00000003.frm", "00000004.end"]
    assert client.pending_episodes() == [meta.episode_id]


def test_step_without_all_camera_frames_is_refused(client):
    client.begin(make_meta("robot0", 0))
    step = make_steps(1, seed=0)[0]
    del step.images["left_wrist"]
    with pytest.raises(ValueError, match="left_wrist"):
        client.add_step(step)


def test_outcome_step_count_must_match(client):
    client.begin(make_meta("robot0", 0))
    for s in make_steps(5, seed=0):
        client.add_step(s)
    with pytest.raises(ValueError, match="outcome says 6 steps, 5 were added"):
        client.end(outcome(6, 0))


def test_episode_of_another_robot_is_refused(client):
    with pytest.raises(ValueError, match="robot_id"):
        client.begin(make_meta("robot1", 0))


def test_spool_failure_makes_end_raise_instead_of_pretending(client, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    client.begin(make_meta("robot0", 0))
    monkeypatch.setattr(client.spool, "write", disk_full)  # fault injection: the disk fills up
    for s in make_steps(12, seed=0):
        client.add_step(s)
    with pytest.raises(ValueError, match="could not be closed"):
        client.end(outcome(12, 0))
    assert client.stats()["spool_errors"] >= 1 and client.pending_episodes() == []


def _info(version: str, data: bytes) -> PolicyInfo:
    return PolicyInfo(
        version=version,
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=0.0,
        training_step=1,
        size=len(data),
    )


def test_policy_cache_keeps_two_versions_and_refuses_bad_hashes(tmp_path):
    cache = PolicyCache(tmp_path)
    for i in range(1, 4):
        cache.tmp_path.write_bytes(b"v%d" % i)
        cache.install(_info(f"v00000{i}", b"v%d" % i), cache.tmp_path)
    assert [p.version for p in cache.local()] == ["v000002", "v000003"]
    cache.tmp_path.write_bytes(b"garbage")
    with pytest.raises(PolicyHashMismatch):
        cache.install(_info("v000004", b"v4"), cache.tmp_path)
    assert [p.version for p in cache.local()] == ["v000002", "v000003"] and not cache.tmp_path.exists()


def test_chunks_are_cut_early_when_their_images_get_big(tmp_path):
    c = EpisodeStream(
        ClientConfig(
            endpoint=free_endpoint(),
            robot_id="robot0",
            spool_dir=str(tmp_path / "spool"),
            steps_per_chunk=15,
            max_chunk_bytes=5000,
        )
    )
    try:
        meta = make_meta("robot0", 0)
        c.begin(meta)
        for s in make_steps(6, seed=0):  # ~2.1 kB of images per step
            c.add_step(s)
        c.end(outcome(6, 0))
        frames = sorted(p.name for p in (c.spool.episodes_dir / meta.episode_id).iterdir())
        assert len(frames) == 1 + 2 + 1  # begin, two chunks of 3 steps, end
    finally:
        c.close()


def test_without_a_bridge_policy_calls_give_nothing_and_reports_never_block(tmp_path):
    f = PolicyFetcher(
        ClientConfig(
            endpoint=free_endpoint(),
            robot_id="robot0",
            spool_dir=str(tmp_path / "spool"),
            policy_timeout_s=0.2,
        )
    )
    try:
        handed = []
        t0 = time.monotonic()
        f.report_policy_loaded("v000001")
        f.prefetch("v000001", handed.append)
        assert time.monotonic() - t0 < 0.1
        assert f.fetch_policy_if_newer("") is None  # waits for the background round, then its own request
        assert handed == [] and f.counters["policy_downloads"] == 0
    finally:
        f.close()
