"""Where a training run's minibatches come from: the offline and online replay, drawn on the
device (one process) or on the host (each process of a multi-host run draws its own shard),
and the switch to the frozen-encoder path (cached backbone features instead of frames)."""

from __future__ import annotations

import logging

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lwd_learner.agent import Agent, AgentState
from lwd_learner.config import LearnerConfig
from lwd_learner.device_replay import DeviceReplay
from lwd_learner.replay import EpisodeArrays, MixedSampler, ReplayBuffer
from lwd_learner.sharding import shard_batch

log = logging.getLogger("lwd_learner")


def process_rng(seed: int, step: int) -> np.random.Generator:
    """Host sampling stream of this process: different per process (each draws its own shard of the
    global batch), reproducible per (seed, process, step) so a resumed run draws fresh data."""
    return np.random.default_rng([seed, jax.process_index(), step])


class Batches:
    """Offline + online replay of one run and the update that consumes it."""

    def __init__(self, cfg: LearnerConfig, agent: Agent, mesh, start_step: int = 0):
        self.cfg, self.agent, self.mesh = cfg, agent, mesh
        t, d = cfg.train, cfg.divl
        self.on_device = t.replay == "device" and jax.process_count() == 1
        self.frozen = False
        self._featurize = None
        if self.on_device:
            self.replay = DeviceReplay(cfg.model.horizon, d.nstep, d.gamma, t.bc_data,
                                       sharding=NamedSharding(mesh, P()) if mesh.devices.size > 1 else None)
            if mesh.devices.size > 1:
                agent.batch_sharding = NamedSharding(mesh, P("data"))
        else:
            self.offline = ReplayBuffer(cfg.model.horizon, d.nstep, d.gamma, t.bc_data)
            self.online = ReplayBuffer(cfg.model.horizon, d.nstep, d.gamma, t.bc_data)
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
            return np.concatenate([np.asarray(feats(frames[i:i + chunk])) for i in range(0, len(frames), chunk)])

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

    def update(self, state: AgentState, bc: bool):
        if self.on_device:
            fn = self.agent.bc_update_on_device if bc else self.agent.rl_update_on_device
            return fn(state, self.replay.arrays())
        batch = shard_batch(self._host_sample(bc), self.mesh)
        return (self.agent.bc_update if bc else self.agent.rl_update)(state, batch)

    def _host_sample(self, bc: bool) -> dict:
        n = self.local_batch
        if not bc:
            return self.mixed.sample(self.rng, n)
        # BC draws from the BC pools of both buffers in proportion to their sizes (as on the device).
        sizes = np.array([len(b._bc()) if len(b) else 0 for b in (self.offline, self.online)], float)
        if sizes.sum() == 0:
            raise ValueError("replay buffer has no transitions to sample for BC")
        n_on = int(self.rng.binomial(n, sizes[1] / sizes.sum()))
        parts = [b.sample(self.rng, k, bc=True) for b, k in ((self.offline, n - n_on), (self.online, n_on)) if k]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
