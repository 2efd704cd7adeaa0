"""Training loops: `offline` (BC, then DIVL + QAM on the offline buffer) and `online` (continue
from an offline checkpoint on 1:1 mixed replay, polling the bridge's store, publishing ONNX
policies every N steps). Both checkpoint with orbax and resume from the last checkpoint."""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
from tqdm import tqdm

from lwd_learner.agents import AgentState, BaseAgent, make_agent
from lwd_learner.batches import Batches
from lwd_learner.checkpoint import Checkpointer
from lwd_learner.config import (
    LearnerConfig,
    from_dict,
    online_config,
    relative_action_mask,
    to_dict,
    trains_critic,
)
from lwd_learner.export_onnx import export_policy
from lwd_learner.metrics_log import MetricsLog
from lwd_learner.replay import (
    EpisodeArrays,
    NormStats,
    StoreReader,
    Vocab,
    episode_arrays,
    observation_names,
)
from lwd_learner.sharding import agree_with_process_zero, data_mesh, replicate

log = logging.getLogger("lwd_learner")


@dataclass
class Session:
    """Everything a training run carries besides the replay."""

    cfg: LearnerConfig
    agent: BaseAgent
    state: AgentState
    vocab: Vocab
    stats: NormStats
    phase: str  # "bc" or "rl"
    extra: dict
    frozen: bool = False  # the image backbone is frozen (frozen-encoder path)

    def meta(self) -> dict:
        return {
            "config": to_dict(self.cfg),
            "vocab": self.vocab.to_json(),
            "stats": self.stats.to_dict(),
            "phase": self.phase,
            "step": int(self.state.step),
            "frozen": self.frozen,
            **self.extra,
        }

    def export_bytes(self, version: str = "unversioned") -> bytes:
        params = jax.device_get(self.state.policy)
        items = self.agent.deployed_instructions(self.vocab.items)
        model = export_policy(
            params, jax.device_get(self.state.norm), self.cfg.model, items, self.cfg.qam.flow_steps, version
        )
        return model.SerializeToString()


def restore_session(ckpt_dir: str | Path, cfg: LearnerConfig | None = None) -> Session:
    """Load the newest checkpoint in `ckpt_dir` (cfg overrides the saved one, e.g. online settings)."""
    ck = Checkpointer(ckpt_dir)
    meta = ck.read_meta()
    saved = from_dict(meta["config"])
    cfg = cfg or saved
    agent = make_agent(cfg)
    stats = NormStats.from_dict(meta["stats"])
    saved_agent = make_agent(saved)  # the checkpoint is read in the layout it was written in
    abstract = saved_agent.init(stats, saved.train.seed)
    saved_policy_tx = saved_agent.uses_policy_tx(meta["phase"])
    if saved_policy_tx:
        abstract = saved_agent.start_rl(abstract)
    state = ck.restore_state(abstract)
    ck.close()
    if saved_policy_tx != agent.uses_policy_tx(meta["phase"]):  # another method continues: its own optimiser
        state = state.replace(policy_opt=agent.policy_optimiser(meta["phase"]).init(state.policy))
    extra = {
        k: v for k, v in meta.items() if k not in ("config", "vocab", "stats", "phase", "step", "frozen")
    }
    return Session(
        cfg,
        agent,
        state,
        Vocab.from_json(meta["vocab"]),
        stats,
        meta["phase"],
        extra,
        bool(meta.get("frozen", False)),
    )


def with_store_observation(cfg: LearnerConfig, episodes) -> LearnerConfig:
    """cfg with the joint and camera names of a store's episodes (`meta.joint_names`, `meta.cameras`):
    the robot in the data fixes the model's inputs. A ValueError if the episodes disagree, or if the
    config asks for extra state vectors (stored episodes carry joints and cameras only)."""
    joints, cameras = observation_names(episodes)
    m = cfg.model
    if m.state_names:
        raise ValueError(
            f"model.state_names {m.state_names}: stored episodes carry no extra state vectors "
            "(train on arrays for those: lwd_learner.arrays)"
        )
    if (joints, cameras) != (m.joint_names, m.cameras):
        log.info("observation from the store's episodes: joints %s, cameras %s", joints, cameras)
    return dataclasses.replace(cfg, model=dataclasses.replace(m, joint_names=joints, cameras=cameras))


