"""Replay: chunk transitions built from recorded lwd episodes (lwd_common.episode format).

A transition at step t of an episode with T steps is
    s_t, a_t = executed actions[t : t+H] (padded with the last action),
    R = sum_{j=t}^{min(t+nH, T)-1} gamma^(j-t) r_j   (eq. 2 / eq. 19, r = 1 on a success's last step),
    s_{t+nH}, done = (t + nH >= T): the episode ended inside the window, no bootstrap,
    discount = gamma^(nH) (the factor of the bootstrap).
An episode cut off by a time limit (`EpisodeArrays.truncated`, the array API's `truncated`) did not
end in a terminal state: its windows bootstrap from the last state it has (see `episode_transitions`).
With takeover "failure" (DIVLConfig.takeover), the policy's steps before an operator's takeover end
at the takeover as a failure (done, return 0) instead of carrying the rescued episode's outcome.
Frames are JPEG-decoded once, resized to the model's image size and cached as uint8, by
`lwd_common.preprocessing` (the same code that prepares a deployed policy's input).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from lwd_common.episode import ActionSource, Episode, EpisodeKind, decode_episode
from lwd_common.preprocessing import frames_from_jpeg
from lwd_common.store import EpisodeCorrupt, EpisodeStore, Snapshot

log = logging.getLogger("lwd_learner")

UNKNOWN_INSTRUCTION = "<unknown>"


class Vocab:
    """Instruction vocabulary built from the data; index 0 is the unknown fallback."""

    def __init__(self, instructions: list[str] | None = None, capacity: int = 64):
        self.capacity = capacity
        self.items: list[str] = [UNKNOWN_INSTRUCTION]
        for s in instructions or []:
            self.index(s, add=True)

    def index(self, instruction: str, add: bool = True) -> int:
        if instruction in self.items:
            return self.items.index(instruction)
        if add and len(self.items) < self.capacity:
            self.items.append(instruction)
            return len(self.items) - 1
        return 0

    def to_json(self) -> str:
        return json.dumps({"capacity": self.capacity, "items": self.items})

    @classmethod
    def from_json(cls, s: str) -> Vocab:
        d = json.loads(s)
        v = cls(capacity=d["capacity"])
        v.items = list(d["items"])
        return v


def _empty() -> np.ndarray:
    return np.zeros(0, np.float32)


@dataclass(frozen=True)
class NormStats:
    """Per-dimension mean/std of joint positions, actions and the extra state vectors
    (ModelConfig.state_names, concatenated; empty without them); the networks see normalised values."""

    joint_mean: np.ndarray
    joint_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray
    extra_mean: np.ndarray = field(default_factory=_empty)
    extra_std: np.ndarray = field(default_factory=_empty)

    @classmethod
    def from_episodes(
        cls,
        episodes: list[Episode],
        floor: float = 1e-2,
        relative_mask: np.ndarray | None = None,
        horizon: int = 30,
    ) -> NormStats:
        """Joint statistics over all steps; action statistics over what the policy predicts: the
        chunk targets, minus the chunk's starting joint position where `relative_mask` is 1."""
        return cls.from_columns(
            [e.joint_pos for e in episodes], [e.action for e in episodes], None, floor, relative_mask, horizon
        )

    @classmethod
    def from_columns(
        cls,
        joint_pos: Sequence[np.ndarray],
        actions: Sequence[np.ndarray],
        extra: Sequence[np.ndarray] | None = None,
        floor: float = 1e-2,
        relative_mask: np.ndarray | None = None,
        horizon: int = 30,
    ) -> NormStats:
        """`from_episodes` from per-episode columns ([T, J] joints, [T, J] actions, [T, S] extra
        state vectors), e.g. of `EpisodeArrays` (the array API)."""
        if not len(joint_pos):
            raise ValueError("cannot compute normalisation statistics from zero episodes")
        q = np.concatenate(joint_pos)
        if relative_mask is None or not np.any(relative_mask):
            a = np.concatenate(actions)
        else:
            parts = []
            for jp, act in zip(joint_pos, actions, strict=True):
                big_t = len(act)
                idx = np.minimum(np.arange(big_t)[:, None] + np.arange(horizon)[None], big_t - 1)
                parts.append((act[idx] - relative_mask * jp[:, None]).reshape(-1, act.shape[1]))
            a = np.concatenate(parts)
        stats = [q.mean(0), np.maximum(q.std(0), floor), a.mean(0), np.maximum(a.std(0), floor)]
        if extra is not None and len(extra) and np.concatenate(extra).shape[1]:
            x = np.concatenate(extra)
            stats += [x.mean(0), np.maximum(x.std(0), floor)]
        return cls(*(np.asarray(v, np.float32) for v in stats))

    def to_dict(self) -> dict:
        """Plain lists (checkpoint JSON, and the agent's `norm` pytree); the extra-state entries only
        when there are extra state vectors, so models without them keep the layout they always had."""
        return {
            k: np.asarray(getattr(self, k), np.float32).tolist()
            for k in self.__dataclass_fields__
            if not (k.startswith("extra_") and np.size(getattr(self, k)) == 0)
        }

    @classmethod
    def from_dict(cls, d: dict) -> NormStats:
        return cls(**{k: np.asarray(d[k], np.float32) for k in cls.__dataclass_fields__ if k in d})


