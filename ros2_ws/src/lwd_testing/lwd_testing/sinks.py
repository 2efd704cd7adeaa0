"""Test doubles of the robot's episode and policy hand-offs: an EpisodeSink that stores an episode
in a local EpisodeStore at its end, and a policy file offered to the actor's policy switch.

The actor's own local sink journals every step (lwd_actor.core.journal); tests that only need the
episodes use this one.
"""

from __future__ import annotations

from dataclasses import dataclass

from lwd_common.episode import Episode, EpisodeMeta, EpisodeOutcome, StepRecord
from lwd_common.store import EpisodeStore, check_episode_id


@dataclass(frozen=True)
class PolicyUpdate:
    """A newer verified policy file and the version under which it was published."""

    path: str
    version: str  # e.g. the PolicyStore version "v000042"; recorded in episodes


class DirectorySink:
    """EpisodeSink that collects steps in memory and stores the episode at its end."""

    def __init__(self, store: EpisodeStore, commit: bool = True):
        self.store = store
        self.commit = commit
        self._meta: EpisodeMeta | None = None
        self._steps: list[StepRecord] = []

    def begin(self, meta: EpisodeMeta) -> None:
        if self._meta is not None:
            raise RuntimeError(f"episode {self._meta.episode_id} is still open")
        check_episode_id(meta.episode_id)
        self._meta, self._steps = meta, []

    def add_step(self, step: StepRecord) -> None:
        if self._meta is None:
            raise RuntimeError("add_step before begin")
        self._steps.append(step)

    def end(self, outcome: EpisodeOutcome) -> None:
        if self._meta is None:
            raise RuntimeError("end before begin")
        episode = Episode.from_steps(self._meta, self._steps, outcome)
        self._meta, self._steps = None, []
        self.store.put(episode)
        if self.commit:
            self.store.commit_snapshot()
