"""Command line: `python -m lwd_learner.cli {offline,online,export,value-plot} ...` (docs/learner.md).

The training commands take the whole `LearnerConfig` as typed flags, parsed by tyro (as openpi
parses its configs): every field of config.py is a flag `--section.field` whose default and
docstring `--help` prints, so a new config field needs no CLI code. `--preset NAME` picks the
named config (config.PRESETS) the flags override; an unknown flag or a bad value is an error that
names the flag. `--set section.field=value` and `--config FILE.json` set fields too. The flags of
the earlier hand-written CLI (`--bc-steps`, ...) are refused, naming the flag that replaced them
(RENAMED_FLAGS): one spelling per setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union

import tyro

from lwd_description.robot import load_robot
from lwd_learner.config import PRESETS, LearnerConfig, from_dict, merge, online_config, robot_model, to_dict

log = logging.getLogger("lwd_learner.cli")

PresetName = tyro.extras.literal_type_from_choices(tuple(PRESETS))
_PRESET_HELP = (
    "Named config whose values are the defaults of the flags below (read before them):\n"
    + "\n".join(f"  {name}: {what}." for name, (what, _) in PRESETS.items())
)
# The config's sections are flags of their own (`--train.bc-steps`), not `--cfg.train.bc-steps`.
_Sections = Annotated[LearnerConfig, tyro.conf.arg(name="")]


@dataclass(frozen=True, kw_only=True)
class _Training:
    """What offline and online training share: the config and how the process runs."""

    preset: Annotated[PresetName, tyro.conf.arg(help=_PRESET_HELP)] = "default"  # type: ignore[valid-type]
    config: Path | None = None
    """JSON file with a partial config, e.g. {"train": {"bc_steps": 5000}}: over the preset, under
    the flags."""
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """Legacy `section.field=value` overrides (JSON values, repeatable), applied after the flags."""
    robot: str | None = None
    """Robot description (a name like single_arm_6dof, or a YAML path; lwd_description) whose joints,
    grippers, cameras, control rate and chunk horizon the model takes, before the flags; default:
    the preset's (the G1)."""
    cfg: _Sections = LearnerConfig()
    """The learner config (every section's fields are flags)."""
    max_new_steps: int | None = None
    """Stop after this many steps in this run (a checkpoint and, offline, policy.onnx are written)."""
    max_seconds: float | None = None
    """Stop once this run's training loop has run this many seconds of wall-clock time (after data
    loading; checked after each step), writing a checkpoint and, offline, policy.onnx."""
    progress: bool = True
    """Draw a progress bar."""
    coordinator: str | None = None
    """Multi-host: jax.distributed coordinator host:port (or the JAX_* environment variables)."""
    num_processes: int | None = None
    """Multi-host: number of processes."""
    process_id: int | None = None
    """Multi-host: this process's index."""


@dataclass(frozen=True, kw_only=True)
class Offline(_Training):
    """BC, then DIVL + QAM on the latest snapshot of an episode store; resumes from --out."""

    store: Path
    """EpisodeStore directory (its latest snapshot is read)."""
    out: Path
    """Run directory: checkpoints/, metrics.jsonl, policy.onnx."""


@dataclass(frozen=True, kw_only=True)
class Online(_Training):
    """Continue from an offline run on mixed replay from <bridge-root>/store and publish policies to
    <bridge-root>/policies. The defaults are the --init checkpoint's config with the paper's online
    changes (a named --preset replaces its divl, qam and train sections); the model section is the
    checkpoint's. A run that resumes --out keeps its checkpoint's config."""

    bridge_root: Path
    """The bridge's root directory (store/ and policies/)."""
    out: Path
    """Run directory of the online learner (checkpoints/, metrics.jsonl)."""
    init: Path | None = None
    """Offline run directory to start from (first run only; later runs resume --out)."""
    offline_store: Path | None = None
    """Offline EpisodeStore mixed into replay (default: the one the offline run trained on)."""
    poll_every: int = 20
    """Steps between polls of the bridge's store for new episodes."""
    episode_store: str | None = None
    """Where the fleet's episodes are (default <bridge-root>/store): the bridge's --store, a directory
    or s3://bucket/prefix (S3 settings from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...; lwd_common.blobs)."""
    queue: str | None = None
    """NATS JetStream server (nats://host:4222): also feed every published policy to the bridges through
    --episode-store's policies/ and this queue (lwd_common.policy_feed), for bridges on other hosts."""


