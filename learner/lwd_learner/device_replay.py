"""Replay resident on the accelerator, sampled inside the jitted update.

The host path (`replay.ReplayBuffer.sample`) gathers every minibatch in numpy and copies it to
the device: on a GPU that, not the update, set the pace (14% utilisation). Here every frame,
joint vector and action of the offline and online buffers lives once in device arrays with
room to grow, together with the per-step transition fields of `replay.episode_transitions`;
a minibatch is a handful of integer gathers inside the same jit as the update. New episodes are written in place (donated buffers), and the
arrays double in capacity when full, so the update recompiles only O(log N) times.

The frames may be uint8 images or, on the frozen-encoder path, the cached backbone features.
"""

from __future__ import annotations

from collections.abc import Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np

from lwd_common.episode import EpisodeKind
from lwd_learner.replay import (
    EpisodeArrays,
    Takeover,
    bc_frames,
    bookkeeping,
    episode_transitions,
    info_of,
    rl_frames,
)

_FRAME_FIELDS = (
    "images",
    "joint_pos",
    "extra",
    "actions",
    "task_id",
    "policy_task_id",
    "last",
    "next_idx",
    "ret",
    "done",
    "discount",
    "success",
    "intervention",
)


@flax.struct.dataclass
class ReplayArrays:
    """Device pytree: per-frame arrays of capacity N and three index pools (offline, online, BC;
    the offline and online pools leave out the last frame of a truncated episode, `replay.rl_frames`)."""

    images: jnp.ndarray  # uint8 [N, cams, H, W, 3] or float32 [N, D] cached features
    joint_pos: jnp.ndarray  # [N, J]
    extra: jnp.ndarray  # [N, S] extra state vectors (S = 0 without any)
    actions: jnp.ndarray  # [N, J] executed action at each frame
    task_id: jnp.ndarray  # int32 [N]
    policy_task_id: jnp.ndarray  # int32 [N]: what the policy is conditioned on (RECAP labels)
    last: jnp.ndarray  # int32 [N]: the episode's last frame (the chunk is padded with it)
    next_idx: jnp.ndarray  # int32 [N]: frame of s_{t+nH}
    ret: jnp.ndarray  # [N]
    done: jnp.ndarray  # [N]
    discount: jnp.ndarray  # [N]: the bootstrap's factor gamma^(next - t) (replay.Transitions)
    success: jnp.ndarray  # [N]
    intervention: jnp.ndarray  # [N]
    pool_offline: jnp.ndarray  # int32 [N] frame indices, the first n_offline valid
    pool_online: jnp.ndarray
    pool_bc: jnp.ndarray
    n_offline: jnp.ndarray  # int32 []
    n_online: jnp.ndarray
    n_bc: jnp.ndarray
    horizon: int = flax.struct.field(pytree_node=False, default=30)


def _draw(key, pool, count, n: int):
    return pool[jax.random.randint(key, (n,), 0, jnp.maximum(count, 1))]


def sample_batch(
    data: ReplayArrays, key, batch_size: int, bc: bool = False, online_ratio: float = 0.5
) -> dict:
    """A minibatch with the keys of `ReplayBuffer.gather`, drawn on the device."""
    return gather(data, draw_indices(data, key, batch_size, bc, online_ratio))


def draw_indices(data: ReplayArrays, key, batch_size: int, bc: bool = False, online_ratio: float = 0.5):
    """Frame indices of a minibatch. BC draws from the BC pool; otherwise offline and online replay
    are mixed at `online_ratio` (the last rows online; all offline while the online pool is empty,
    all online while the offline one is)."""
    k_off, k_on = jax.random.split(key)
    if bc:
        return _draw(k_off, data.pool_bc, data.n_bc, batch_size)
    n_on = int(round(batch_size * online_ratio))
    off = _draw(k_off, data.pool_offline, data.n_offline, batch_size)
    on = _draw(k_on, data.pool_online, data.n_online, batch_size)
    slot_online = jnp.arange(batch_size) >= batch_size - n_on
    use_online = jnp.where(data.n_offline == 0, True, jnp.where(data.n_online == 0, False, slot_online))
    return jnp.where(use_online, on, off)


