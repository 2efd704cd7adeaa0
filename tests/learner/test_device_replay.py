"""Device-resident replay: the same transitions as the host buffer, drawn inside jit, mixed
offline/online, growing in place, and switchable to cached backbone features."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import toytask

from lwd_common.episode import EpisodeKind
from lwd_description.robot import CAMERA_NAMES
from lwd_learner.device_replay import DeviceReplay, draw_indices, gather, sample_batch
from lwd_learner.replay import ReplayBuffer, Vocab, episode_arrays

GAMMA = 0.9
H = 4


def _arrays(episodes):
    vocab = Vocab()
    return [episode_arrays(e, vocab, (8, 8), CAMERA_NAMES) for e in episodes]


def _episodes():
    return toytask.mixed_dataset(0, n_demo=2, n_rollout=3, n_play=1)


def _frame_to_step(arrays):
    """Device frame index -> (episode, t) in insertion order."""
    out = []
    for i, e in enumerate(arrays):
        out += [(i, t) for t in range(len(e.actions))]
    return np.array(out)


def test_device_batch_equals_host_gather_of_the_same_transitions():
    arrays = _arrays(_episodes())
    host = ReplayBuffer(H, 2, GAMMA)
    for e in arrays:
        host.add(e)
    dev = DeviceReplay(H, 2, GAMMA, min_capacity=16)
    dev.add(arrays)
    data = dev.arrays()
    idx = draw_indices(data, jax.random.PRNGKey(3), 64)
    batch = jax.jit(gather)(data, idx)
    want = host.gather(_frame_to_step(arrays)[np.asarray(idx)])
    assert set(batch) == set(want)
    for k, v in want.items():
        np.testing.assert_allclose(np.asarray(batch[k]), v, rtol=1e-6, err_msg=k)


def test_bc_draws_only_demonstrations():
    arrays = _arrays(_episodes())
    dev = DeviceReplay(H, 1, GAMMA, min_capacity=16)
    dev.add(arrays)
    demo_frames = {tuple(q) for e in arrays if e.kind == EpisodeKind.DEMO for q in e.joint_pos}
    b = sample_batch(dev.arrays(), jax.random.PRNGKey(0), 256, bc=True)
    assert {tuple(q) for q in np.asarray(b["joint_pos"])} <= demo_frames
    assert np.all(np.asarray(b["success"]) == 1.0)


def test_mixed_batch_takes_the_online_share_from_online_episodes():
    arrays = _arrays(_episodes())
    dev = DeviceReplay(H, 1, GAMMA, min_capacity=16)
    dev.add(arrays[:4])
    dev.add(arrays[4:], online=True)
    online_frames = {tuple(q) for e in arrays[4:] for q in e.joint_pos}
    b = sample_batch(dev.arrays(), jax.random.PRNGKey(1), 64, online_ratio=0.25)
    from_online = [tuple(q) in online_frames for q in np.asarray(b["joint_pos"])]
    assert sum(from_online) == 16 and all(from_online[48:])


def test_mixed_batch_is_all_offline_while_there_is_no_online_data():
    arrays = _arrays(_episodes())
    dev = DeviceReplay(H, 1, GAMMA, min_capacity=16)
    dev.add(arrays)
    b = sample_batch(dev.arrays(), jax.random.PRNGKey(1), 64, online_ratio=0.5)
    assert len({tuple(q) for q in np.asarray(b["joint_pos"])}) > 32  # drawn over the whole buffer


def test_growing_past_capacity_keeps_every_stored_frame():
    arrays = _arrays(_episodes())
    dev = DeviceReplay(H, 1, GAMMA, min_capacity=16)
    for e in arrays:
        dev.add([e], online=True)
    total = sum(len(e.actions) for e in arrays)
    assert dev.size == total and dev.capacity >= total and dev.capacity & (dev.capacity - 1) == 0
    data = dev.arrays()
    np.testing.assert_array_equal(
        np.asarray(data.joint_pos[:total]), np.concatenate([e.joint_pos for e in arrays])
    )
    assert int(data.n_online) == total and int(data.n_offline) == 0


def test_to_features_replaces_frames_and_featurizes_later_episodes():
    arrays = _arrays(_episodes())
    dev = DeviceReplay(H, 1, GAMMA, min_capacity=16)
    dev.add(arrays[:3])

    def mean_colour(frames):
        return jnp.mean(jnp.asarray(frames, jnp.float32), axis=(2, 3)).reshape(len(frames), -1)

    dev.to_features(mean_colour)
    dev.featurize = lambda f: np.asarray(mean_colour(f))
    dev.add(arrays[3:])
    data = dev.arrays()
    assert data.images.dtype == jnp.float32 and data.images.shape[1:] == (3 * 3,)
    all_frames = np.concatenate([e.images for e in arrays])
    np.testing.assert_allclose(np.asarray(data.images[: len(all_frames)]), mean_colour(all_frames), rtol=1e-6)
