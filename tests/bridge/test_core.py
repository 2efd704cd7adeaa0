"""BridgeCore without sockets: dedup, gaps, sessions, limits, expiry."""

import hashlib
import random
import time

import pytest
from bridgeutil import episode_frames, hello_frame

from lwd_common import codec
from lwd_common.policy_store import PolicyStore
from lwd_common.store import EpisodeStore
from lwd_common.transport import protocol
from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.core import BridgeCore

PEER = b"peer-1"


def hello(robot_id="robot0", config_hash=None) -> bytes:
    return hello_frame(robot_id, config_hash=config_hash)


def types(replies: list[bytes]) -> list[str]:
    return [protocol.decode(r)["t"] for r in replies]


@pytest.fixture
def core(tmp_path):
    c = BridgeCore(BridgeConfig(root=str(tmp_path)))
    assert types(c.handle(PEER, hello())) == ["welcome"]
    return c


def stored(core: BridgeCore) -> dict[str, str]:
    store = EpisodeStore(core.root / "store")
    return {e: hashlib.sha256(store.read_bytes(e)).hexdigest() for e in store.ids()}


def test_in_order_stream_is_committed_with_the_robots_hash(core):
    frames, digest = episode_frames()
    for f in frames:
        core.handle(PEER, f)
    ((peer, reply),) = core.flush()
    msg = protocol.decode(reply)
    assert (peer, msg["t"], msg["content_hash"], msg["duplicate"]) == (PEER, "committed", digest, False)
    assert stored(core) == {"robot0-ep0000": digest}
    assert EpisodeStore(core.root / "store").latest_snapshot().episode_ids == ("robot0-ep0000",)


def test_duplicated_and_shuffled_frames_store_the_episode_once(core):
    frames, digest = episode_frames(n=47, per_chunk=5)
    noisy = frames + frames[2:6] + frames[:1]
    random.Random(3).shuffle(noisy)
    for f in noisy:
        core.handle(PEER, f)
    core.flush()
    assert stored(core) == {"robot0-ep0000": digest}
    assert core.stats.counters["duplicates_dropped"] >= 5


def test_frames_after_commit_are_answered_committed_again_without_rewriting(core):
    frames, digest = episode_frames()
    for f in frames:
        core.handle(PEER, f)
    core.flush()
    mtime = (core.root / "store/episodes/robot0-ep0000.lwdep").stat().st_mtime_ns
    msg = protocol.decode(core.handle(PEER, frames[1])[0])
    assert (msg["t"], msg["content_hash"], msg["duplicate"]) == ("committed", digest, True)
    assert (core.root / "store/episodes/robot0-ep0000.lwdep").stat().st_mtime_ns == mtime


def test_end_with_gaps_asks_for_the_missing_seqs(core):
    frames, _ = episode_frames(n=40, per_chunk=10)  # seqs 0..5
    for f in [frames[0], frames[2], frames[5]]:
        core.handle(PEER, f)
    msg = protocol.decode(core.handle(PEER, frames[5])[0])
    assert (msg["t"], msg["seqs"]) == ("missing", [1, 3, 4])
    assert stored(core) == {}


def test_episode_frames_before_hello_get_no_session_and_nothing_is_kept(tmp_path):
    core = BridgeCore(BridgeConfig(root=str(tmp_path)))
    frames, _ = episode_frames()
    msg = protocol.decode(core.handle(PEER, frames[0])[0])
    assert (msg["t"], msg["code"]) == ("error", "no_session")
    assert core.assembly.partials == {}


def test_config_mismatch_is_refused_fatally(tmp_path):
    core = BridgeCore(BridgeConfig(root=str(tmp_path)))
    msg = protocol.decode(core.handle(PEER, hello(config_hash="0123456789abcdef"))[0])
    assert (msg["code"], msg["fatal"]) == ("config_mismatch", True)
    assert "0123456789abcdef" in msg["message"]
    assert core.admission.sessions == {}