@dataclass(frozen=True)
class Export:
    """Write the ONNX sampler of a checkpoint."""

    run: Path
    """Run directory (or its checkpoints/)."""
    onnx: Path
    """Output .onnx path."""
    version: str = "exported"
    """Version string written into the policy's metadata."""


@dataclass(frozen=True)
class ValuePlot:
    """Value distribution along episodes (paper Fig. 6/9) as a PNG."""

    run: Path
    """Run directory (or its checkpoints/)."""
    store: str
    """EpisodeStore holding the episodes: a directory or s3://bucket/prefix (a string: a path would
    turn s3:// into s3:/)."""
    episodes: tuple[str, ...]
    """Episode ids."""
    out: Path
    """Output .png."""


# Flags of the earlier hand-written CLI -> the flags that replaced them (the last one takes the value).
RENAMED_FLAGS: dict[str, tuple[str, ...]] = {
    "--method": ("--train.method",),
    "--seed": ("--train.seed",),
    "--batch-size": ("--train.batch-size",),
    "--bc-steps": ("--train.bc-steps",),
    "--rl-steps": ("--train.rl-steps",),
    "--publish-every": ("--train.publish-every",),
    "--ckpt-every": ("--train.ckpt-every",),
    "--log-every": ("--train.log-every",),
    "--value": ("--divl.value-kind",),
    "--nstep": ("--divl.nstep",),
    "--constant-tau": ("--divl.no-adaptive-tau", "--divl.constant-tau"),
    "--lam": ("--qam.lam",),
    "--qam-rollout": ("--qam.rollout",),
    "--image-size": ("--model.encoder.image-size",),
}


def _refuse_renamed_flags(args: list[str]) -> None:
    """A ValueError naming the replacement of the first RENAMED_FLAGS spelling in `args`."""
    for a in args:
        name = a.partition("=")[0]
        if a.startswith("--") and name in RENAMED_FLAGS:
            raise ValueError(
                f"{name} was renamed: use {' '.join(RENAMED_FLAGS[name])} (lwd_learner.cli --help)"
            )


def _assignment_flags(path: str, value: Any) -> list[str]:
    """Flags that set config field `path` (e.g. "train.bc_steps") to a JSON value, so values from
    --config and --set are checked by the same parser as typed flags."""
    *sections, name = path.split(".")
    if isinstance(value, bool):
        return ["--" + ".".join([*sections, ("" if value else "no-") + name]).replace("_", "-")]
    flag = "--" + path.replace("_", "-")
    if isinstance(value, list | tuple):
        return [flag, *(str(v) for v in value)]
    return [flag, "None" if value is None else str(value)]


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        path = f"{prefix}.{k}" if prefix else k
        out += _flatten(v, path) if isinstance(v, dict) else [(path, v)]
    return out