def gather(data: ReplayArrays, idx) -> dict:
    """The chunk transitions starting at frames `idx` (the device twin of `ReplayBuffer.gather`)."""
    chunk = jnp.minimum(idx[:, None] + jnp.arange(data.horizon)[None], data.last[idx][:, None])
    nxt = data.next_idx[idx]
    return {
        "images": data.images[idx],
        "joint_pos": data.joint_pos[idx],
        "extra": data.extra[idx],
        "task_id": data.task_id[idx],
        "policy_task_id": data.policy_task_id[idx],
        "actions": data.actions[chunk],
        "ret": data.ret[idx],
        "done": data.done[idx],
        "discount": data.discount[idx],
        "next_images": data.images[nxt],
        "next_joint_pos": data.joint_pos[nxt],
        "next_extra": data.extra[nxt],
        "next_task_id": data.task_id[nxt],
        "success": data.success[idx],
        "intervention": data.intervention[idx],
    }


def _write(arrays: dict, start, new: dict) -> dict:
    return {k: jax.lax.dynamic_update_slice_in_dim(arrays[k], new[k], start, axis=0) for k in arrays}


_write_donated = jax.jit(_write, donate_argnums=0)  # in place: the old buffers are reused


class DeviceReplay:
    """Host-side owner of one `ReplayArrays`: appends episodes (offline or online), keeps the pools.

    `featurize` (frozen-encoder path) maps an episode's uint8 frames to cached features before
    they are stored; `to_features` converts what is already stored.
    """

    def __init__(
        self,
        horizon: int,
        nstep: int,
        gamma: float,
        bc_data: str = "demos",
        min_capacity: int = 1024,
        sharding=None,
        takeover: Takeover = "episode",
    ):
        self.horizon, self.nstep, self.gamma, self.bc_data = horizon, nstep, gamma, bc_data
        self.takeover = takeover  # how a takeover is labelled (`replay.episode_transitions`)
        self.min_capacity = min_capacity
        self.sharding = sharding
        self.featurize: Callable[[np.ndarray], np.ndarray] | None = None
        self.size = 0
        self.capacity = 0
        self._arrays: dict | None = None
        self._meta: dict[str, list] = {"offline": [], "online": []}  # per buffer: (start, episode)
        self._data: ReplayArrays | None = None

    def __len__(self) -> int:
        return self.size

    def count(self, online: bool) -> int:
        return sum(e.steps for _, e in self._meta["online" if online else "offline"])

    def bookkeeping(self, online: bool) -> dict:
        return bookkeeping([e for _, e in self._meta["online" if online else "offline"]])

    def add(self, episodes: list[EpisodeArrays], online: bool = False) -> None:
        if not episodes:
            return
        cols: dict[str, list[np.ndarray]] = {k: [] for k in _FRAME_FIELDS}
        start = self.size
        for ep in episodes:
            big_t = len(ep.actions)
            tr = episode_transitions(ep, self.horizon, self.nstep, self.gamma, self.takeover)
            base = start + sum(len(c) for c in cols["joint_pos"])
            images = ep.images if self.featurize is None else self.featurize(ep.images)
            cols["images"].append(images)
            cols["joint_pos"].append(ep.joint_pos.astype(np.float32))
            cols["extra"].append(ep.extra_state.astype(np.float32))
            cols["actions"].append(ep.actions.astype(np.float32))
            cols["task_id"].append(np.full(big_t, ep.task_id, np.int32))
            cols["policy_task_id"].append(
                np.full(big_t, ep.task_id, np.int32)
                if ep.policy_task_id is None
                else ep.policy_task_id.astype(np.int32)
            )
            cols["last"].append(np.full(big_t, base + big_t - 1, np.int32))
            cols["next_idx"].append((base + tr.next_t).astype(np.int32))
            cols["ret"].append(tr.ret)
            cols["done"].append(tr.done)
            cols["discount"].append(tr.discount)
            cols["success"].append(np.full(big_t, float(ep.success), np.float32))
            cols["intervention"].append(tr.intervention)
            self._meta["online" if online else "offline"].append((base, info_of(ep)))
        new = {k: np.concatenate(v) for k, v in cols.items()}
        n = len(new["joint_pos"])
        self._ensure(start + n, new)
        self._arrays = _write_donated(self._arrays, jnp.int32(start), new)
        self.size = start + n
        self._data = None

    def _ensure(self, needed: int, example: dict) -> None:
        if needed <= self.capacity and self._compatible(example):
            return
        cap = max(self.min_capacity, self.capacity)
        while cap < needed:
            cap *= 2
        fresh = {k: jnp.zeros((cap, *v.shape[1:]), v.dtype) for k, v in example.items()}
        if self._arrays is not None and self.size:
            fresh = _write_donated(fresh, jnp.int32(0), {k: v[: self.size] for k, v in self._arrays.items()})
        self._arrays, self.capacity = self._place(fresh), cap

    def _compatible(self, example: dict) -> bool:
        return self._arrays is not None and all(
            self._arrays[k].shape[1:] == v.shape[1:] and self._arrays[k].dtype == v.dtype
            for k, v in example.items()
        )

    def _place(self, arrays: dict) -> dict:
        return arrays if self.sharding is None else jax.device_put(arrays, self.sharding)

    def to_features(self, fn: Callable[[jnp.ndarray], jnp.ndarray], chunk: int = 512) -> None:
        """Replace the stored frames by `fn(frames)` (e.g. the frozen backbone), chunk by chunk."""
        if self._arrays is None:
            return
        images = self._arrays["images"]
        feats = [np.asarray(fn(images[i : min(i + chunk, self.size)])) for i in range(0, self.size, chunk)]
        dim = feats[0].shape[1:] if feats else ()
        out = np.zeros((self.capacity, *dim), np.float32)
        if feats:
            out[: self.size] = np.concatenate(feats)
        self._arrays = self._place({**self._arrays, "images": jnp.asarray(out)})
        self._data = None

    def _stored(self) -> dict:
        if self._arrays is None:
            raise ValueError("replay buffer has no transitions")
        return self._arrays

    def frames(self, *names: str) -> list[np.ndarray]:
        """Host copies of per-frame fields over the stored frames (e.g. for relabelling)."""
        return [np.asarray(self._stored()[n][: self.size]) for n in names]

    def column(self, name: str) -> jnp.ndarray:
        """A per-frame field over the stored frames, where it lies (on device)."""
        return self._stored()[name][: self.size]

    def rollout_frames(self) -> np.ndarray:
        """bool [size]: the frame belongs to an autonomous rollout (not a demonstration or play)."""
        out = np.zeros(self.size, bool)
        for name in ("offline", "online"):
            for base, info in self._meta[name]:
                out[base : base + info.steps] = info.kind == EpisodeKind.ROLLOUT
        return out

    def set_policy_task_ids(self, ids: np.ndarray) -> None:
        """Replace the policy's task id of every stored frame (RECAP's advantage labels)."""
        full = np.zeros(self.capacity, np.int32)
        full[: self.size] = ids
        self._arrays = self._place({**self._stored(), "policy_task_id": jnp.asarray(full)})
        self._data = None

    def arrays(self) -> ReplayArrays:
        """The device pytree for `sample_batch` (rebuilt only after an `add`)."""
        if self._arrays is None:
            raise ValueError("replay buffer has no transitions to sample")
        if self._data is None:
            pools = {}
            for name in ("offline", "online"):
                pools[name] = _frames([(b, e) for b, e in self._meta[name]])
            bc = []
            for name in ("offline", "online"):
                entries = self._meta[name]
                masks = bc_frames([e for _, e in entries], self.bc_data, online=name == "online")
                bc += [
                    np.arange(b, b + e.steps, dtype=np.int32)[m]
                    for (b, e), m in zip(entries, masks, strict=True)
                ]
            bc.append(np.zeros(0, np.int32))
            pools["bc"] = np.concatenate(bc)
            padded = {k: jnp.asarray(np.pad(v, (0, self.capacity - len(v)))) for k, v in pools.items()}
            self._data = ReplayArrays(
                **self._arrays,
                pool_offline=padded["offline"],
                pool_online=padded["online"],
                pool_bc=padded["bc"],
                n_offline=jnp.int32(len(pools["offline"])),
                n_online=jnp.int32(len(pools["online"])),
                n_bc=jnp.int32(len(pools["bc"])),
                horizon=self.horizon,
            )
            if self.sharding is not None:
                self._data = jax.device_put(self._data, self.sharding)
        return self._data


def _frames(entries: list) -> np.ndarray:
    """The frames of DIVL / QAM transitions (`replay.rl_frames`) of (start, EpisodeInfo) entries."""
    parts = [np.arange(base, base + e.steps, dtype=np.int32)[rl_frames(e)] for base, e in entries]
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)
