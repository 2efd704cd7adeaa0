"""Evaluate every flow of a run's last checkpoint: the policy f_theta, the QAM reference pi_beta and,
with qam.reference "bc_ema", the cloning flow the reference follows (which one is where a change
helps or hurts). Writes diag_<flow>.onnx and diag_flows.json into the run directory.

    python experiments/eval_flows.py runs/results3/seed0/online3 [--task can_to_bin] [--episodes 24]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax

from lwd_learner.export_onnx import export_policy
from lwd_learner.train import restore_session
from lwd_sim.evaluate_policy import evaluate_policy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="learner run directory (with checkpoints/)")
    ap.add_argument("--task", default="can_to_bin")
    ap.add_argument("--episodes", type=int, default=24)
    ap.add_argument("--execute-steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=12345, help="evaluation seed (the results table's)")
    args = ap.parse_args()
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
            str(path), args.task, args.episodes, num_envs=4, execute_steps=args.execute_steps, seed=args.seed
        )
        out[name] = r.success_rate
        print(f"{args.run} {name}: success {r.success_rate:.2f}", flush=True)
    (args.run / "diag_flows.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