@dataclass
class EpisodeArrays:
    """One episode decoded for training."""

    episode_id: str
    kind: EpisodeKind
    success: bool
    task_id: int
    images: np.ndarray  # uint8 [T, C, h, w, 3] (C = 0: no cameras)
    joint_pos: np.ndarray  # [T, J]
    actions: np.ndarray  # [T, J]
    rewards: np.ndarray  # [T]
    intervention: np.ndarray  # bool [T]
    # The task id the *policy* is trained with at each step: task_id, except under RECAP, where it
    # carries the step's advantage label (lwd_learner.recap). None: task_id everywhere.
    policy_task_id: np.ndarray | None = None
    # float32 [T, S]: the extra state vectors (ModelConfig.state_names) concatenated; None: S = 0.
    extra: np.ndarray | None = None
    # The episode was cut off by a time limit (not a terminal state): its returns bootstrap from its
    # last state instead of ending (`episode_transitions`). lwd's own episodes are terminal.
    truncated: bool = False

    @property
    def extra_state(self) -> np.ndarray:
        """The extra state vectors [T, S] (S = 0 without any)."""
        if self.extra is None:
            return np.zeros((len(self.actions), 0), np.float32)
        return self.extra


def observation_names(episodes: Sequence[Episode]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(joint names, camera names) the episodes of one store share (`meta.joint_names`,
    `meta.cameras`); a ValueError naming two episodes that disagree."""
    if not episodes:
        raise ValueError("no episodes to read joint and camera names from")
    first = episodes[0].meta
    for ep in episodes[1:]:
        m = ep.meta
        for what, a, b in (
            ("joint_names", first.joint_names, m.joint_names),
            ("cameras", first.cameras, m.cameras),
        ):
            if tuple(a) != tuple(b):
                raise ValueError(
                    f"episodes disagree on {what}: {first.episode_id} has {tuple(a)}, "
                    f"{m.episode_id} has {tuple(b)} (one store holds one robot's episodes)"
                )
    return tuple(first.joint_names), tuple(first.cameras)


def episode_arrays(
    ep: Episode,
    vocab: Vocab,
    image_size: tuple[int, int],
    cameras: tuple[str, ...],
    joint_names: tuple[str, ...] | None = None,
) -> EpisodeArrays:
    """One episode decoded for training; frames as the deployed policy sees them (`frames_from_jpeg`).
    With `joint_names`, an episode of another robot (other `meta.joint_names`) is a ValueError."""
    if ep.num_steps == 0:
        raise ValueError(f"episode {ep.meta.episode_id} has no steps")
    if joint_names is not None and tuple(ep.meta.joint_names) != tuple(joint_names):
        raise ValueError(
            f"episode {ep.meta.episode_id} has joints {tuple(ep.meta.joint_names)}, the model {tuple(joint_names)}"
        )
    missing = [c for c in cameras if c not in ep.images]
    if missing:
        raise ValueError(f"episode {ep.meta.episode_id} lacks cameras {missing}")
    if cameras:
        images = np.stack([frames_from_jpeg(ep.images[c], image_size) for c in cameras], axis=1)
    else:
        images = np.zeros((ep.num_steps, 0, *image_size, 3), np.uint8)
    return EpisodeArrays(
        episode_id=ep.meta.episode_id,
        kind=ep.meta.kind,
        success=ep.success,
        task_id=vocab.index(ep.meta.instruction),
        images=images,
        joint_pos=ep.joint_pos.astype(np.float32),
        actions=ep.action.astype(np.float32),
        rewards=ep.rewards(),
        intervention=ep.source == ActionSource.TELEOP,
    )


@dataclass(frozen=True)
class Transitions:
    """Per-step fields of the chunk transitions of one episode (see the module docstring)."""

    ret: np.ndarray  # float32 [T]: discounted reward inside the n-step window
    done: np.ndarray  # float32 [T]: the episode ends inside the window (no bootstrap)
    next_t: np.ndarray  # int64 [T]: the step of s_{t+nH} (clipped to the last step)
    intervention: np.ndarray  # float32 [T]: a teleoperated step inside the executed chunk
    discount: np.ndarray  # float32 [T]: gamma^(next_t - t), the bootstrap's factor (gamma^(nH) if done)


Takeover = Literal["episode", "failure"]
"""How a rescued episode's policy steps are labelled (`episode_transitions`, DIVLConfig.takeover)."""


def takeover_onset(intervention: np.ndarray) -> np.ndarray:
    """int64 [T]: for each step, the first teleoperated step after it (T when there is none). For
    a policy step this is the onset of the next takeover: the step at which the operator judged the
    policy's own segment a failure and pressed the pedal."""
    big_t = len(intervention)
    nxt = np.full(big_t + 1, big_t, np.int64)
    for i in range(big_t - 1, -1, -1):
        nxt[i] = i if intervention[i] else nxt[i + 1]
    return nxt[1:]


def episode_transitions(
    ep: EpisodeArrays, horizon: int, nstep: int, gamma: float, takeover: Takeover = "episode"
) -> Transitions:
    """Vectorised over t, with the return-to-go G_t = r_t + gamma G_{t+1}: the window return is
    G_t - gamma^(end - t) G_end.

    Terminal episode (lwd's own, the default): end = min(t + nH, T); done when t + nH >= T (the
    return stops at the episode's end, no bootstrap); discount gamma^(nH).

    Truncated episode (`ep.truncated`, cut off by a time limit): the state after the last step is
    not recorded, so the last state the episode has, s_{T-1}, is the furthest bootstrap target.
    Every window is end = min(t + nH, T - 1), done = 0, next state s_end, discount gamma^(end - t):
    a window that would reach past the end is shortened to its last recorded state and bootstraps
    from that state's value (return r_t .. r_{end-1}), the variable-length n-step target
    y = sum_{j<end-t} gamma^j r_{t+j} + gamma^(end-t) V(s_end). The last step itself (t = T - 1)
    has no next state at all: it gets no transition for DIVL / QAM (`rl_frames`; D4RL's
    `qlearning_dataset` likewise drops the timeout step), BC still clones its action. Dropping
    every window that reaches past the end instead would lose the last nH steps of each truncated
    episode (all of one shorter than nH), and treating the cut as terminal would teach the critic
    that running out of time is worth 0.

    Takeovers (`takeover`): "episode" (the paper's) labels every step, the policy's own steps
    before a rescue included, with the episode's outcome. "failure" (RLIF-style) ends the policy's
    autonomous segment at the takeover, as a failure of the policy: a policy step t whose next
    teleoperated step is k (the takeover onset) gets end = min(t + nH, k), done = 1 when
    t + nH >= k (no bootstrap past the takeover), the return of the steps before k (0 with lwd's
    sparse rewards), next state s_end, discount gamma^(nH) where done. Every takeover of an episode
    ends the policy segment before it. The operator's steps, and the policy's steps after the last
    takeover, keep the episode's terminal (or truncated) windows above. Under "episode" a rescued
    episode's return hardly depends on what the policy did before the rescue (the operator nearly
    always succeeds), so the critic learns little about the policy's own actions."""
    big_t = len(ep.actions)
    t = np.arange(big_t)
    g = np.zeros(big_t + 1)
    for i in range(big_t - 1, -1, -1):
        g[i] = ep.rewards[i] + gamma * g[i + 1]
    teleop = np.concatenate([[0], np.cumsum(ep.intervention.astype(np.int64))])
    window = teleop[np.minimum(t + horizon, big_t)] - teleop[t]
    if ep.truncated:
        end = np.minimum(t + nstep * horizon, big_t - 1)
        done = np.zeros(big_t)
        discount = gamma ** (end - t).astype(np.float64)
        next_t = end
    else:
        end = np.minimum(t + nstep * horizon, big_t)
        done = (t + nstep * horizon >= big_t).astype(np.float64)
        discount = np.full(big_t, gamma ** (nstep * horizon), np.float64)
        next_t = np.minimum(t + nstep * horizon, big_t - 1)
    if takeover == "failure":
        onset = takeover_onset(ep.intervention)
        cut = ~ep.intervention & (onset < big_t)  # a policy step with a takeover after it
        end = np.where(cut, np.minimum(t + nstep * horizon, onset), end)
        stop = cut & (t + nstep * horizon >= onset)
        done = np.where(cut, stop, done).astype(np.float64)
        discount = np.where(
            cut,
            np.where(stop, gamma ** (nstep * horizon), gamma ** (end - t).astype(np.float64)),
            discount,
        )
        next_t = np.where(cut, np.minimum(end, big_t - 1), next_t)
    elif takeover != "episode":
        raise ValueError(f"takeover must be 'episode' or 'failure', got {takeover!r}")
    ret = g[t] - gamma ** (end - t) * g[end]
    return Transitions(
        ret.astype(np.float32),
        done.astype(np.float32),
        next_t,
        (window > 0).astype(np.float32),
        discount.astype(np.float32),
    )


@dataclass(frozen=True)
class EpisodeInfo:
    """What bookkeeping and the BC pool need of an episode (no frames)."""

    kind: EpisodeKind
    success: bool
    intervention: np.ndarray  # bool [T]
    truncated: bool = False  # cut off by a time limit (EpisodeArrays.truncated)

    @property
    def steps(self) -> int:
        return len(self.intervention)


def info_of(ep: EpisodeArrays) -> EpisodeInfo:
    return EpisodeInfo(ep.kind, ep.success, ep.intervention, ep.truncated)


def rl_frames(e: EpisodeInfo) -> np.ndarray:
    """bool [T]: the steps DIVL and QAM sample (a chunk transition with a next state): every step
    but the last one of a truncated episode, whose next state was never recorded
    (`episode_transitions`)."""
    keep = np.ones(e.steps, bool)
    if e.truncated and e.steps:
        keep[-1] = False
    return keep


def bookkeeping(episodes: list[EpisodeInfo]) -> dict:
    """Counts by kind and label, and intervention steps."""
    out = {
        "episodes": len(episodes),
        "steps": sum(e.steps for e in episodes),
        "success": 0,
        "failure": 0,
        "intervention_steps": 0,
    }
    for e in episodes:
        out[e.kind.value] = out.get(e.kind.value, 0) + 1
        out["success" if e.success else "failure"] += 1
        out["intervention_steps"] += int(e.intervention.sum())
    return out


def bc_frames(episodes: list[EpisodeInfo], bc_data: str, online: bool = False) -> list[np.ndarray]:
    """Per episode, the steps behaviour cloning may clone (bool [T]):
    - 'demos': the demonstrations (in a buffer without any, the successful episodes);
    - 'all': every step;
    - 'hg_dagger' (HG-DAgger): offline, the demonstrations; online, the intervention segments
      (the human's corrections) of every episode and every step of a successful episode without
      one (an autonomous success). The policy's own steps before a rescue are what the operator
      judged wrong: they are not cloned even when the rescue succeeded."""
    if bc_data == "all":
        return [np.ones(e.steps, bool) for e in episodes]
    if bc_data == "hg_dagger" and online:
        return [np.full(e.steps, e.success and not e.intervention.any()) | e.intervention for e in episodes]
    demos = [e.kind == EpisodeKind.DEMO for e in episodes]
    keep = demos if any(demos) else [e.success for e in episodes]
    return [np.full(e.steps, k) for e, k in zip(episodes, keep, strict=True)]


class ReplayBuffer:
    """Chunk transitions of a set of episodes, sampled uniformly over steps."""

    def __init__(
        self,
        horizon: int,
        nstep: int,
        gamma: float,
        bc_data: str = "demos",
        online: bool = False,
        takeover: Takeover = "episode",
    ):
        self.horizon, self.nstep, self.gamma, self.bc_data, self.online = (
            horizon,
            nstep,
            gamma,
            bc_data,
            online,
        )
        self.takeover = takeover  # how a takeover is labelled (`episode_transitions`)
        self.episodes: list[EpisodeArrays] = []
        self._index: list[np.ndarray] = []  # per episode: [T, 2] (episode index, t)
        self._transitions: list[Transitions] = []
        self._flat: np.ndarray | None = None
        self._bc_flat: np.ndarray | None = None

    def __len__(self) -> int:
        return sum(len(e.actions) for e in self.episodes)

    def add(self, ep: EpisodeArrays) -> None:
        i = len(self.episodes)
        self.episodes.append(ep)
        self._transitions.append(episode_transitions(ep, self.horizon, self.nstep, self.gamma, self.takeover))
        t = np.arange(len(ep.actions))
        self._index.append(np.stack([np.full_like(t, i), t], axis=1))
        self._flat = self._bc_flat = None

    def map_images(self, fn) -> None:
        """Replace every episode's frames by `fn(frames)` (the frozen-encoder path caches features)."""
        for e in self.episodes:
            e.images = fn(e.images)

    def bookkeeping(self) -> dict:
        """Counts by kind and label, and intervention steps."""
        return bookkeeping([info_of(e) for e in self.episodes])

    def _all(self) -> np.ndarray:
        if self._flat is None:
            chosen = [ix[rl_frames(info_of(e))] for ix, e in zip(self._index, self.episodes, strict=True)]
            self._flat = np.concatenate(chosen) if chosen else np.zeros((0, 2), np.int64)
        return self._flat

    def _bc(self) -> np.ndarray:
        """Behaviour-cloning steps (see `bc_frames`)."""
        if self._bc_flat is None:
            masks = bc_frames([info_of(e) for e in self.episodes], self.bc_data, self.online)
            chosen = [ix[m] for ix, m in zip(self._index, masks, strict=True)]
            self._bc_flat = np.concatenate(chosen) if chosen else np.zeros((0, 2), np.int64)
        return self._bc_flat

    def sample(self, rng: np.random.Generator, batch_size: int, bc: bool = False) -> dict[str, np.ndarray]:
        pool = self._bc() if bc else self._all()
        if len(pool) == 0:
            raise ValueError("replay buffer has no transitions to sample" + (" for BC" if bc else ""))
        return self.gather(pool[rng.integers(0, len(pool), batch_size)])

    def gather(self, index: np.ndarray) -> dict[str, np.ndarray]:
        h = self.horizon
        cols: dict[str, list] = {
            k: []
            for k in (
                "images",
                "joint_pos",
                "extra",
                "task_id",
                "policy_task_id",
                "actions",
                "ret",
                "done",
                "discount",
                "next_images",
                "next_joint_pos",
                "next_extra",
                "next_task_id",
                "success",
                "intervention",
            )
        }
        for ei, t in index:
            e = self.episodes[int(ei)]
            tr = self._transitions[int(ei)]
            nxt = tr.next_t[t]
            cols["images"].append(e.images[t])
            cols["joint_pos"].append(e.joint_pos[t])
            cols["extra"].append(e.extra_state[t])
            cols["task_id"].append(e.task_id)
            cols["policy_task_id"].append(e.task_id if e.policy_task_id is None else e.policy_task_id[t])
            cols["actions"].append(e.actions[np.minimum(np.arange(t, t + h), len(e.actions) - 1)])
            cols["ret"].append(tr.ret[t])
            cols["done"].append(tr.done[t])
            cols["discount"].append(tr.discount[t])
            cols["next_images"].append(e.images[nxt])
            cols["next_joint_pos"].append(e.joint_pos[nxt])
            cols["next_extra"].append(e.extra_state[nxt])
            cols["next_task_id"].append(e.task_id)
            cols["success"].append(float(e.success))
            cols["intervention"].append(tr.intervention[t])
        out = {k: np.asarray(v) for k, v in cols.items()}
        for k in (
            "joint_pos",
            "extra",
            "actions",
            "ret",
            "done",
            "discount",
            "next_joint_pos",
            "next_extra",
            "success",
            "intervention",
        ):
            out[k] = out[k].astype(np.float32)
        out["task_id"] = out["task_id"].astype(np.int32)
        out["policy_task_id"] = out["policy_task_id"].astype(np.int32)
        out["next_task_id"] = out["next_task_id"].astype(np.int32)
        return out


class MixedSampler:
    """Samples offline and online replay in a fixed ratio (1:1 by default); offline only while
    the online buffer is empty."""

    def __init__(self, offline: ReplayBuffer, online: ReplayBuffer, online_ratio: float = 0.5):
        self.offline, self.online, self.online_ratio = offline, online, online_ratio

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
        if len(self.online) == 0:
            return self.offline.sample(rng, batch_size)
        if len(self.offline) == 0:
            return self.online.sample(rng, batch_size)
        n_on = int(round(batch_size * self.online_ratio))
        a = self.offline.sample(rng, batch_size - n_on)
        b = self.online.sample(rng, n_on)
        return {k: np.concatenate([a[k], b[k]]) for k in a}


ShardItem = tuple[int, str, str]  # (position in the store's commit order, episode id, sha256)


def shard_of(new: Snapshot, first: int, shard: tuple[int, int]) -> list[ShardItem]:
    """This shard's episodes among those `new` lists, in commit order.

    An episode's position counts every episode committed before it (`first` came before `new`'s),
    so it is the same on every host: episode k belongs to shard k mod count without the hosts
    talking. The reader's poll and its prefetcher both use this one rule."""
    index, count = shard
    hashes = new.content_hashes or ("",) * len(new.episode_ids)
    return [
        (first + k, i, h)
        for k, (i, h) in enumerate(zip(new.episode_ids, hashes, strict=True))
        if (first + k) % count == index
    ]


PREFETCH_BYTES = 256 << 20  # the reader's default prefetch cache
PREFETCH_BACKOFF_S = (0.5, 10.0)  # a failing prefetcher's first and longest wait before it retries


class StoreReader:
    """Reads the episodes each new snapshot adds (never a half-written store), checked against their sha256.

    `root` is the store's location: a directory or `s3://bucket/prefix` (lwd_common.store). The
    hosts of a multi-host learner each read the same snapshot versions (`agree`: every process
    gets process 0's HEAD, a collective, so no host can train a step on a newer snapshot than
    another) and keep only their shard of the episodes (`shard`: index, count; by commit order).
    Payloads are downloaded `downloads` at a time.

    So that a poll does not wait on the store, a prefetch thread follows HEAD between polls and
    downloads this shard's next payloads into a cache of at most `prefetch_bytes` (0: no thread);
    a poll takes what is cached and downloads the rest itself. The second poll starts it (a reader
    polled once, such as an offline store read whole, never does), or `start_prefetch()`; `close()`
    stops it."""

    def __init__(
        self,
        root: str | Path,
        shard: tuple[int, int] = (0, 1),
        agree: Callable[[int], int] | None = None,
        downloads: int = 8,
        prefetch_bytes: int = PREFETCH_BYTES,
        head_every_s: float = 1.0,
    ):
        self.store = EpisodeStore(root)
        self.snapshot_version = 0
        self.shard = shard
        self.agree = agree
        self.downloads = downloads
        self.episodes_seen = 0  # committed up to snapshot_version, all shards: the same on every host
        self.prefetch_bytes = prefetch_bytes
        self.head_every_s = head_every_s  # how often a caught-up prefetcher reads HEAD
        self.hits = 0  # episodes a poll took from the prefetch cache
        self.misses = 0  # episodes a poll downloaded itself
        self._polls = 0
        self._closed = False
        self._prefetcher: _Prefetcher | None = None

    def poll(self) -> list[Episode]:
        upto = None  # one host: whatever HEAD is (changes_since reads it once)
        if self.agree is not None:  # several: process 0's HEAD, the same on every host
            upto = max(self.agree(self.store.head_version()), self.snapshot_version)
        new = self.store.changes_since(self.snapshot_version, upto=upto)
        mine = shard_of(new, self.episodes_seen, self.shard)
        self.snapshot_version = new.version
        self.episodes_seen += len(new.episode_ids)
        self._polls += 1
        if self._polls == 2:
            self.start_prefetch()
        cached = {}
        if self._prefetcher is not None:
            cached = self._prefetcher.take(self.snapshot_version, self.episodes_seen, mine)
        self.hits += len(cached)
        self.misses += len(mine) - len(cached)

        def load(item: ShardItem) -> Episode:
            _, episode_id, sha256 = item
            data = cached.get(episode_id)
            return decode_episode(data) if data is not None else self.store.get(episode_id, sha256 or None)

        if len(mine) - len(cached) <= 1:
            return [load(item) for item in mine]
        with ThreadPoolExecutor(min(self.downloads, len(mine)), thread_name_prefix="lwd-download") as pool:
            return list(pool.map(load, mine))

    def start_prefetch(self) -> None:
        """Start the prefetch thread from where the reader is now (once; not after close or with no bytes)."""
        if self._prefetcher is None and not self._closed and self.prefetch_bytes > 0:
            self._prefetcher = _Prefetcher(self, self.snapshot_version, self.episodes_seen)

    def prefetch_stats(self) -> dict[str, int]:
        """Polls' hits and misses, and the cache: episodes and bytes in it, its peak, the thread's errors."""
        p = self._prefetcher
        return {"hits": self.hits, "misses": self.misses} | (
            p.stats() if p else {"cached": 0, "cached_bytes": 0, "peak_bytes": 0, "errors": 0}
        )

    def close(self) -> None:
        """Stop the prefetch thread and drop its cache; polls still work, downloading everything."""
        self._closed = True
        if self._prefetcher is not None:
            self._prefetcher.close()


class _Prefetcher:
    """A thread that downloads the reader's shard of the snapshots HEAD adds into a byte-bounded cache.

    Payloads are checked against their sha256 (`EpisodeStore.read_bytes`) and kept as bytes, keyed
    by episode id with their commit position. When the next one does not fit, its download waits
    (at most `downloads` payloads wait outside the cache) until a poll takes some or reads past it.
    A poll tells it how far the reader got: what the reader has read is never cached again."""

    def __init__(self, reader: StoreReader, version: int, seen: int):
        self.store, self.shard, self.downloads = reader.store, reader.shard, reader.downloads
        self.max_bytes, self.head_every_s = reader.prefetch_bytes, reader.head_every_s
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._cache: dict[str, tuple[int, bytes]] = {}
        self._bytes = self._peak = self._errors = 0
        self._read_to = seen  # the reader has read every episode before this position
        self._listed = (version, seen)  # listed up to this snapshot version, this many episodes before it
        self._thread = threading.Thread(target=self._run, name="lwd-prefetch", daemon=True)
        self._thread.start()

    def take(self, version: int, seen: int, mine: list[ShardItem]) -> dict[str, bytes]:
        """Remove and return the cached payloads of `mine`; the reader has now read `version`, `seen` episodes."""
        wanted = {episode_id for _, episode_id, _ in mine}
        got = {}
        with self._cond:
            self._read_to = seen
            self._listed = max(self._listed, (version, seen))  # a prefetcher behind lists from here
            for episode_id in [i for i, (pos, _) in self._cache.items() if pos < seen]:
                _, data = self._cache.pop(episode_id)
                self._bytes -= len(data)
                if episode_id in wanted:
                    got[episode_id] = data
            self._cond.notify_all()  # room, or positions no longer wanted
        return got

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "cached": len(self._cache),
                "cached_bytes": self._bytes,
                "peak_bytes": self._peak,
                "errors": self._errors,
            }

    def close(self, timeout_s: float = 10.0) -> None:
        self._closed.set()
        with self._cond:
            self._cache.clear()
            self._bytes = 0
            self._cond.notify_all()
        self._thread.join(timeout_s)  # a download in flight finishes first (a daemon: never blocks exit)

    def _run(self) -> None:
        """List what HEAD added, download it; a failure (store unreachable) is logged and retried."""
        todo: list[ShardItem] = []
        backoff_s = PREFETCH_BACKOFF_S[0]
        with ThreadPoolExecutor(self.downloads, thread_name_prefix="lwd-prefetch") as pool:
            while not self._closed.is_set():
                try:
                    todo = todo or self._list_new()
                    if todo:
                        list(pool.map(self._fetch, todo))  # what a retry finds cached or read is skipped
                        todo = []
                    else:
                        self._closed.wait(self.head_every_s)
                    backoff_s = PREFETCH_BACKOFF_S[0]
                except Exception:
                    log.warning(
                        "prefetching from %s failed; retrying in %.1f s",
                        self.store.location,
                        backoff_s,
                        exc_info=True,
                    )
                    with self._cond:
                        self._errors += 1
                    self._closed.wait(backoff_s)
                    backoff_s = min(2 * backoff_s, PREFETCH_BACKOFF_S[1])

    def _list_new(self) -> list[ShardItem]:
        """This shard's episodes in the versions after those listed (or read) so far, up to HEAD."""
        with self._cond:
            version, seen = self._listed
        new = self.store.changes_since(version)
        with self._cond:
            self._listed = max(self._listed, (new.version, seen + len(new.episode_ids)))
        return shard_of(new, seen, self.shard)

    def _fetch(self, item: ShardItem) -> None:
        pos, episode_id, sha256 = item
        with self._cond:
            if not self._wait_for_room(pos, episode_id, 1):
                return
        try:
            data = self.store.read_bytes(episode_id, sha256 or None)
        except EpisodeCorrupt:  # not cached: the poll that reads it downloads it and raises the same
            log.warning("prefetch refused episode %s: its bytes do not match its sha256", episode_id)
            return
        with self._cond:
            if self._wait_for_room(pos, episode_id, len(data)):
                self._cache[episode_id] = (pos, data)
                self._bytes += len(data)
                self._peak = max(self._peak, self._bytes)

    def _wait_for_room(self, pos: int, episode_id: str, size: int) -> bool:
        """With the lock held: wait until `size` more bytes fit; False once the episode is not wanted."""
        while not (self._closed.is_set() or pos < self._read_to or episode_id in self._cache):
            if self._bytes + size <= self.max_bytes:
                return True
            self._cond.wait()
        return False