def test_hello_with_key_of_another_robot_is_refused(tmp_path):
    core = BridgeCore(BridgeConfig(root=str(tmp_path)), key_names={"KEY0": "robot0"})
    msg = protocol.decode(core.handle(PEER, hello("robot1"), user_id="KEY0")[0])
    assert msg["code"] == "key_mismatch" and "belongs to 'robot0'" in msg["message"]


def test_episode_over_the_size_limit_is_rejected_and_freed(tmp_path):
    core = BridgeCore(BridgeConfig(root=str(tmp_path), max_episode_bytes=20_000))
    core.handle(PEER, hello())
    frames, _ = episode_frames(n=60, per_chunk=10)
    codes = [protocol.decode(r).get("code") for f in frames for r in core.handle(PEER, f)]
    assert "episode_too_large" in codes
    core.flush()
    assert stored(core) == {} and core.status()["buffered_bytes"] == 0


def test_content_hash_mismatch_is_rejected(core):
    frames, _ = episode_frames()
    end = codec.unpackb(frames[-1])
    end["content_hash"] = "f" * 64
    for f in frames[:-1] + [codec.packb(end)]:
        core.handle(PEER, f)
    ((peer, reply),) = core.flush()
    assert protocol.decode(reply)["code"] == "hash_mismatch"
    assert stored(core) == {} and core.status()["buffered_bytes"] == 0
    assert protocol.decode(core.handle(PEER, frames[1])[0])["code"] == "hash_mismatch"  # stays refused


def test_background_writer_commits_and_acks_frames_meanwhile(tmp_path):
    core = BridgeCore(BridgeConfig(root=str(tmp_path)), background_writes=True)
    try:
        core.handle(PEER, hello())
        frames, digest = episode_frames(n=60)
        for f in frames:
            core.handle(PEER, f)
        assert types(core.handle(PEER, frames[1])) in (["ack"], ["committed"])
        replies = []
        deadline = time.monotonic() + 20
        while not replies and time.monotonic() < deadline:
            replies = core.flush()
            time.sleep(0.01)
        assert [protocol.decode(r)["content_hash"] for _, r in replies] == [digest]
        assert not core.busy() and stored(core) == {"robot0-ep0000": digest}
    finally:
        core.close()


def test_robot_may_not_hold_too_many_open_episodes(tmp_path):
    core = BridgeCore(BridgeConfig(root=str(tmp_path), max_open_episodes_per_robot=2))
    core.handle(PEER, hello())
    for i in range(2):
        core.handle(PEER, episode_frames(index=i)[0][0])
    msg = protocol.decode(core.handle(PEER, episode_frames(index=2)[0][0])[0])
    assert msg["code"] == "too_many_open"


def test_partial_episode_of_a_silent_robot_expires(core):
    frames, _ = episode_frames()
    core.handle(PEER, frames[0])
    core.handle(PEER, frames[1])
    core.expire(now=core.assembly.partials["robot0-ep0000"].last_update + core.config.partial_timeout_s + 1)
    assert core.assembly.partials == {} and core.status()["buffered_bytes"] == 0


def test_restarted_robot_hello_drops_partials_it_no_longer_has(core):
    frames, _ = episode_frames()
    core.handle(PEER, frames[0])
    core.handle(b"peer-2", hello())
    assert core.assembly.partials == {}


def test_commit_latency_counts_episodes_that_ended_while_this_bridge_ran(core):
    for f in episode_frames(index=1, ended_at=time.time())[0]:
        core.handle(PEER, f)
    core.flush()
    status = core.status()
    assert status["commit_latency_s"]["p50"] is not None and status["counters"]["backlog_committed"] == 0


