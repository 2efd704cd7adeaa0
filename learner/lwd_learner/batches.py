"""Where a training run's minibatches come from: the offline and online replay, drawn on the
device (one process) or on the host (each process of a multi-host run draws its own shard),
and the switch to the frozen-encoder path (cached backbone features instead of frames)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lwd_common.episode import EpisodeKind
from lwd_learner import recap
from lwd_learner.agents import AgentState, BaseAgent
from lwd_learner.config import LearnerConfig, bc_rule
from lwd_learner.device_replay import DeviceReplay
from lwd_learner.replay import EpisodeArrays, MixedSampler, ReplayBuffer, Vocab
from lwd_learner.sharding import shard_batch

log = logging.getLogger("lwd_learner")


def process_rng(seed: int, step: int) -> np.random.Generator:
    """Host sampling stream of this process: different per process (each draws its own shard of the
    global batch), reproducible per (seed, process, step) so a resumed run draws fresh data."""
    return np.random.default_rng([seed, jax.process_index(), step])


class Batches:
    """Offline + online replay of one run and the update that consumes it."""

    def __init__(self, cfg: LearnerConfig, agent: BaseAgent, mesh, start_step: int = 0):
        self.cfg, self.agent, self.mesh = cfg, agent, mesh
        t, d = cfg.train, cfg.divl
        self.on_device = t.replay == "device" and jax.process_count() == 1
        self.frozen = False
        self._featurize: Callable[[np.ndarray], np.ndarray] | None = None
        if self.on_device:
            self.replay = DeviceReplay(
                cfg.model.horizon,
                d.nstep,
                d.gamma,
                bc_rule(t),
                sharding=NamedSharding(mesh, P()) if mesh.devices.size > 1 else None,
                takeover=d.takeover,
            )
            if mesh.devices.size > 1:
                agent.batch_sharding = NamedSharding(mesh, P("data"))
        else:
            self.offline = ReplayBuffer(cfg.model.horizon, d.nstep, d.gamma, bc_rule(t), takeover=d.takeover)
            self.online = ReplayBuffer(
                cfg.model.horizon, d.nstep, d.gamma, bc_rule(t), online=True, takeover=d.takeover
            )
            self.mixed = MixedSampler(self.offline, self.online, t.online_ratio)
            self.rng = process_rng(t.seed, start_step)
            self.local_batch = t.batch_size // jax.process_count()

    def add(self, episodes: list[EpisodeArrays], online: bool = False) -> None:
        if self.on_device:
            self.replay.add(episodes, online)
            return
        buf = self.online if online else self.offline
        for ep in episodes:
            if self._featurize is not None:
                ep.images = self._featurize(ep.images)
            buf.add(ep)

    def count(self, online: bool = False) -> int:
        if self.on_device:
            return self.replay.count(online)
        return len(self.online if online else self.offline)

    def bookkeeping(self, online: bool = False) -> dict:
        if self.on_device:
            return self.replay.bookkeeping(online)
        return (self.online if online else self.offline).bookkeeping()

    def freeze(self, state: AgentState) -> AgentState:
        """Freeze the image backbone: every network shares the policy's, and the stored frames (and
        those of every later episode) are replaced by its features."""
        state = self.agent.freeze_encoder(state)
        params = jax.device_get(state.policy)
        feats = jax.jit(lambda x: self.agent.image_features(params, x))

        def featurize(frames: np.ndarray, chunk: int = 512) -> np.ndarray:
            return np.concatenate(
                [np.asarray(feats(frames[i : i + chunk])) for i in range(0, len(frames), chunk)]
            )

        self._featurize = featurize
        if self.on_device:
            self.replay.to_features(feats)
            self.replay.featurize = featurize
        else:
            self.offline.map_images(featurize)
            self.online.map_images(featurize)
        self.frozen = True
        log.info("image backbone frozen: heads now train on cached features")
        return state

    def update(self, state: AgentState, kind: str):
        """One update of `kind` (the agent's `update_kind`: 'bc', the BC update on the BC pool; 'rl',
        LWD's DIVL + QAM on mixed replay; 'recap', RECAP's BC update on mixed replay with its
        advantage-labelled policy task ids), on minibatches drawn on the device or on the host."""
        if self.on_device:
            return self.agent.device_update(kind)(state, self.replay.arrays())
        return self.agent.host_update(kind, state, lambda bc: shard_batch(self._host_sample(bc), self.mesh))

    def relabel(self, state: AgentState, vocab: Vocab) -> dict:
        """RECAP: advantage labels of every stored step from the current value model, written into
        the policy task ids (lwd_learner.recap). Returns summary statistics."""
        critic, norm = jax.device_get(state.critic), jax.device_get(state.norm)

        def values(images, q, task, extra, chunk: int = 512) -> np.ndarray:
            return np.concatenate(
                [
                    np.asarray(
                        self.agent.state_values(
                            critic,
                            norm,
                            images[i : i + chunk],
                            q[i : i + chunk],
                            task[i : i + chunk],
                            extra[i : i + chunk],
                        )
                    )
                    for i in range(0, len(q), chunk)
                ]
            )

        if self.on_device:
            ret, done, discount, next_idx, task, interv, q, extra = self.replay.frames(
                "ret", "done", "discount", "next_idx", "task_id", "intervention", "joint_pos", "extra"
            )
            v = values(self.replay.column("images"), q, task, extra)
            interv = interv * self.replay.rollout_frames()  # corrections, not demonstrations or play
            adv, pos = recap.advantage_labels(
                v, v[next_idx], ret, done, discount, task, interv, self.cfg.train.recap_positive_fraction
            )
            self.replay.set_policy_task_ids(_conditioned_ids(vocab, task, pos))
        else:
            eps = [
                (e, tr)
                for buf in (self.offline, self.online)
                for e, tr in zip(buf.episodes, buf._transitions, strict=True)
            ]
            vs = [
                values(e.images, e.joint_pos, np.full(len(e.actions), e.task_id, np.int32), e.extra_state)
                for e, _ in eps
            ]
            cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
            task = cat([np.full(len(v), e.task_id) for v, (e, _) in zip(vs, eps, strict=True)])
            adv, pos = recap.advantage_labels(
                cat(vs),
                cat([v[tr.next_t] for v, (_, tr) in zip(vs, eps, strict=True)]),
                cat([tr.ret for _, tr in eps]),
                cat([tr.done for _, tr in eps]),
                cat([tr.discount for _, tr in eps]),
                task,
                cat([tr.intervention * (e.kind == EpisodeKind.ROLLOUT) for e, tr in eps]),
                self.cfg.train.recap_positive_fraction,
            )
            ids = np.split(_conditioned_ids(vocab, task, pos), np.cumsum([len(v) for v in vs])[:-1])
            for (e, _), e_ids in zip(eps, ids, strict=True):
                e.policy_task_id = e_ids
        return {
            "recap_positive": float(np.mean(pos)) if len(pos) else 0.0,
            "recap_adv_mean": float(np.mean(adv)) if len(adv) else 0.0,
        }

    def _host_sample(self, bc: bool) -> dict:
        n = self.local_batch
        if not bc:
            return self.mixed.sample(self.rng, n)
        # BC draws from the BC pools of both buffers in proportion to their sizes (as on the device).
        sizes = np.array([len(b._bc()) if len(b) else 0 for b in (self.offline, self.online)], float)
        if sizes.sum() == 0:
            raise ValueError("replay buffer has no transitions to sample for BC")
        n_on = int(self.rng.binomial(n, sizes[1] / sizes.sum()))
        parts = [
            b.sample(self.rng, k, bc=True) for b, k in ((self.offline, n - n_on), (self.online, n_on)) if k
        ]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _conditioned_ids(vocab: Vocab, task: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Vocabulary ids of each step's instruction with its advantage label (added when new)."""
    ids = np.zeros(len(task), np.int32)
    for k in np.unique(task):
        instruction = vocab.items[int(k)]
        for label in (True, False):
            sel = (task == k) & (positive == label)
            ids[sel] = vocab.index(recap.conditioned(instruction, label), add=True)
    return ids