def decode_episodes(episodes, vocab: Vocab, cfg: LearnerConfig) -> list[EpisodeArrays]:
    """Decoded training arrays of stored episodes; a bad episode is skipped with a reason, never a crash."""
    out = []
    m = cfg.model
    for ep in episodes:
        try:
            out.append(episode_arrays(ep, vocab, m.encoder.image_size, m.cameras, m.joint_names))
        except ValueError as exc:
            log.warning("skipping episode %s: %s", ep.meta.episode_id, exc)
    return out


class _Stop:
    """SIGTERM/SIGINT -> finish the current step, checkpoint, exit."""

    def __init__(self):
        self.requested = False
        self._old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, *_):
        self.requested = True

    def restore(self):
        for sig, h in self._old.items():
            signal.signal(sig, h)


def _scalars(metrics: dict) -> dict:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def is_primary() -> bool:
    """Process 0 of a multi-host run (or the only process) publishes, logs metrics and exports."""
    return jax.process_index() == 0


def write_training_plot(cfg: LearnerConfig, out_dir: Path) -> Path | None:
    """`out_dir`/tau_entropy.png from its metrics.jsonl (`training_plot`), for runs whose critic logs
    tau and the value entropy (a DIVL value head); never fails the training run (a warning)."""
    if not (trains_critic(cfg.train) and cfg.divl.value_kind == "divl"):
        return None
    from lwd_learner.training_plot import write_plot

    try:
        return write_plot(out_dir)[0]
    except Exception as exc:  # noqa: BLE001 (a plot must not end a training run)
        log.warning("no training plot for %s: %s", out_dir, exc)
        return None


def _run(
    session: Session,
    batches: Batches,
    total_steps: int,
    out_dir: Path,
    progress: bool,
    on_step: Callable[[Session], None] | None = None,
    max_new_steps: int | None = None,
    max_seconds: float | None = None,
    plot_every_checkpoint: bool = False,
) -> Session:
    """Shared loop: BC until cfg.train.bc_steps, then RL (unless SFT); the backbone freezes at
    cfg.train.encoder_steps; checkpoints (every process, orbax coordinates) and metrics (process 0).
    Stops at `total_steps`, after `max_new_steps`, on SIGTERM / SIGINT, or once the loop has run
    `max_seconds` of wall-clock time (checked after each step, so at least one step is taken), each
    time with a checkpoint of the last step. Process 0 writes the training plot (tau_entropy.png)
    at the end, and at every checkpoint with `plot_every_checkpoint` (online)."""
    cfg, agent = session.cfg, session.agent
    mesh = batches.mesh
    if agent.uses_policy_tx(session.phase):  # an RL checkpoint of the other qam.reference setting
        session.state = agent.with_reference_training(session.state)
    if cfg.train.batch_size % mesh.devices.size:
        raise ValueError(f"batch size {cfg.train.batch_size} not divisible by {mesh.devices.size} devices")
    session.state = replicate(session.state, mesh)
    if session.frozen and not batches.frozen:  # resumed on the frozen path: recompute the cached features
        session.state = batches.freeze(session.state)
    ck = Checkpointer(out_dir / "checkpoints")
    primary = is_primary()
    metrics_log = MetricsLog(out_dir) if primary else None
    stop = _Stop()
    start = int(session.state.step)
    end = total_steps if max_new_steps is None else min(total_steps, start + max_new_steps)
    bar = tqdm(
        total=end if end < 10**11 else None,
        initial=start,
        disable=not (progress and primary),
        desc=f"{cfg.train.method}",
        dynamic_ncols=True,
    )
    freeze_at = cfg.train.encoder_steps
    labelled_at, label_stats = None, {}
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    out_of_time = False
    try:
        step = start
        while step < end and not stop.requested and not out_of_time:
            if session.phase == "bc" and step >= cfg.train.bc_steps and agent.trains_critic:
                session.state = agent.start_rl(session.state)
                session.phase = "rl"
            if freeze_at is not None and step >= freeze_at and not session.frozen:
                session.state = batches.freeze(session.state)
                session.frozen = True
            kind = agent.update_kind(session.phase)
            if kind == "recap" and (
                labelled_at is None or step - labelled_at >= cfg.train.recap_relabel_every
            ):
                label_stats = batches.relabel(session.state, session.vocab)
                labelled_at = step
                log.info("RECAP labels at step %d: %s", step, label_stats)
            session.state, metrics = batches.update(session.state, kind)
            step += 1
            bar.update(1)
            out_of_time = deadline is not None and time.monotonic() >= deadline
            last = step == end or stop.requested or out_of_time
            if metrics_log is not None and (step % cfg.train.log_every == 0 or last):
                m = {**_scalars(metrics), **label_stats}
                bar.set_postfix(
                    {
                        k: f"{v:.3g}"
                        for k, v in m.items()
                        if k
                        in (
                            "bc_loss",
                            "critic_loss",
                            "value_loss",
                            "policy_loss",
                            "tau_mean",
                            "value_entropy",
                            "q_mean",
                        )
                    }
                )
                metrics_log.write(step, session.phase, m)
            if on_step is not None:
                on_step(session)
            if step % cfg.train.ckpt_every == 0:
                ck.save(step, session.state, session.meta())
                if plot_every_checkpoint and primary:
                    write_training_plot(cfg, out_dir)
        if out_of_time:
            log.info("wall-clock budget of %g s reached at step %d (of %d)", max_seconds, step, end)
        if ck.latest_step() != step:
            ck.save(step, session.state, session.meta())
        if primary:
            if metrics_log is not None:
                metrics_log.flush()
            write_training_plot(cfg, out_dir)
    finally:
        bar.close()
        if metrics_log is not None:
            metrics_log.close()
        ck.close()
        stop.restore()
    return session