def test_episodes_spooled_before_the_bridge_started_are_backlog_not_latency(core):
    for f in episode_frames(index=2, ended_at=core.started_at - 3600)[0]:
        core.handle(PEER, f)
    core.flush()
    status = core.status()
    assert status["commit_latency_s"]["p50"] is None and status["counters"]["backlog_committed"] == 1
    assert status["robots"]["robot0"]["episodes_committed"] == 1


def test_policy_latency_counts_only_policies_published_while_this_bridge_ran(tmp_path):
    from lwd_common.policy_store import PolicyStore

    old = PolicyStore(tmp_path / "policies").publish(b"old model", 1, {})
    core = BridgeCore(BridgeConfig(root=str(tmp_path)))
    core.handle(PEER, hello())

    def loaded(version: str) -> None:
        core.handle(
            PEER,
            protocol.encode("policy_loaded", version=version, ok=True, loaded_at=time.time(), message=""),
        )

    loaded(old.version)  # a restart: measures how long the fleet was down, not delivery
    assert core.status()["policy_latency_s"]["p50"] is None
    new = PolicyStore(tmp_path / "policies").publish(b"new model", 2, {})
    loaded(new.version)
    assert core.status()["policy_latency_s"]["p50"] is not None
    assert core.status()["robots"]["robot0"]["policy_version"] == new.version


def test_columns_join_into_the_same_bytes_as_steps():
    """The bridge joins chunks as columns (no per-step objects); the file must equal the robot's from_steps."""
    from bridgeutil import make_meta, make_steps, outcome

    from lwd_common.episode import Episode, encode_episode
    from lwd_description.robot import CAMERA_NAMES

    meta, steps, out = make_meta("robot0", 5), make_steps(37, seed=5), outcome(37, 5)
    for i, s in enumerate(steps):
        s.policy_version = ["v000002", "v000001", "v000003"][(i // 9) % 3]
    chunks = [
        protocol.check_chunk(
            codec.unpackb(codec.packb(protocol.steps_to_chunk(steps[i : i + 8], CAMERA_NAMES)))
        )
        for i in range(0, 37, 8)
    ]
    assert encode_episode(Episode.from_columns(meta, chunks, out)) == encode_episode(
        Episode.from_steps(meta, steps, out)
    )
    empty = outcome(0, 5)
    assert encode_episode(Episode.from_columns(meta, [], empty)) == encode_episode(
        Episode.from_steps(meta, [], empty)
    )


POLICY_PEER = b"peer-policy"


def fetch(core: BridgeCore, version: str) -> dict:
    return protocol.decode(
        core.handle(POLICY_PEER, protocol.encode("policy_fetch", version=version, offset=0, length=64))[0]
    )


def test_policy_fetch_serves_only_exact_names_of_issued_versions(core):
    assert types(core.handle(POLICY_PEER, hello_frame("robot0", role="policy"))) == ["welcome"]
    PolicyStore(core.root / "policies").publish(b"policy one" * 300, training_step=1)
    assert fetch(core, "v000001")["t"] == "policy_data"
    # a trailing newline, Arabic-Indic digits, a pin epoch that was never issued
    for name in ("v000001\n", "v\u0660\u0660\u0660\u0660\u0660\u0661", "v2000000001"):
        msg = fetch(core, name)
        assert (msg["t"], msg["code"]) == ("error", "unknown_policy"), name


def test_the_status_says_who_drove_each_robots_newest_streamed_step(core):
    frames, _ = episode_frames(
        n=16, per_chunk=8
    )  # step 7 is the operator's (i % 7 == 0), step 15 the policy's
    begin, chunk_to_7, chunk_to_15 = frames[:3]
    core.handle(PEER, begin)
    core.handle(PEER, chunk_to_7)
    assert core.status()["robots"]["robot0"]["acting"] == "operator"
    core.handle(PEER, chunk_to_15)
    assert core.status()["robots"]["robot0"]["acting"] == "policy"
    core.handle(PEER, chunk_to_7)  # a resent older chunk is not the newest
    assert core.status()["robots"]["robot0"]["acting"] == "policy"
