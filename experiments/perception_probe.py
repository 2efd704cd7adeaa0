"""Do a policy's image features say where the object is? A linear probe, measured.

    ./lwd py experiments/perception_probe.py runs/results3/seed0/sft [more runs ...] --scenes 600

For `--scenes` held-out initial scenes of the task (simulator seeds from 100000), it renders the
cameras, reads the instructed item's true table position (x, y), and fits a ridge regression
from features to position on two thirds of the scenes; it prints R^2 and the mean position error
(cm) on the other third. Feature sets: each run's image backbone (`FlowPolicy.image_features`,
what the heads see of the cameras) and, as references, the raw pixels of each camera (downsampled
to 16x16) and a constant (the error of always guessing the mean position). If the pixels locate
the item and the policy's features do not, the encoder discards the where; if both do, the heads
ignore it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from lwd_common.preprocessing import resize
from lwd_learner.train import restore_session
from lwd_sim.env import LwdSimEnv


def scenes(task: str, n: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, cams, H, W, 3], the instructed item's (x, y) [n, 2]) of n initial scenes."""
    env = LwdSimEnv(task, image_size=image_size)
    images, xy = [], []
    for i in range(n):
        obs, _ = env.reset(seed=100_000 + i)
        inst = env.instance
        assert inst is not None
        images.append(obs["images"])
        xy.append(inst.items[inst.target_items[0]][:2])
    env.close()
    return np.stack(images), np.stack(xy).astype(np.float64)


def resized(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Every camera frame of [n, cams, H, W, 3] at `size` (the policy's own resize)."""
    return np.stack([[resize(c, size) for c in scene] for scene in images])


def ridge_probe(features: np.ndarray, target: np.ndarray, alpha: float = 1.0) -> dict[str, float]:
    """Fit on the first two thirds, score on the rest: R^2 (mean over x, y) and mean error in cm."""
    n = len(features)
    k = (2 * n) // 3
    f = features.reshape(n, -1).astype(np.float64)
    mu, sd = f[:k].mean(0), f[:k].std(0) + 1e-6
    f = (f - mu) / sd
    t_mu = target[:k].mean(0)
    x = np.concatenate([f, np.ones((n, 1))], axis=1)
    w = np.linalg.solve(x[:k].T @ x[:k] + alpha * np.eye(x.shape[1]), x[:k].T @ (target[:k] - t_mu))
    pred = x[k:] @ w + t_mu
    resid = ((target[k:] - pred) ** 2).sum(0)
    total = ((target[k:] - target[k:].mean(0)) ** 2).sum(0)
    return {
        "r2": float(np.mean(1.0 - resid / total)),
        "error_cm": float(100 * np.mean(np.linalg.norm(target[k:] - pred, axis=1))),
    }


def policy_features(run: Path, images: np.ndarray, batch: int = 64) -> np.ndarray:
    s = restore_session(run / "checkpoints" if (run / "checkpoints").exists() else run)
    h, w = s.cfg.model.encoder.image_size
    images = resized(images, (h, w))  # unchanged when already that size
    out = [
        np.asarray(s.agent.image_features(s.state.policy, jnp.asarray(images[i : i + batch])))
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="*", help="learner run directories (or checkpoint dirs)")
    ap.add_argument("--task", default="can_to_bin")
    ap.add_argument("--scenes", type=int, default=600)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--alpha", type=float, default=10.0, help="ridge penalty (features are standardised)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    images, xy = scenes(args.task, args.scenes, args.image_size)
    print(
        f"{args.scenes} scenes of {args.task}; item x spread {xy[:, 0].std() * 100:.1f} cm, y {xy[:, 1].std() * 100:.1f} cm"
    )
    rows: dict[str, dict[str, float]] = {"constant (mean position)": ridge_probe(np.zeros((len(xy), 1)), xy)}
    small = resized(images, (16, 16)).astype(np.float32)
    for c in range(images.shape[1]):
        rows[f"pixels of camera {c} (16x16)"] = ridge_probe(small[:, c], xy, args.alpha)
    for run in args.runs:
        rows[f"{run} image features"] = ridge_probe(policy_features(run, images), xy, args.alpha)
    for name, r in rows.items():
        print(f"{name:<60} R^2 {r['r2']:6.2f}  error {r['error_cm']:5.1f} cm")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
