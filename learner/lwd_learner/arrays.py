"""The array API: train the learner on an offline-RL dataset given as plain numpy arrays.

A dataset is T steps of consecutive episodes:

    observations  {name: array [T, ...]}: a camera is uint8 [T, H, W, 3]; a state vector is float
                  [T, d]. The key "joint_pos" (float [T, A]) is the robot's joint positions (the
                  state relative actions and the exported policy use); every other state vector
                  (object poses, velocities, a goal ...) is an extra state vector. No camera: a
                  state-only model. No "joint_pos": the joint input is zeros (the other state
                  vectors carry the state).
    actions       float [T, A]: the executed action (joint targets on a robot) at each step
    rewards       float [T]; lwd's own data has r = 1 on a success's last step, else 0
    episode_ends  bool [T]: True on the last step of each episode (a final step not marked ends
                  the last episode). An end is terminal, as for lwd's episodes (the return is not
                  bootstrapped past it), unless `truncated` marks it.
    truncated     optional bool [T]: True on the last step of an episode cut off by a time limit
                  (it must be an episode end). Such an episode bootstraps from the value of its
                  last recorded state instead of ending in a terminal state
                  (`replay.episode_transitions` says exactly how). From a D4RL / OGBench dataset:
                  episode_ends = terminals | timeouts, truncated = timeouts & ~terminals.

`train_arrays` turns these into the chunk transitions the store path trains on (the same
`EpisodeArrays`, and `replay.episode_transitions`' H-step chunks, chunk returns and done flags),
then runs the offline recipe of a `LearnerConfig` (BC, then DIVL + QAM) and returns the `Session`
(agent, state, vocabulary, statistics; checkpoints and metrics.jsonl in `out_dir`).
`predict_chunks`, `q_values` and `state_values` evaluate a trained session on observations given
the same way. An episode counts as a success when its rewards sum to more than 0 (BC clones the
successes unless `demos` marks demonstrations or train.bc_data is "all").

    from lwd_learner.arrays import train_arrays, predict_chunks
    session = train_arrays({"pos": pos}, actions, rewards, episode_ends, "runs/mine", cfg)
    chunks = predict_chunks(session, {"pos": pos[:5]})   # [5, H, A]

docs/learner.md ("Observations and the array API") has a runnable example.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lwd_common.episode import EpisodeKind
from lwd_common.preprocessing import resize
from lwd_learner.config import LearnerConfig, ModelConfig, relative_action_mask, trains_critic
from lwd_learner.replay import UNKNOWN_INSTRUCTION, EpisodeArrays, NormStats, Vocab

log = logging.getLogger("lwd_learner")

JOINT_POS = "joint_pos"
"""The observation key of the joint positions (every other float key is an extra state vector)."""
DEFAULT_INSTRUCTION = "task"
"""The instruction of every step when none is given."""

__all__ = [
    "DEFAULT_INSTRUCTION",
    "JOINT_POS",
    "episodes_from_arrays",
    "observation_config",
    "predict_chunks",
    "q_values",
    "state_values",
    "train_arrays",
]


def _is_camera(a: np.ndarray) -> bool:
    return a.dtype == np.uint8 and a.ndim == 4 and a.shape[-1] == 3


def _kind_of(name: str, a: np.ndarray) -> str:
    """'camera' or 'state'; a ValueError saying what an observation must look like otherwise."""
    if _is_camera(a):
        return "camera"
    if a.ndim == 2 and np.issubdtype(a.dtype, np.floating):
        return "state"
    raise ValueError(
        f"observation {name!r} is {a.dtype} {a.shape}: a camera is uint8 [T, H, W, 3], a state vector "
        "float [T, d]"
    )


def _as_arrays(observations: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(observations, Mapping) or not observations:
        raise ValueError("observations must be a non-empty dict {name: array [T, ...]}")
    return {str(k): np.asarray(v) for k, v in observations.items()}


def observation_config(
    observations: Mapping[str, np.ndarray],
    actions: np.ndarray,
    model: ModelConfig | None = None,
    joint_names: Sequence[str] | None = None,
) -> ModelConfig:
    """`model` (default ModelConfig()) with its observation named by the arrays: cameras (uint8
    [T, H, W, 3] keys, in the dict's order), extra state vectors (the other float [T, d] keys but
    "joint_pos") with their widths, and joint names (`joint_names`; else the model's when their
    number is the action width A, else joint0 .. joint{A-1})."""
    model = model or ModelConfig()
    obs = _as_arrays(observations)
    actions = np.asarray(actions)
    if actions.ndim != 2 or actions.shape[1] == 0:
        raise ValueError(f"actions must be float [T, A] with A >= 1, got {actions.dtype} {actions.shape}")
    width = actions.shape[1]
    kinds = {k: _kind_of(k, v) for k, v in obs.items()}
    if JOINT_POS in obs and kinds[JOINT_POS] != "state":
        raise ValueError(f"observation {JOINT_POS!r} must be float [T, A], got {obs[JOINT_POS].dtype}")
    if joint_names is not None:
        names = tuple(joint_names)
    elif model.num_joints == width:
        names = model.joint_names
    else:
        names = tuple(f"joint{i}" for i in range(width))
    if len(names) != width:
        raise ValueError(f"{len(names)} joint names for actions of width {width}")
    state = [k for k, kind in kinds.items() if kind == "state" and k != JOINT_POS]
    if model.relative_actions and JOINT_POS not in obs:
        raise ValueError(f"model.relative_actions needs the joint positions: an observation {JOINT_POS!r}")
    return dataclasses.replace(
        model,
        joint_names=names,
        cameras=tuple(k for k, kind in kinds.items() if kind == "camera"),
        state_names=tuple(state),
        state_dims=tuple(int(obs[k].shape[1]) for k in state),
    )


def _per_episode(name: str, values: np.ndarray, bounds: list[tuple[int, int]]) -> list:
    """One value per episode of a per-step array that must be constant within each episode."""
    out = []
    for i, (s, e) in enumerate(bounds):
        first = values[s]
        if np.any(values[s:e] != first):
            raise ValueError(f"{name} vary inside episode {i} (steps {s}..{e - 1}); it is per episode")
        out.append(first.item() if isinstance(first, np.generic) else first)
    return out


def _episode_bounds(episode_ends: np.ndarray, big_t: int) -> list[tuple[int, int]]:
    ends = np.asarray(episode_ends)
    if ends.dtype != np.bool_:
        if not np.issubdtype(ends.dtype, np.integer) or not np.isin(ends, (0, 1)).all():
            raise ValueError(f"episode_ends must be bool [T] (or 0/1 integers), got {ends.dtype}")
        ends = ends.astype(bool)
    last = np.flatnonzero(ends)
    if not len(last) or last[-1] != big_t - 1:
        last = np.append(last, big_t - 1)  # the data ends the last episode
    starts = np.concatenate([[0], last[:-1] + 1])
    return [(int(s), int(e) + 1) for s, e in zip(starts, last, strict=True)]


def _truncated_episodes(
    truncated: np.ndarray | None, bounds: list[tuple[int, int]], big_t: int
) -> list[bool]:
    """Per episode: its last step is marked truncated (a time limit cut it off). A ValueError for a
    flag of the wrong shape or dtype, or one set on a step that ends no episode."""
    if truncated is None:
        return [False] * len(bounds)
    flags = np.asarray(truncated)
    if flags.shape != (big_t,) or not (
        flags.dtype == np.bool_ or (np.issubdtype(flags.dtype, np.integer) and np.isin(flags, (0, 1)).all())
    ):
        raise ValueError(
            f"truncated must be bool [T] = [{big_t}] (or 0/1 integers), one flag per step, "
            f"got {flags.dtype} {flags.shape}"
        )
    flags = flags.astype(bool)
    last = np.zeros(big_t, bool)
    last[[e - 1 for _, e in bounds]] = True
    stray = np.flatnonzero(flags & ~last)
    if len(stray):
        raise ValueError(
            f"truncated is set on steps {stray[:5].tolist()} that end no episode: mark them in "
            "episode_ends too (D4RL: episode_ends = terminals | timeouts)"
        )
    return [bool(flags[e - 1]) for _, e in bounds]


def episodes_from_arrays(
    observations: Mapping[str, np.ndarray],
    actions: np.ndarray,
    rewards: np.ndarray,
    episode_ends: np.ndarray,
    model: ModelConfig,
    vocab: Vocab,
    instructions: str | Sequence[str] | None = None,
    demos: np.ndarray | None = None,
    truncated: np.ndarray | None = None,
) -> list[EpisodeArrays]:
    """The episodes of a dataset as the learner's `EpisodeArrays` (what `replay.episode_arrays`
    makes of a stored episode), for a model whose observation names (`observation_config`) the
    arrays must match: camera frames resized to model.encoder.image_size, the extra state vectors
    concatenated in model.state_names order. `instructions`: one for all steps, or one per step
    (constant within an episode); `demos`: bool [T], the episode is a demonstration; `truncated`:
    bool [T], True on the last step of an episode cut off by a time limit (`EpisodeArrays.truncated`).
    A ValueError names any key, length, dtype or value that does not fit."""
    obs = _as_arrays(observations)
    actions = np.asarray(actions)
    rewards = np.asarray(rewards)
    if actions.ndim != 2 or not np.issubdtype(actions.dtype, np.floating):
        raise ValueError(f"actions must be float [T, A], got {actions.dtype} {actions.shape}")
    big_t = len(actions)
    if big_t == 0:
        raise ValueError("the dataset has no steps")
    if actions.shape[1] != model.num_joints:
        raise ValueError(f"actions have width {actions.shape[1]}, the model {model.num_joints} joints")
    if rewards.shape != (big_t,) or not (
        np.issubdtype(rewards.dtype, np.floating) or np.issubdtype(rewards.dtype, np.integer)
    ):
        raise ValueError(f"rewards must be numeric [T] = [{big_t}], got {rewards.dtype} {rewards.shape}")
    ends = np.asarray(episode_ends)
    if ends.shape != (big_t,):
        raise ValueError(f"episode_ends must be [T] = [{big_t}], got {ends.shape}")
    lengths = {k: len(v) for k, v in obs.items() if len(v) != big_t}
    if lengths:
        raise ValueError(f"observations {lengths} differ in length from actions ({big_t} steps)")
    expected = {*model.cameras, *model.state_names}
    missing = sorted(expected - set(obs))
    if missing:
        raise ValueError(f"observations lack {missing} (the model's cameras / state_names)")
    unknown = sorted(set(obs) - expected - {JOINT_POS})
    if unknown:
        raise ValueError(f"observations {unknown} are not the model's cameras or state vectors")
    for k, v in obs.items():
        kind = _kind_of(k, v)
        if (kind == "camera") != (k in model.cameras):
            raise ValueError(f"observation {k!r} is a {kind}, the model has it as the other kind")
    for name, dim in zip(model.state_names, model.state_dims, strict=True):
        if obs[name].shape[1] != dim:
            raise ValueError(f"state vector {name!r} has width {obs[name].shape[1]}, the model {dim}")
    if JOINT_POS in obs:
        if obs[JOINT_POS].shape[1] != model.num_joints:
            raise ValueError(
                f"{JOINT_POS} has width {obs[JOINT_POS].shape[1]}, the model {model.num_joints} joints"
            )
        joint_pos = obs[JOINT_POS].astype(np.float32)
    elif model.relative_actions:
        raise ValueError(f"model.relative_actions needs the joint positions: an observation {JOINT_POS!r}")
    else:
        joint_pos = np.zeros((big_t, model.num_joints), np.float32)
    floats = {"actions": actions, "rewards": rewards, JOINT_POS: joint_pos}
    floats.update({k: obs[k] for k in model.state_names})
    bad = sorted(k for k, v in floats.items() if not np.all(np.isfinite(v)))
    if bad:
        raise ValueError(f"{bad} hold NaN or infinite values")
    bounds = _episode_bounds(ends, big_t)
    if instructions is None or isinstance(instructions, str):
        texts = [instructions or DEFAULT_INSTRUCTION] * len(bounds)
    else:
        per_step = np.asarray(list(instructions), dtype=object)
        if per_step.shape != (big_t,):
            raise ValueError(
                f"instructions must be one string or one per step ({big_t}), got {len(per_step)}"
            )
        texts = [str(x) for x in _per_episode("instructions", per_step, bounds)]
    if demos is None:
        is_demo = [False] * len(bounds)
    else:
        d = np.asarray(demos)
        if d.shape != (big_t,) or d.dtype != np.bool_:
            raise ValueError(f"demos must be bool [T] = [{big_t}], got {d.dtype} {d.shape}")
        is_demo = [bool(x) for x in _per_episode("demos", d, bounds)]
    is_truncated = _truncated_episodes(truncated, bounds, big_t)
    size = model.encoder.image_size
    extra = (
        np.concatenate([obs[k].astype(np.float32) for k in model.state_names], axis=1)
        if model.state_names
        else None
    )
    out = []
    for i, (s, e) in enumerate(bounds):
        frames = [np.stack([resize(f, size) for f in obs[c][s:e]]) for c in model.cameras]
        images = np.stack(frames, axis=1) if frames else np.zeros((e - s, 0, *size, 3), np.uint8)
        r = rewards[s:e].astype(np.float32)
        out.append(
            EpisodeArrays(
                episode_id=f"arrays-{i:06d}",
                kind=EpisodeKind.DEMO if is_demo[i] else EpisodeKind.ROLLOUT,
                success=bool(r.sum() > 0),
                task_id=vocab.index(texts[i]),
                images=images,
                joint_pos=joint_pos[s:e],
                actions=actions[s:e].astype(np.float32),
                rewards=r,
                intervention=np.zeros(e - s, bool),
                extra=None if extra is None else extra[s:e],
                truncated=is_truncated[i],
            )
        )
    return out


def train_arrays(
    observations: Mapping[str, np.ndarray],
    actions: np.ndarray,
    rewards: np.ndarray,
    episode_ends: np.ndarray,
    out_dir: str | Path,
    config: LearnerConfig | None = None,
    *,
    instructions: str | Sequence[str] | None = None,
    demos: np.ndarray | None = None,
    joint_names: Sequence[str] | None = None,
    progress: bool = False,
    max_new_steps: int | None = None,
    truncated: np.ndarray | None = None,
    max_seconds: float | None = None,
):
    """Offline training on a dataset of arrays (see the module docstring): BC for
    config.train.bc_steps, then DIVL + QAM for config.train.rl_steps (methods without a critic:
    BC only). The model's observation comes from the arrays (`observation_config`); the rest of
    `config` (default LearnerConfig()) is used as given. Checkpoints and metrics.jsonl go to
    `out_dir`, and a run with a checkpoint there resumes. `truncated` marks time-limit ends
    (`episodes_from_arrays`). `max_new_steps` caps the steps of this call, `max_seconds` its
    training loop's wall-clock time: either stops it early with a checkpoint written (the returned
    session is usable, and a later call resumes). Returns the `train.Session`
    (`session.export_bytes()` is the ONNX policy, for models without extra state vectors); the
    training plot (`training_plot`, tau and value entropy) is written to `out_dir` at the end."""
    from lwd_learner.agents import make_agent
    from lwd_learner.batches import Batches
    from lwd_learner.checkpoint import Checkpointer
    from lwd_learner.sharding import data_mesh
    from lwd_learner.train import Session, _run, restore_session

    cfg = config or LearnerConfig()
    cfg = dataclasses.replace(cfg, model=observation_config(observations, actions, cfg.model, joint_names))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if Checkpointer(out_dir / "checkpoints").latest_step() is not None:
        session = restore_session(out_dir / "checkpoints", cfg)
        log.info("resuming array training at step %d", int(session.state.step))
        episodes = episodes_from_arrays(
            observations,
            actions,
            rewards,
            episode_ends,
            cfg.model,
            session.vocab,
            instructions,
            demos,
            truncated,
        )
    else:
        vocab = Vocab(capacity=cfg.model.encoder.vocab_capacity)
        episodes = episodes_from_arrays(
            observations, actions, rewards, episode_ends, cfg.model, vocab, instructions, demos, truncated
        )
        stats = NormStats.from_columns(
            [e.joint_pos for e in episodes],
            [e.actions for e in episodes],
            [e.extra_state for e in episodes],
            relative_mask=relative_action_mask(cfg.model),
            horizon=cfg.model.horizon,
        )
        agent = make_agent(cfg)
        state = agent.init(stats, cfg.train.seed)
        session = Session(cfg, agent, state, vocab, stats, "bc", {"source": "arrays"})
    batches = Batches(session.cfg, session.agent, data_mesh(), int(session.state.step))
    batches.add(episodes)
    log.info("array buffer: %s", batches.bookkeeping())
    total = cfg.train.bc_steps + (cfg.train.rl_steps if trains_critic(cfg.train) else 0)
    return _run(
        session, batches, total, out_dir, progress, max_new_steps=max_new_steps, max_seconds=max_seconds
    )


def _observation_batch(session, observations: Mapping[str, np.ndarray], instruction: str | None):
    """(images or None, joint_pos, task ids, extra or None) of a batch of observations [B, ...]."""
    m: ModelConfig = session.cfg.model
    obs = _as_arrays(observations)
    missing = sorted({*m.cameras, *m.state_names} - set(obs))
    if missing:
        raise ValueError(f"observations lack {missing} (the model's cameras / state_names)")
    sizes = {len(v) for v in obs.values()}
    if len(sizes) != 1:
        raise ValueError(f"observations differ in batch size: { {k: len(v) for k, v in obs.items()} }")
    b = sizes.pop()
    images = None
    if m.cameras:
        size = m.encoder.image_size
        images = np.stack([np.stack([resize(f, size) for f in obs[c]]) for c in m.cameras], axis=1)
    joint_pos = (
        obs[JOINT_POS].astype(np.float32) if JOINT_POS in obs else np.zeros((b, m.num_joints), np.float32)
    )
    extra = (
        np.concatenate([obs[k].astype(np.float32) for k in m.state_names], axis=1) if m.state_names else None
    )
    text = instruction or (session.vocab.items[1] if len(session.vocab.items) > 1 else UNKNOWN_INSTRUCTION)
    task = np.full(b, session.vocab.index(text, add=False), np.int32)
    return images, joint_pos, task, extra


def predict_chunks(
    session,
    observations: Mapping[str, np.ndarray],
    instruction: str | None = None,
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """The trained policy's action chunks [B, H, A] for a batch of observations (same keys as the
    training arrays, batch first). `noise` [B, H, A] defaults to zeros (with the default
    policy.noise_scale 0 the sampler ignores it anyway); `instruction` defaults to the dataset's first."""
    images, q, task, extra = _observation_batch(session, observations, instruction)
    m = session.cfg.model
    if noise is None:
        noise = np.zeros((len(q), m.horizon, m.num_joints), np.float32)
    return session.agent.act(session.state, images, q, task, noise, extra=extra)


