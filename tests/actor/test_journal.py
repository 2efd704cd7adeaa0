"""The directory sink's journal (`core.journal`): a stored episode leaves no journal; what a killed
actor left (cut short anywhere) is stored at the next start, as it ended or as interrupted; the
bridge spool of a killed actor gets an end frame. Real files, real EpisodeStore, real Spool."""

from __future__ import annotations

import numpy as np
import pytest

from lwd_actor.core.journal import (
    INTERRUPTED,
    SUFFIX,
    JournalLocked,
    JournalSink,
    _record,
    read_journal,
    step_to_dict,
)
from lwd_actor.sinks import finish_interrupted_episodes
from lwd_common.episode import (
    ActionSource,
    EpisodeMeta,
    EpisodeOutcome,
    Label,
    StepRecord,
    meta_to_dict,
    outcome_to_dict,
)
from lwd_common.store import EpisodeStore
from lwd_common.transport import protocol
from lwd_common.transport.spool import Spool
from lwd_description.robot import CAMERA_NAMES, NUM_JOINTS


def step(k: int) -> StepRecord:
    return StepRecord(
        step=k,
        stamp=100.0 + k / 30,
        images={c: b"\xff\xd8" + bytes([k % 256, i]) * 50 + b"\xff\xd9" for i, c in enumerate(CAMERA_NAMES)},
        joint_pos=np.full(NUM_JOINTS, k, np.float32),
        action=np.full(NUM_JOINTS, -k, np.float32),
        source=ActionSource.POLICY if k % 3 else ActionSource.HOLD,
        chunk_id=k // 10,
        policy_version="v1",
    )


def meta(episode_id: str = "robot0-ep1") -> EpisodeMeta:
    return EpisodeMeta(episode_id, "robot0", "pick", "pick up the cube")


def sink(tmp_path) -> JournalSink:
    return JournalSink(EpisodeStore(tmp_path / "store"), tmp_path / "store" / "journal", "robot0")


def journal_files(tmp_path) -> list:
    return sorted((tmp_path / "store" / "journal" / "robot0").glob("*" + SUFFIX))


def test_an_ended_episode_is_stored_and_its_journal_removed(tmp_path):
    s = sink(tmp_path)
    s.begin(meta())
    for k in range(20):
        s.add_step(step(k))
    assert len(journal_files(tmp_path)) == 1
    s.end(EpisodeOutcome(Label.SUCCESS, 20))
    ep = s.store.get("robot0-ep1")
    assert ep.num_steps == 20 and ep.success and ep.meta.instruction == "pick up the cube"
    assert ep.images["left_wrist"][7] == step(7).images["left_wrist"]
    assert np.array_equal(ep.action[5], step(5).action)
    assert not journal_files(tmp_path) and s.store.latest_snapshot() is not None


@pytest.mark.parametrize("cut", [0, 1, 7, 500])
def test_a_killed_episode_is_stored_at_the_next_start_with_every_whole_step(tmp_path, cut):
    first = sink(tmp_path)
    first.begin(meta())
    for k in range(12):
        first.add_step(step(k))
    first.close()  # the process dies: no end, the lock goes with it
    path = journal_files(tmp_path)[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut])  # killed in the middle of writing a record
    again = sink(tmp_path)
    assert [r.episode_id for r in again.recovered] == ["robot0-ep1"]
    ep = again.store.get("robot0-ep1")
    whole = 12 if cut == 0 else 11
    assert ep.num_steps == whole and list(ep.step) == list(range(whole))
    assert ep.outcome.label is Label.FAILURE and ep.outcome.reason == INTERRUPTED
    assert f"after {whole} recorded steps" in ep.outcome.note
    assert not journal_files(tmp_path)


def test_an_episode_whose_end_was_journalled_keeps_its_outcome(tmp_path):
    """A shutdown that ran out of time after journalling the end: stored with that outcome."""
    first = sink(tmp_path)
    first.begin(meta())
    for k in range(5):
        first.add_step(step(k))
    with open(journal_files(tmp_path)[0], "ab") as f:  # end() up to its journal record
        outcome = EpisodeOutcome(Label.FAILURE, 5, reason="abort", note="actor deactivated")
        f.write(_record({"t": "end", "outcome": outcome_to_dict(outcome)}))
    first.close()
    again = sink(tmp_path)
    ep = again.store.get("robot0-ep1")
    assert (ep.outcome.reason, ep.outcome.note, ep.num_steps) == ("abort", "actor deactivated", 5)
    assert "ended failure (abort)" in again.recovered[0].message


def test_a_journal_without_a_start_is_removed_and_an_unusable_one_kept_aside(tmp_path):
    d = tmp_path / "store" / "journal" / "robot0"
    d.mkdir(parents=True)
    (d / f"robot0-empty{SUFFIX}").write_bytes(b"\x03\x00")  # killed while writing the start
    lacking = step(0)
    lacking = StepRecord(**{**lacking.__dict__, "images": {"head": lacking.images["head"]}})
    (d / f"robot0-bad{SUFFIX}").write_bytes(
        _record({"t": "begin", "meta": meta_to_dict(meta("robot0-bad"))}) + _record(step_to_dict(lacking))
    )
    s = sink(tmp_path)
    assert {r.episode_id for r in s.recovered} == {"robot0-empty", "robot0-bad"}
    assert not journal_files(tmp_path) and s.store.ids() == []
    assert read_journal(d / "unreadable" / f"robot0-bad{SUFFIX}").meta.episode_id == "robot0-bad"


def test_a_second_actor_with_the_same_robot_id_and_store_is_refused(tmp_path):
    first = sink(tmp_path)
    first.begin(meta())
    first.add_step(step(0))
    with pytest.raises(JournalLocked, match="another actor with robot id 'robot0'"):
        sink(tmp_path)
    assert journal_files(tmp_path), "the running episode's journal must not be touched"
    first.close()
    assert sink(tmp_path).store.has("robot0-ep1")  # the next start after it stopped stores it


def test_a_spooled_episode_without_its_end_gets_one_and_other_robots_are_left_alone(tmp_path):
    spool = Spool(tmp_path / "spool")
    steps = [step(k) for k in range(40)]

    def spool_episode(m: EpisodeMeta, chunks: int) -> None:
        spool.write(
            m.episode_id, 0, protocol.encode("ep_begin", episode_id=m.episode_id, seq=0, meta=meta_to_dict(m))
        )
        for seq in range(1, chunks + 1):
            cols = protocol.steps_to_chunk(steps[(seq - 1) * 15 : seq * 15], CAMERA_NAMES)
            spool.write(
                m.episode_id, seq, protocol.encode("ep_chunk", episode_id=m.episode_id, seq=seq, steps=cols)
            )

    spool_episode(meta("robot0-ep1"), 2)
    spool.write("robot0-ep1", 4, b"after a gap")  # seq 3 never written
    other = EpisodeMeta("robot1-ep1", "robot1", "pick", "")
    spool_episode(other, 1)
    done = finish_interrupted_episodes(str(tmp_path / "spool"), "robot0")
    assert len(done) == 1 and "robot0-ep1: 30 spooled steps" in done[0]
    [ours] = [e for e in spool.scan() if e.episode_id == "robot0-ep1"]
    assert ours.seqs == (0, 1, 2, 3) and ours.end_seq == 3
    end = protocol.decode(spool.read("robot0-ep1", 3))
    assert end["num_steps"] == 30 and end["outcome"]["reason"] == INTERRUPTED
    [theirs] = [e for e in spool.scan() if e.episode_id == "robot1-ep1"]
    assert theirs.end_seq is None
