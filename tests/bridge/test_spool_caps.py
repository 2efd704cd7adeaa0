"""The robot spool's byte caps: the send path drops its oldest unsent episodes, rejected/ and
orphaned/ their oldest, the episode being recorded or on the wire is never dropped, every drop is
counted, and the running byte totals match a rescan. Real files in tmp_path, no bridge."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from bridgeutil import free_endpoint, make_meta, make_steps, outcome

from lwd_common.transport import ClientConfig, EpisodeStream
from lwd_common.transport.spool import Spool


def disk_bytes(root: Path, area: str) -> int:
    """What `du --apparent-size` would say of the frame files under root/area."""
    d = root / area
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) if d.exists() else 0


def spool_episode(spool: Spool, eid: str, frames: int, size: int, end: bool = True) -> None:
    for seq in range(frames):
        spool.write(eid, seq, b"x" * size)
    if end:
        spool.write(eid, frames, b"e" * size, is_end=True)


def test_send_path_over_its_cap_drops_the_oldest_complete_episodes_and_counts_them(tmp_path):
    spool = Spool(tmp_path, fsync=False, max_bytes=10_000)
    for i in range(4):  # 2000 bytes each (3 frames + end of 500)
        spool_episode(spool, f"ep{i}", 3, 500)
    assert spool.usage()["episodes"] == 8000 and not spool.needs_room(2000)
    assert spool.needs_room(2001)
    dropped = spool.make_room(4500)
    assert dropped == ["ep0", "ep1"]  # oldest first, only as many as needed
    assert sorted(p.name for p in spool.episodes_dir.iterdir()) == ["ep2", "ep3"]
    stats = spool.stats()
    assert stats["spool_dropped_episodes"] == 2 and stats["spool_dropped_bytes"] == 4000
    assert stats["spool_bytes"] == 4000 == disk_bytes(tmp_path, "episodes")
    assert stats["spool_over_cap"] == 0


def test_the_episode_being_written_and_kept_episodes_are_never_dropped(tmp_path):
    spool = Spool(tmp_path, fsync=False, max_bytes=5000)
    spool_episode(spool, "recording", 4, 500, end=False)  # oldest, but has no end frame yet
    spool_episode(spool, "on_wire", 3, 500)
    spool_episode(spool, "unsent", 1, 500)
    assert spool.make_room(1000, keep={"on_wire"}) == ["unsent"]
    assert spool.stats()["spool_over_cap"] == 0
    # nothing droppable is left: the write goes over the cap, and that is counted, not raised
    assert spool.make_room(3000, keep={"on_wire"}) == []
    assert spool.stats()["spool_over_cap"] == 1
    spool.write("recording", 4, b"y" * 3000)
    assert [e.seqs for e in spool.scan() if e.episode_id == "recording"] == [(0, 1, 2, 3, 4)]
    assert spool.usage()["episodes"] == disk_bytes(tmp_path, "episodes") == 7000


@pytest.mark.parametrize("why", ["rejected", "orphaned"])
def test_set_aside_directories_are_trimmed_oldest_first_to_their_caps(tmp_path, why):
    caps = {"max_rejected_bytes": 3000} if why == "rejected" else {"max_orphaned_bytes": 3000}
    spool = Spool(tmp_path, fsync=False, **caps)
    for i in range(4):
        spool_episode(spool, f"ep{i}", 1, 500)  # 1000 bytes each
        spool.set_aside(f"ep{i}", why)
    assert sorted(p.name for p in (tmp_path / why).iterdir()) == ["ep1", "ep2", "ep3"]
    spool_episode(spool, "big", 2, 500)  # 1500 bytes: two more must go
    spool.set_aside("big", why)
    assert sorted(p.name for p in (tmp_path / why).iterdir()) == ["big", "ep3"]
    stats = spool.stats()
    assert stats[f"spool_{why}_trimmed"] == 3 and stats["spool_trimmed_bytes"] == 3000
    assert stats[f"spool_{why}_bytes"] == 2500 == disk_bytes(tmp_path, why)
    assert spool.usage()["episodes"] == 0


def test_set_aside_caps_hold_exactly_and_apply_at_start(tmp_path):
    spool = Spool(tmp_path, fsync=False)  # no caps: a tool reading the spool deletes nothing
    for i in range(5):
        spool_episode(spool, f"rej{i}", 1, 500)
        spool.set_aside(f"rej{i}", "rejected")
        os.utime(tmp_path / "rejected" / f"rej{i}", (1000 + i, 1000 + i))  # set aside i seconds apart
    assert spool.usage()["rejected"] == 5000
    capped = Spool(tmp_path, fsync=False, max_rejected_bytes=2500)  # a restart with a cap
    assert sorted(p.name for p in (tmp_path / "rejected").iterdir()) == ["rej3", "rej4"]
    assert capped.usage()["rejected"] == 2000 == disk_bytes(tmp_path, "rejected")
    assert capped.stats()["spool_rejected_trimmed"] == 3


def test_running_totals_match_a_rescan(tmp_path):
    spool = Spool(tmp_path, fsync=True, max_bytes=20_000, max_rejected_bytes=3000, max_orphaned_bytes=2000)
    for i in range(12):
        if spool.needs_room(2100):
            spool.make_room(2100)
        spool_episode(spool, f"ep{i:02d}", 3, 300 + 50 * i)
        if i % 4 == 1:
            spool.set_aside(f"ep{i:02d}", "rejected")
        elif i % 4 == 2:
            spool.set_aside(f"ep{i:02d}", "orphaned")
    spool.write("ep11", 1, b"z" * 10)  # a frame written again replaces its bytes
    spool.delete("ep08")  # committed
    spool_episode(spool, "open", 2, 700, end=False)
    fresh = Spool(tmp_path)
    for area in ("episodes", "rejected", "orphaned"):
        assert spool.usage()[area] == disk_bytes(tmp_path, area) == fresh.usage()[area], area
    assert spool.usage()["rejected"] <= 3000 and spool.usage()["orphaned"] <= 2000


def test_drop_warnings_are_rate_limited(tmp_path, caplog):
    spool = Spool(tmp_path, fsync=False, max_bytes=2000, warn_every_s=60.0)
    with caplog.at_level(logging.WARNING, logger="lwd.transport"):
        for i in range(5):
            spool.make_room(1000)
            spool_episode(spool, f"ep{i}", 1, 500)
    assert spool.stats()["spool_dropped_episodes"] == 3
    assert sum("unsent episodes" in r.getMessage() for r in caplog.records) == 1


def _stream(tmp_path: Path, spool_max_bytes: int = 0) -> EpisodeStream:
    return EpisodeStream(
        ClientConfig(
            endpoint=free_endpoint(),  # no bridge: nothing is ever sent, everything backs up
            robot_id="robot0",
            spool_dir=str(tmp_path / "spool"),
            steps_per_chunk=10,
            fsync=False,
            spool_max_bytes=spool_max_bytes,
        )
    )


def _record(c: EpisodeStream, index: int, steps: int = 20) -> str:
    meta = make_meta("robot0", index)
    c.begin(meta)
    for s in make_steps(steps, seed=index):
        c.add_step(s)
    c.end(outcome(steps, index))  # must not raise however full the spool is
    return meta.episode_id


def test_a_stream_whose_bridge_is_down_keeps_the_newest_episodes_under_its_cap(tmp_path):
    probe = _stream(tmp_path / "probe")
    try:
        _record(probe, 0)
        one = probe.spool.usage()["episodes"]  # bytes of one 20-step episode
    finally:
        probe.close()
    c = _stream(tmp_path, spool_max_bytes=int(2.5 * one))
    try:
        ids = [_record(c, i) for i in range(5)]
        assert c.pending_episodes() == ids[3:]  # the oldest three were dropped, the newest two kept
        assert sorted(p.name for p in c.spool.episodes_dir.iterdir()) == ids[3:]
        stats = c.stats()
        assert stats["spool_dropped_episodes"] == 3 and stats["spool_dropped_bytes"] > 2 * one
        assert stats["spool_bytes"] == disk_bytes(tmp_path / "spool", "episodes") <= 2.5 * one
        assert stats["spooled_episodes"] == 2 and stats["spool_errors"] == 0
    finally:
        c.close()


def test_a_stream_never_drops_the_recording_episode_nor_one_on_the_wire(tmp_path):
    probe = _stream(tmp_path / "probe")
    try:
        _record(probe, 0)
        one = probe.spool.usage()["episodes"]
    finally:
        probe.close()
    c = _stream(tmp_path, spool_max_bytes=int(1.5 * one))
    try:
        first = _record(c, 0)
        with c._lock:  # as if its first frame had gone out to a welcoming bridge
            c._outgoing[first].frames[0].attempts = 1
        long = _record(c, 1, steps=40)  # alone over the cap: written whole anyway
        assert set(c.pending_episodes()) == {first, long}
        [ep] = [e for e in c.spool.scan() if e.episode_id == long]
        assert ep.end_seq is not None and ep.seqs == tuple(range(ep.end_seq + 1))
        stats = c.stats()
        assert stats["spool_dropped_episodes"] == 0 and stats["spool_over_cap"] >= 1
        third = _record(c, 2)  # `long` is complete and unsent now: it goes, the wire one stays
        assert set(c.pending_episodes()) == {first, third}
        assert c.stats()["spool_dropped_episodes"] == 1
    finally:
        c.close()