def _config_file_flags(path: Path, base: LearnerConfig) -> list[str]:
    """The flags a JSON config file stands for; an unreadable file or an unknown key is a ValueError."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--config {path}: {exc}") from exc
    try:
        merge(base, data)  # names an unknown section or field
    except ValueError as exc:
        raise ValueError(f"--config {path}: {exc}") from exc
    return [f for p, v in _flatten(data) for f in _assignment_flags(p, v)]


def _set_flags(assignments: list[str]) -> list[str]:
    """The flags `--set section.field=value` assignments stand for (values parsed as JSON
    when they parse, else taken as strings)."""
    out: list[str] = []
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects section.field=value, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out += _assignment_flags(key.strip(), value)
    return out


def _checkpoint_config(ckpt_dir: Path) -> LearnerConfig:
    """The config saved with the newest checkpoint in ckpt_dir (nothing is created there)."""
    from lwd_learner.checkpoint import Checkpointer

    if not _has_checkpoint(ckpt_dir):
        raise FileNotFoundError(f"no checkpoint in {ckpt_dir}")
    ck = Checkpointer(ckpt_dir)
    try:
        return from_dict(ck.read_meta()["config"])
    finally:
        ck.close()


def _has_checkpoint(ckpt_dir: Path) -> bool:
    return ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir())


def _online_base(preset: str | None, init: str | None, out: str | None) -> tuple[LearnerConfig, bool]:
    """The online defaults and whether they are a resumed run's (see Online's docstring)."""
    if out and _has_checkpoint(Path(out) / "checkpoints"):
        return _checkpoint_config(Path(out) / "checkpoints"), True
    if not init:
        return PRESETS[preset or "default"][1], False
    ckpt = Path(init) / "checkpoints" if (Path(init) / "checkpoints").exists() else Path(init)
    cfg = _checkpoint_config(ckpt)
    if preset:
        cfg = dataclasses.replace(PRESETS[preset][1], model=cfg.model)
    return online_config(cfg), False


def changed_fields(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the config fields that differ between a and b."""
    da, db = to_dict(a), to_dict(b)
    return [
        p for (p, va), (_, vb) in zip(_flatten(da, prefix), _flatten(db, prefix), strict=True) if va != vb
    ]


def _commands(offline: LearnerConfig, online: LearnerConfig, preset: str = "default") -> Any:
    """The subcommand union; the training commands' config defaults are `offline` / `online`."""
    sub = tyro.conf.subcommand
    off = Offline(store=tyro.MISSING, out=tyro.MISSING, cfg=offline, preset=preset)
    on = Online(bridge_root=tyro.MISSING, out=tyro.MISSING, cfg=online, preset=preset)
    return Union[  # noqa: UP007 (a runtime type for tyro)
        Annotated[Offline, sub("offline", default=off, description=inspect.cleandoc(Offline.__doc__ or ""))],
        Annotated[Online, sub("online", default=on, description=inspect.cleandoc(Online.__doc__ or ""))],
        Annotated[Export, sub("export", description=Export.__doc__)],
        Annotated[ValuePlot, sub("value-plot", description=ValuePlot.__doc__)],
    ]


DESCRIPTION = (
    "The learner: offline and online training, ONNX export, value plots (docs/learner.md). The training "
    "commands take every field of lwd_learner/config.py as a typed flag --section.field (`offline --help` "
    "lists them with their defaults); --preset NAME picks the defaults (" + ", ".join(PRESETS) + "); "
    "--set section.field=value and --config FILE.json set fields too."
)


@dataclass(frozen=True)
class Parsed:
    """A parsed command line: the command's arguments, and for training the resolved config."""

    args: Offline | Online | Export | ValuePlot
    resumed_online: bool = False
    online_base: LearnerConfig | None = None


