"""Replay: chunk transitions, n-step returns with truncation, buffers and bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import toytask

from lwd_common.episode import EpisodeKind
from lwd_common.store import EpisodeStore
from lwd_description.robot import CAMERA_NAMES
from lwd_learner.divl import nstep_return_np
from lwd_learner.replay import (
    EpisodeArrays,
    MixedSampler,
    NormStats,
    ReplayBuffer,
    StoreReader,
    Vocab,
    episode_arrays,
    episode_transitions,
)

GAMMA = 0.9


def _buffer(episodes, nstep=1, horizon=4):
    vocab = Vocab()
    buf = ReplayBuffer(horizon, nstep, GAMMA)
    for e in episodes:
        buf.add(episode_arrays(e, vocab, (8, 8), CAMERA_NAMES))
    return buf, vocab


def _success_episode(seed=0):
    return toytask.make_episode(np.random.default_rng(seed), EpisodeKind.DEMO, toytask.GOAL, 0)


def test_nstep_return_without_episode_end_in_window_is_zero_and_bootstraps():
    rewards = np.zeros(30, np.float32)
    rewards[-1] = 1.0
    ret, done = nstep_return_np(rewards, t=0, horizon=4, n=2, gamma=GAMMA)
    assert ret == 0.0 and not done


def test_nstep_return_with_episode_end_in_window_truncates_by_hand():
    rewards = np.zeros(30, np.float32)
    rewards[-1] = 1.0
    # t = 25, window of n*H = 8 steps covers 25..32, the episode ends at 29: return gamma^4, no bootstrap.
    ret, done = nstep_return_np(rewards, t=25, horizon=4, n=2, gamma=GAMMA)
    assert ret == pytest.approx(GAMMA**4) and done


def test_transition_targets_match_hand_computed_values():
    buf, _ = _buffer([_success_episode()], nstep=2, horizon=4)
    b = buf.gather(np.array([[0, 25], [0, 3], [0, 22]]))
    np.testing.assert_allclose(b["ret"], [GAMMA**4, 0.0, GAMMA**7], rtol=1e-6)
    np.testing.assert_array_equal(b["done"], [1.0, 0.0, 1.0])  # 22 + 8 = 30 = T: no s_{t+nH}
    np.testing.assert_allclose(b["discount"], GAMMA**8)
    ep = buf.episodes[0]
    np.testing.assert_array_equal(b["next_joint_pos"][1], ep.joint_pos[11])


def test_action_chunk_is_padded_with_last_action_past_the_end():
    buf, _ = _buffer([_success_episode()], horizon=4)
    b = buf.gather(np.array([[0, 28]]))
    a = buf.episodes[0].actions
    np.testing.assert_array_equal(b["actions"][0], np.stack([a[28], a[29], a[29], a[29]]))


def test_failed_episode_has_zero_return_everywhere():
    ep = toytask.make_episode(np.random.default_rng(0), EpisodeKind.ROLLOUT, toytask.DECOY, 1)
    buf, _ = _buffer([ep])
    b = buf.gather(np.array([[0, t] for t in range(30)]))
    assert b["ret"].sum() == 0.0 and b["success"].sum() == 0.0


def test_images_are_decoded_resized_and_cached_as_uint8():
    buf, _ = _buffer([_success_episode()])
    e = buf.episodes[0]
    assert e.images.dtype == np.uint8 and e.images.shape == (30, 3, 8, 8, 3)
    vocab = Vocab()
    resized = episode_arrays(_success_episode(), vocab, (4, 6), CAMERA_NAMES)
    assert resized.images.shape == (30, 3, 4, 6, 3)


def test_vocab_index_zero_is_unknown_and_capacity_is_respected():
    v = Vocab(["a", "b"], capacity=3)
    assert v.items == ["<unknown>", "a", "b"]
    assert v.index("c") == 0  # full: unknown fallback
    assert Vocab.from_json(v.to_json()).items == v.items


def test_bookkeeping_counts_kinds_labels_and_interventions():
    rng = np.random.default_rng(0)
    eps = [
        _success_episode(),
        toytask.make_episode(rng, EpisodeKind.ROLLOUT, toytask.DECOY, 1, teleop_from=20),
        toytask.make_episode(rng, EpisodeKind.PLAY, toytask.GOAL, 2),
    ]
    buf, _ = _buffer(eps)
    bk = buf.bookkeeping()
    assert bk["demo"] == 1 and bk["rollout"] == 1 and bk["play"] == 1
    assert bk["success"] == 1 and bk["failure"] == 2  # play is labelled failure even at the goal
    assert bk["intervention_steps"] == 30 + 10


def test_bc_sampling_draws_only_demonstrations():
    eps = toytask.mixed_dataset(0, n_demo=2, n_rollout=3, n_play=2)
    buf, _ = _buffer(eps)
    b = buf.sample(np.random.default_rng(0), 64, bc=True)
    assert np.all(b["success"] == 1.0) and np.all(b["intervention"] == 1.0)


def test_mixed_sampler_draws_half_online():
    off, _ = _buffer([toytask.make_episode(np.random.default_rng(0), EpisodeKind.PLAY, toytask.DECOY, 0)])
    on, _ = _buffer([_success_episode()])
    b = MixedSampler(off, on).sample(np.random.default_rng(0), 32)
    assert b["success"].sum() == 16


def test_store_reader_returns_only_new_committed_episodes(tmp_path):
    store = EpisodeStore(tmp_path)
    reader = StoreReader(tmp_path)
    assert reader.poll() == []
    store.put(_success_episode())
    assert reader.poll() == []  # not in a snapshot yet
    store.commit_snapshot()
    assert [e.meta.episode_id for e in reader.poll()] == ["toy-demo-00000"]
    store.commit_snapshot()
    assert reader.poll() == []


def test_norm_stats_refuse_empty_data():
    with pytest.raises(ValueError, match="zero episodes"):
        NormStats.from_episodes([])


# -- takeover labelling (DIVLConfig.takeover) --------------------------------------------------------

T_RESCUED, TAKEOVER = 20, (8, 12)  # policy 0..7, operator 8..11, policy 12..19, success at 19


def _rescued(truncated=False, teleop=(TAKEOVER,)):
    """A bare episode (no frames): policy steps, operator takeovers on `teleop` [start, stop), then
    success on the last step (no reward when truncated: cut off by the time limit)."""
    big_t = T_RESCUED
    intervention = np.zeros(big_t, bool)
    for a, b in teleop:
        intervention[a:b] = True
    rewards = np.zeros(big_t, np.float32)
    if not truncated:
        rewards[-1] = 1.0
    return EpisodeArrays(
        episode_id="rescued",
        kind=EpisodeKind.ROLLOUT,
        success=not truncated,
        task_id=1,
        images=np.zeros((big_t, 0, 8, 8, 3), np.uint8),
        joint_pos=np.arange(big_t, dtype=np.float32)[:, None],
        actions=np.zeros((big_t, 1), np.float32),
        rewards=rewards,
        intervention=intervention,
        truncated=truncated,
    )


def test_failure_labelling_ends_the_policy_steps_before_a_takeover_as_failures():
    tr = episode_transitions(_rescued(), horizon=2, nstep=2, gamma=GAMMA, takeover="failure")
    before = np.arange(0, 8)  # nH = 4: steps 4..7 reach the takeover at 8
    np.testing.assert_array_equal(tr.done[before], [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(tr.ret[before], 0.0, atol=1e-7)
    np.testing.assert_array_equal(tr.next_t[:4], [4, 5, 6, 7])  # bootstrap from policy states only
    np.testing.assert_allclose(tr.discount[before], GAMMA**4)


def test_failure_labelling_keeps_the_operators_steps_and_what_follows_as_today():
    ep = _rescued()
    failure = episode_transitions(ep, horizon=2, nstep=2, gamma=GAMMA, takeover="failure")
    episode = episode_transitions(ep, horizon=2, nstep=2, gamma=GAMMA, takeover="episode")
    after = np.arange(8, T_RESCUED)  # the operator's steps and the policy's after the rescue
    for field in ("ret", "done", "next_t", "discount", "intervention"):
        np.testing.assert_array_equal(getattr(failure, field)[after], getattr(episode, field)[after])
    assert failure.ret[16] == pytest.approx(GAMMA**3) and failure.done[16] == 1.0  # the success return


def test_episode_labelling_gives_a_rescued_episode_its_outcome_everywhere():
    tr = episode_transitions(_rescued(), horizon=2, nstep=2, gamma=GAMMA)  # the default
    t = np.arange(T_RESCUED)
    done = t + 4 >= T_RESCUED
    np.testing.assert_array_equal(tr.done, done)
    np.testing.assert_allclose(
        tr.ret, np.where(done, GAMMA ** (T_RESCUED - 1 - t), 0.0), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_array_equal(tr.next_t, np.minimum(t + 4, T_RESCUED - 1))
    np.testing.assert_allclose(tr.discount, GAMMA**4)
    plain = episode_transitions(_rescued(teleop=()), horizon=2, nstep=2, gamma=GAMMA)
    for field in ("ret", "done", "next_t", "discount"):  # the takeover changes nothing
        np.testing.assert_array_equal(getattr(tr, field), getattr(plain, field))


def test_failure_labelling_of_a_truncated_episode_with_a_takeover():
    tr = episode_transitions(_rescued(truncated=True), horizon=2, nstep=2, gamma=GAMMA, takeover="failure")
    np.testing.assert_array_equal(tr.done[:8], [0, 0, 0, 0, 1, 1, 1, 1])  # ends at the takeover
    t = np.arange(8, T_RESCUED)  # after it: bootstrap from s_end, end = min(t + 4, T - 1), never done
    end = np.minimum(t + 4, T_RESCUED - 1)
    np.testing.assert_array_equal(tr.done[t], 0.0)
    np.testing.assert_array_equal(tr.next_t[t], end)
    np.testing.assert_allclose(tr.discount[t], GAMMA ** (end - t).astype(float), rtol=1e-6)
    np.testing.assert_allclose(tr.ret, 0.0, atol=1e-7)


def test_every_takeover_ends_the_policy_segment_before_it():
    ep = _rescued(teleop=((3, 5), (10, 12)))
    tr = episode_transitions(ep, horizon=2, nstep=2, gamma=GAMMA, takeover="failure")
    assert tr.done[:3].tolist() == [1, 1, 1]  # before the first takeover (at 3)
    assert tr.done[5:10].tolist() == [0, 1, 1, 1, 1]  # handed back at 5, taken over again at 10
    assert tr.next_t[5] == 9 and tr.done[3] == 0.0  # an operator step bootstraps as today


def test_an_unknown_takeover_labelling_is_refused():
    with pytest.raises(ValueError, match="takeover"):
        episode_transitions(_rescued(), horizon=2, nstep=2, gamma=GAMMA, takeover="rlif")  # type: ignore[arg-type]


def test_the_configured_takeover_labelling_reaches_host_and_device_replay():
    import dataclasses
    import types

    from lwd_learner.batches import Batches
    from lwd_learner.config import LearnerConfig

    cfg = LearnerConfig()
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, horizon=2),
        divl=dataclasses.replace(cfg.divl, nstep=2, gamma=GAMMA, takeover="failure"),
    )
    want = episode_transitions(_rescued(), horizon=2, nstep=2, gamma=GAMMA, takeover="failure")
    mesh = types.SimpleNamespace(devices=np.zeros(1))
    for replay in ("host", "device"):
        c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, replay=replay))
        batches = Batches(c, agent=types.SimpleNamespace(), mesh=mesh)
        batches.add([_rescued()], online=True)
        if replay == "host":
            got = batches.online.gather(np.array([[0, t] for t in range(T_RESCUED)]))["done"]
        else:
            got = np.asarray(batches.replay.arrays().done)[:T_RESCUED]
        np.testing.assert_array_equal(got, want.done, err_msg=replay)