def q_values(
    session, observations: Mapping[str, np.ndarray], chunks: np.ndarray, instruction: str | None = None
) -> np.ndarray:
    """Q(s, a) [B] of the critic (the min of its two heads) for action chunks [B, H, A] (unnormalised,
    as in the data)."""
    from lwd_learner.networks import CriticValue

    images, q, task, extra = _observation_batch(session, observations, instruction)
    agent, state = session.agent, session.state
    batch = {"images": images, "joint_pos": q, "task_id": task, "extra": extra}

    @jax.jit
    def run(critic, norm, batch, chunks):
        z = agent.critic.apply(critic, *agent.nets.obs(norm, batch), method=CriticValue.encode)
        a = agent.nets.norm_actions(norm, chunks, batch["joint_pos"])
        return jnp.min(agent.critic.apply(critic, z, a, method=CriticValue.q_from_z), axis=0)

    return np.asarray(run(state.critic, state.norm, batch, jnp.asarray(chunks, jnp.float32)))


def state_values(
    session, observations: Mapping[str, np.ndarray], instruction: str | None = None
) -> np.ndarray:
    """V(s) [B] of the value model (the categorical value's mean, or the expectile head)."""
    images, q, task, extra = _observation_batch(session, observations, instruction)
    return np.asarray(
        session.agent.state_values(session.state.critic, session.state.norm, images, q, task, extra)
    )