def parse(argv: list[str]) -> Parsed:
    """Parse a command line (tyro exits with status 2 and a message naming the flag on bad input;
    a bad --config file or --set item is a ValueError, an --init without a checkpoint a
    FileNotFoundError)."""
    cmd = argv[0] if argv else ""
    if cmd not in ("offline", "online"):
        return Parsed(
            tyro.cli(
                _commands(LearnerConfig(), LearnerConfig()),
                args=argv,
                prog="lwd_learner",
                description=DESCRIPTION,
            )
        )
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--preset", "--config", "--init", "--out", "--robot"):
        pre.add_argument(flag)
    pre.add_argument("--set", action="append", default=[])
    known, _ = pre.parse_known_args(argv[1:])
    preset = known.preset if known.preset in PRESETS else None  # an unknown name: tyro reports it
    resumed, online_base = False, None
    if cmd == "offline":
        base = PRESETS[preset or "default"][1]
    else:
        base, resumed = _online_base(preset, known.init, known.out)
    if known.robot:
        base = dataclasses.replace(base, model=robot_model(base.model, load_robot(known.robot)))
    if cmd == "online":
        online_base = base
    flags = [cmd]
    if known.config:
        flags += _config_file_flags(Path(known.config), base)
    _refuse_renamed_flags(argv[1:])
    flags += argv[1:] + _set_flags(known.set)
    name = preset or "default"
    commands = (
        _commands(base, LearnerConfig(), name) if cmd == "offline" else _commands(LearnerConfig(), base, name)
    )
    return Parsed(
        tyro.cli(commands, args=flags, prog="lwd_learner", description=DESCRIPTION), resumed, online_base
    )


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:
        # Ctrl-C/SIGINT before the training loop installed its handler (importing JAX, loading and
        # featurising data): nothing was trained in this run yet, so nothing to save; stop quietly.
        print("lwd_learner: interrupted while starting up; nothing new to save", file=sys.stderr)
        return 0


def _main(argv: list[str]) -> int:
    # Before anything imports JAX/orbax (reading an --init checkpoint's config does): they add a
    # root handler, after which basicConfig would silently keep the WARNING level.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        parsed = parse(argv)
    except (ValueError, FileNotFoundError) as exc:
        print(f"lwd_learner: error: {exc}", file=sys.stderr)
        return 2
    args = parsed.args
    logging.getLogger("absl").setLevel(logging.WARNING)
    if isinstance(args, Online) and parsed.online_base is not None:
        changed = changed_fields(parsed.online_base, args.cfg)
        if parsed.resumed_online and changed:
            log.warning(
                "resuming %s: its checkpoint's config is kept; ignored: %s", args.out, ", ".join(changed)
            )
        elif (
            not parsed.resumed_online
            and args.init
            and (bad := [p for p in changed if p.startswith("model.")])
        ):
            print(
                f"lwd_learner: error: online continues the --init checkpoint, whose weights fix the model; "
                f"cannot change {', '.join(bad)}",
                file=sys.stderr,
            )
            return 2

    from lwd_learner import train
    from lwd_learner.sharding import initialize_distributed

    if isinstance(args, ValuePlot):
        from lwd_learner.value_plot import plot

        try:
            print(f"wrote {plot(args.run, args.store, list(args.episodes), args.out)}")
        except (ValueError, FileNotFoundError) as exc:
            print(f"lwd_learner: error: {exc}", file=sys.stderr)
            return 2
        return 0
    if isinstance(args, Export):
        run = Path(args.run)
        session = train.restore_session(run / "checkpoints" if (run / "checkpoints").exists() else run)
        Path(args.onnx).write_bytes(session.export_bytes(args.version))
        print(f"wrote {args.onnx} (step {int(session.state.step)})")
        return 0
    initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    try:
        if isinstance(args, Offline):
            session = train.run_offline(
                args.store,
                args.out,
                args.cfg,
                progress=args.progress,
                max_new_steps=args.max_new_steps,
                max_seconds=args.max_seconds,
            )
        else:
            cfg = args.cfg
            session = train.run_online(
                args.bridge_root,
                args.out,
                args.init,
                cfg_override=lambda _: cfg,
                offline_store=args.offline_store,
                max_new_steps=args.max_new_steps,
                poll_every=args.poll_every,
                progress=args.progress,
                max_seconds=args.max_seconds,
                episode_store=args.episode_store,
                queue=args.queue,
            )
    except (ValueError, FileNotFoundError) as exc:
        print(f"lwd_learner: error: {exc}", file=sys.stderr)
        return 2
    print(f"done at step {int(session.state.step)}; run directory {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
