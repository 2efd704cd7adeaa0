"""Command line: `python -m lwd_learner.cli {offline,online,export} ...` (see docs/learner.md)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import typing
from pathlib import Path

from lwd_learner.config import LearnerConfig, TrainConfig, apply_overrides, from_dict, to_dict


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run directory (checkpoints/, metrics.jsonl, policy.onnx)")
    p.add_argument("--config", help="JSON file with a (partial) LearnerConfig")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. --set train.encoder_steps=2000 "
                        "--set model.encoder.pool=spatial (repeatable; applied after --config and the flags)")
    p.add_argument("--method", choices=typing.get_args(typing.get_type_hints(TrainConfig)["method"]))
    p.add_argument("--value", choices=["divl", "expectile"], help="expectile = scalar IQL baseline")
    p.add_argument("--constant-tau", type=float, help="constant-tau ablation instead of adaptive tau")
    p.add_argument("--nstep", type=int)
    p.add_argument("--lam", type=float, help="QAM temperature lambda (default 2)")
    p.add_argument("--qam-rollout", choices=["policy", "reference"])
    p.add_argument("--batch-size", type=int)
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    p.add_argument("--seed", type=int)
    p.add_argument("--max-new-steps", type=int, help="stop after this many steps in this run")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--coordinator", help="multi-host: jax.distributed coordinator host:port")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)


def build_config(args: argparse.Namespace, base: LearnerConfig | None = None) -> LearnerConfig:
    cfg = base or LearnerConfig()
    if getattr(args, "config", None):
        d = to_dict(cfg)
        for section, values in json.loads(Path(args.config).read_text()).items():
            d[section].update(values)
        cfg = from_dict(d)
    r = dataclasses.replace
    t, dv, q, m = cfg.train, cfg.divl, cfg.qam, cfg.model
    if args.method:
        t = r(t, method=args.method)
    if args.seed is not None:
        t = r(t, seed=args.seed)
    if args.batch_size:
        t = r(t, batch_size=args.batch_size)
    for name in ("bc_steps", "rl_steps", "publish_every", "ckpt_every", "log_every"):
        if getattr(args, name, None) is not None:
            t = r(t, **{name: getattr(args, name)})
    if args.value:
        dv = r(dv, value_kind=args.value)
    if args.constant_tau is not None:
        dv = r(dv, adaptive_tau=False, constant_tau=args.constant_tau)
    if args.nstep:
        dv = r(dv, nstep=args.nstep)
    if args.lam:
        q = r(q, lam=args.lam)
    if args.qam_rollout:
        q = r(q, rollout=args.qam_rollout)
    if args.image_size:
        m = r(m, encoder=r(m.encoder, image_size=tuple(args.image_size)))
    return apply_overrides(LearnerConfig(model=m, divl=dv, qam=q, train=t), getattr(args, "set", []) or [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lwd_learner", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    off = sub.add_parser("offline", help="BC, then DIVL + QAM on an episode store")
    off.add_argument("--store", required=True, help="EpisodeStore directory (latest snapshot is read)")
    off.add_argument("--bc-steps", type=int)
    off.add_argument("--rl-steps", type=int)
    off.add_argument("--ckpt-every", type=int)
    off.add_argument("--log-every", type=int)
    _add_common(off)
    on = sub.add_parser("online", help="continue on mixed replay from <bridge-root>/store, publish policies")
    on.add_argument("--bridge-root", required=True)
    on.add_argument("--init", help="offline run directory (first run only; later runs resume --out)")
    on.add_argument("--offline-store", help="offline EpisodeStore (default: the one of the offline run)")
    on.add_argument("--publish-every", type=int)
    on.add_argument("--ckpt-every", type=int)
    on.add_argument("--log-every", type=int)
    on.add_argument("--poll-every", type=int, default=20)
    _add_common(on)
    ex = sub.add_parser("export", help="write the ONNX sampler of a checkpoint")
    ex.add_argument("--run", required=True, help="run directory (or its checkpoints/)")
    ex.add_argument("--onnx", required=True, help="output .onnx path")
    ex.add_argument("--version", default="exported")
    vp = sub.add_parser("value-plot", help="value distribution along episodes (paper Fig. 6/9) as a PNG")
    vp.add_argument("--run", required=True, help="run directory (or its checkpoints/)")
    vp.add_argument("--store", required=True, help="EpisodeStore holding the episodes")
    vp.add_argument("--episodes", nargs="+", required=True, help="episode ids")
    vp.add_argument("--out", required=True, help="output .png")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)

    from lwd_learner import train
    from lwd_learner.sharding import initialize_distributed

    if args.cmd == "value-plot":
        from lwd_learner.value_plot import plot

        try:
            print(f"wrote {plot(args.run, args.store, args.episodes, args.out)}")
        except (ValueError, FileNotFoundError) as exc:
            print(f"lwd_learner: error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.cmd == "export":
        run = Path(args.run)
        session = train.restore_session(run / "checkpoints" if (run / "checkpoints").exists() else run)
        Path(args.onnx).write_bytes(session.export_bytes(args.version))
        print(f"wrote {args.onnx} (step {int(session.state.step)})")
        return 0
    initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    try:
        if args.cmd == "offline":
            session = train.run_offline(args.store, args.out, build_config(args), progress=not args.no_progress,
                                        max_new_steps=args.max_new_steps)
        else:
            session = train.run_online(args.bridge_root, args.out, args.init,
                                       cfg_override=lambda c: build_config(args, c),
                                       offline_store=args.offline_store, max_new_steps=args.max_new_steps,
                                       poll_every=args.poll_every, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"lwd_learner: error: {exc}", file=sys.stderr)
        return 2
    print(f"done at step {int(session.state.step)}; run directory {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
