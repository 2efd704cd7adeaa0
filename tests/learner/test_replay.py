"""Replay: chunk transitions, n-step returns with truncation, buffers and bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import toytask

from lwd_common.episode import EpisodeKind
from lwd_common.store import EpisodeStore
from lwd_description.robot import CAMERA_NAMES
from lwd_learner.divl import nstep_return_np
from lwd_learner.replay import MixedSampler, NormStats, ReplayBuffer, StoreReader, Vocab, episode_arrays

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
