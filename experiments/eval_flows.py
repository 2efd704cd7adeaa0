"""Evaluate every flow of a run's last checkpoint: the policy f_theta, the QAM reference pi_beta and,
with qam.reference "bc_ema", the cloning flow the reference follows (which one is where a change
helps or hurts). Writes diag_<flow>.onnx and diag_flows.json into the run directory.

    python experiments/eval_flows.py runs/results3/seed0/online3 [--task can_to_bin] [--episodes 24]
        [--execution actor --delay-ticks 0 | --execution whole-chunks --execute-steps 30]

Held-out execution as `lwd_sim.evaluate_policy`'s: the actor's scheduler by default; --execute-steps
belongs to whole-chunks execution and is refused with actor execution (it would be ignored).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax

from lwd_learner.export_onnx import export_policy
from lwd_learner.train import restore_session
from lwd_sim.env import DEFAULT_DELAY_TICKS, EXECUTION_ACTOR, EXECUTION_WHOLE_CHUNKS
from lwd_sim.evaluate_policy import add_execution_args, evaluate_policy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="learner run directory (with checkpoints/)")
    ap.add_argument("--task", default="can_to_bin")
    ap.add_argument("--episodes", type=int, default=24)
    add_execution_args(ap, execute_steps_default=None)
    ap.add_argument("--seed", type=int, default=12345, help="evaluation seed (the results table's)")
    args = ap.parse_args()
    execution = args.execution.replace("-", "_")
    if execution == EXECUTION_ACTOR and args.execute_steps is not None:
        ap.error("--execute-steps applies to --execution whole-chunks; actor execution would ignore it")
    if execution == EXECUTION_WHOLE_CHUNKS and args.delay_ticks != DEFAULT_DELAY_TICKS:
        ap.error("--delay-ticks applies to --execution actor; whole-chunks execution has no delay")
    execute_steps = 30 if args.execute_steps is None else args.execute_steps
    session = restore_session(args.run / "checkpoints")
    norm = jax.device_get(session.state.norm)
    out = {}
    for name in ("policy", "ref_policy", "bc_policy"):
        params = getattr(session.state, name)
        if params is None:
            continue
        path = args.run / f"diag_{name}.onnx"
        model = export_policy(
            jax.device_get(params), norm, session.cfg.model, session.vocab.items, session.cfg.qam.flow_steps
        )
        path.write_bytes(model.SerializeToString())
        r = evaluate_policy(
            str(path),
            args.task,
            args.episodes,
            num_envs=4,
            execute_steps=execute_steps,
            seed=args.seed,
            execution=execution,
            delay_ticks=args.delay_ticks,
        )
        out[name] = r.success_rate
        print(f"{args.run} {name}: success {r.success_rate:.2f} [{r.label}]", flush=True)
    (args.run / "diag_flows.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