def run_offline(
    store_dir: str | Path,
    out_dir: str | Path,
    cfg: LearnerConfig,
    progress: bool = True,
    max_new_steps: int | None = None,
    max_seconds: float | None = None,
) -> Session:
    """BC then DIVL + QAM on the episodes of `store_dir`'s latest snapshot; resumes from out_dir.
    `max_new_steps` / `max_seconds` (the training loop's wall-clock time) stop this run early, with
    a checkpoint and policy.onnx written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    episodes = StoreReader(store_dir).poll()
    if not episodes:
        raise ValueError(f"no episodes in a snapshot of {store_dir} (commit a snapshot first)")
    cfg = with_store_observation(cfg, episodes)
    if Checkpointer(out_dir / "checkpoints").latest_step() is not None:
        session = restore_session(out_dir / "checkpoints", cfg)
        log.info("resuming offline training at step %d", int(session.state.step))
    else:
        vocab = Vocab([e.meta.instruction for e in episodes], cfg.model.encoder.vocab_capacity)
        stats = NormStats.from_episodes(
            episodes, relative_mask=relative_action_mask(cfg.model), horizon=cfg.model.horizon
        )
        agent = make_agent(cfg)
        session = Session(
            cfg,
            agent,
            agent.init(stats, cfg.train.seed),
            vocab,
            stats,
            "bc",
            {"store_dir": str(Path(store_dir).absolute())},
        )
    batches = Batches(session.cfg, session.agent, data_mesh(), int(session.state.step))
    batches.add(decode_episodes(episodes, session.vocab, session.cfg))
    log.info("offline buffer: %s", batches.bookkeeping())
    total = cfg.train.bc_steps + (cfg.train.rl_steps if trains_critic(cfg.train) else 0)
    session = _run(
        session, batches, total, out_dir, progress, max_new_steps=max_new_steps, max_seconds=max_seconds
    )
    if is_primary():
        (out_dir / "policy.onnx").write_bytes(session.export_bytes("offline"))
    return session


def run_online(
    bridge_root: str | Path,
    out_dir: str | Path,
    init_from: str | Path | None = None,
    cfg_override: Callable[[LearnerConfig], LearnerConfig] | None = None,
    offline_store: str | Path | None = None,
    max_new_steps: int | None = None,
    poll_every: int = 20,
    progress: bool = True,
    idle_sleep_s: float = 1.0,
    max_seconds: float | None = None,
    episode_store: str | None = None,
    queue: str | None = None,
) -> Session:
    """Continue training on 1:1 offline/online replay; publish a policy every publish_every steps.
    New episodes come from `episode_store` (default <bridge_root>/store; `s3://bucket/prefix` too).
    With `queue`, each published policy is also fed to the bridges through the episode store and the
    queue (lwd_common.policy_feed).
    Stops after `max_new_steps`, `max_seconds` of training-loop wall-clock time, or on SIGTERM,
    with a checkpoint; the training plot is rewritten at every checkpoint and at the exit."""
    from lwd_common.policy_feed import PolicyFeed
    from lwd_common.policy_store import PolicyStore

    bridge_root, out_dir = Path(bridge_root), Path(out_dir)
    if queue and not episode_store:
        raise ValueError("--queue feeds policies through the episode store: give --episode-store too")
    out_dir.mkdir(parents=True, exist_ok=True)
    if Checkpointer(out_dir / "checkpoints").latest_step() is not None:
        session = restore_session(out_dir / "checkpoints")
        log.info("resuming online training at step %d", int(session.state.step))
    else:
        if init_from is None:
            raise ValueError("online needs --init (an offline checkpoint directory) on its first run")
        base = restore_session(
            Path(init_from) / "checkpoints" if (Path(init_from) / "checkpoints").exists() else init_from
        )
        cfg = online_config(base.cfg)
        cfg = cfg_override(cfg) if cfg_override else cfg
        agent = make_agent(cfg)
        session = Session(
            cfg, agent, base.state, base.vocab, base.stats, base.phase, dict(base.extra), base.frozen
        )
        if session.phase == "bc" and agent.trains_critic:
            session.state = agent.start_rl(session.state)
            session.phase = "rl"
    cfg = session.cfg = dataclasses.replace(
        session.cfg, train=dataclasses.replace(session.cfg.train, bc_steps=0)
    )
    offline_store = offline_store or session.extra.get("store_dir")
    batches = Batches(cfg, session.agent, data_mesh(), int(session.state.step))
    if offline_store and Path(offline_store).exists():
        batches.add(decode_episodes(StoreReader(offline_store).poll(), session.vocab, cfg))
    # Every host reads the snapshot version process 0 sees, and keeps its shard of the new episodes.
    reader = StoreReader(
        episode_store or Path(bridge_root) / "store",
        shard=(jax.process_index(), jax.process_count()),
        agree=agree_with_process_zero,
    )
    policies = PolicyStore(bridge_root / "policies")
    primary = is_primary()
    feed = PolicyFeed(policies, episode_store, queue) if queue and episode_store and primary else None

    def poll() -> None:
        new = reader.poll()
        if new:
            batches.add(decode_episodes(new, session.vocab, cfg), online=True)
            log.info("online buffer: %s", batches.bookkeeping(online=True))

    def have_data() -> bool:  # the same answer on every host (each must poll as often as the others)
        return batches.count() > 0 or reader.episodes_seen >= jax.process_count()

    poll()
    if not have_data():
        log.info("waiting for the first episode in %s", reader.store.location)
    while not have_data():
        time.sleep(idle_sleep_s)
        poll()

    def on_step(s: Session) -> None:
        step = int(s.state.step)
        if primary and step % cfg.train.publish_every == 0:
            info = policies.publish(
                s.export_bytes,  # the store names the version; the graph carries it
                step,
                {"method": cfg.train.method, **batches.bookkeeping(online=True)},
            )
            log.info("published policy %s at step %d", info.version, step)
            if feed is not None:
                feed.offer(info.version)
        if step % poll_every == 0:
            poll()

    total = int(session.state.step) + (max_new_steps if max_new_steps is not None else 10**12)
    try:
        return _run(
            session,
            batches,
            total,
            out_dir,
            progress,
            on_step=on_step,
            max_seconds=max_seconds,
            plot_every_checkpoint=True,
        )
    finally:
        reader.close()  # its prefetch thread
        if feed is not None:
            feed.flush()  # one last try for versions a queue outage left pending
            feed.close()
