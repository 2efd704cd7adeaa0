"""Critic diagnostics before fixes (issue 26 item 1): which link between the critic and the policy fails?

On `can_to_bin` LWD offline equals SFT: the critic's action gradient is ~1e-3, so QAM hardly moves
the policy. Three measurements, for trained lwd checkpoints (critic + policy + QAM reference):

1. **ranking** (held-out episode store, e.g. `lwd_sim.generate_offline --seed 1`, a seed the run did
   not train on): ROC AUC of Q(s, a_data) and V(s) for the episode's eventual outcome, over the
   historical rollouts (which succeed and fail), overall and per quarter of each episode; the
   share of Q near 1 on rescued (intervened) successes. Then at states of successful episodes,
   whether Q prefers the dataset's chunk to (a) the same chunk with i.i.d. Gaussian noise on every
   arm element, (b) the chunk with a constant per-joint offset, both at 0.05 / 0.1 rad, (c) the
   chunk a failed rollout executed from the nearest state (joint space) of that rollout: fraction of
   pairs ranked correctly and the mean Q gap.
2. **direction** (simulator): reset with a held-out seed, roll the policy 1-3 chunks, and at that
   state execute the policy's chunk, or that chunk moved a step along +dQ/da or -dQ/da (step
   normalised to a fixed RMS in rad over the 30 x 14 arm elements; grippers unchanged), then the
   policy to the end of the episode. Branches are exact: every variant of a branch state is its own
   env reset with the same seed and driven by the same actions up to the branch (MuJoCo is
   deterministic; the script checks the states agree). Whole-chunk execution (all 30 rows of each
   chunk, no re-planning), not the actor's scheduler.
3. **movement**: for each run given, mean |a_theta - a_beta| (rad, arm joints) between the chunks of
   the policy and of its QAM reference at held-out states (same noise), and the critic's action
   gradient |dQ/da| at the policy's chunks in normalised units, with the adjoint |dQ/da| / lambda
   at the run's lambda (lam_scale "q_std": lambda x std of Q over the data chunks of those states;
   "grad_rms": lambda x the RMS of that gradient),
   beside the last `adjoint_norm` the run logged.

    python experiments/critic_diagnostics.py --run runs/diag/lam2_s400 --store runs/diag/store_heldout \\
        --movement runs/diag/lam2_s100 runs/diag/lam0.2_s400 ... --json out.json

Extends experiments/critic_report.py (its AUC) rather than replacing it; policy_shift.py compares
exported policies against SFT on a few initial observations, (3) here compares a checkpoint's
policy with its own reference on many held-out states.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from lwd_common.episode import EpisodeKind
from lwd_common.preprocessing import JPEG_QUALITY, policy_batch
from lwd_learner.replay import StoreReader
from lwd_learner.train import decode_episodes, restore_session
from lwd_sim.env import LwdSimEnv
from lwd_sim.tasks import ALL_INSTRUCTIONS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from critic_report import auc  # noqa: E402

T0 = time.time()


def log(msg: str) -> None:
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def load(run: str | Path):
    p = Path(run)
    return restore_session(p / "checkpoints" if (p / "checkpoints").exists() else p)


class Critic:
    """Jitted Q / dQ/da / V / sampler of one session (actions in absolute joint targets)."""

    def __init__(self, session):
        self.s = session
        agent = session.agent
        self.agent = agent
        self.h = session.cfg.model.horizon
        self.arm = np.array(["gripper" not in n for n in session.cfg.model.joint_names])  # rad joints
        self.std = np.asarray(jax.device_get(session.state.norm["action_std"]))

        self._q_grad = agent.q_and_action_grad

    def q_grad(self, images, joint_pos, task_id, actions, bs: int = 128):
        """Q [N] and dQ/da [N, H, J] in normalised action units."""
        st = self.s.state
        qs, gs = [], []
        for i in range(0, len(joint_pos), bs):
            sl = slice(i, i + bs)
            q, g = self._q_grad(
                st.critic,
                st.norm,
                images[sl],
                joint_pos[sl],
                task_id[sl],
                np.asarray(actions[sl], np.float32),
            )
            qs.append(np.asarray(q))
            gs.append(np.asarray(g))
        return np.concatenate(qs), np.concatenate(gs)

    def v(self, images, joint_pos, task_id, bs: int = 256):
        st = self.s.state
        return np.concatenate(
            [
                np.asarray(
                    self.agent.state_values(
                        st.critic, st.norm, images[i : i + bs], joint_pos[i : i + bs], task_id[i : i + bs]
                    )
                )
                for i in range(0, len(joint_pos), bs)
            ]
        )

    def sample(self, params, images, joint_pos, task_id, noise):
        return np.array(
            self.agent.sample_actions(
                params, self.s.state.norm, images, joint_pos, task_id, noise, steps=self.s.cfg.qam.flow_steps
            )
        )


def chunk_at(e, t: np.ndarray, h: int) -> np.ndarray:
    """The executed chunks starting at steps t of a decoded episode (last action repeated past the end)."""
    idx = np.minimum(np.asarray(t)[:, None] + np.arange(h), len(e.actions) - 1)
    return e.actions[idx]


# ---- 1. ranking ------------------------------------------------------------------------------
def ranking(
    c: Critic, arrays, rng: np.random.Generator, stride: int, pair_stride: int, sigmas: list[float]
) -> dict:
    h = c.h
    rows = {k: [] for k in ("q", "v", "success", "quarter", "kind", "rescued")}
    for n, e in enumerate(arrays):
        big_t = len(e.actions)
        t = np.arange(0, big_t, stride)
        task = np.full(len(t), e.task_id, np.int32)
        q, _ = c.q_grad(e.images[t], e.joint_pos[t], task, chunk_at(e, t, h))
        rows["q"].append(q)
        rows["v"].append(c.v(e.images[t], e.joint_pos[t], task))
        rows["success"].append(np.full(len(t), e.success))
        rows["quarter"].append(np.minimum(4 * t // big_t, 3))
        rows["kind"].append(np.full(len(t), e.kind.value))
        rows["rescued"].append(np.full(len(t), bool(e.intervention.any())))
        if n % 10 == 0:
            log(f"ranking: scored episode {n + 1}/{len(arrays)}")
    cat = {k: np.concatenate(v) for k, v in rows.items()}
    out: dict = {}
    for name, sel in (
        ("rollouts", cat["kind"] == EpisodeKind.ROLLOUT.value),
        ("all_kinds", np.ones(len(cat["q"]), bool)),
    ):
        s, f = sel & cat["success"], sel & ~cat["success"]
        r = {"states_success": int(s.sum()), "states_failure": int(f.sum())}
        for key in ("q", "v"):
            r[f"auc_{key}"] = auc(cat[key][s], cat[key][f])
            r[f"auc_{key}_by_quarter"] = [
                auc(cat[key][s & (cat["quarter"] == k)], cat[key][f & (cat["quarter"] == k)])
                for k in range(4)
            ]
        out[name] = r
    roll = cat["kind"] == EpisodeKind.ROLLOUT.value
    groups = {
        "rollout success, rescued (intervened)": roll & cat["success"] & cat["rescued"],
        "rollout success, autonomous": roll & cat["success"] & ~cat["rescued"],
        "rollout failure": roll & ~cat["success"],
        "demo": cat["kind"] == EpisodeKind.DEMO.value,
        "play": cat["kind"] == EpisodeKind.PLAY.value,
    }
    out["q_by_group"] = {
        k: {
            "states": int(m.sum()),
            "q_mean": float(cat["q"][m].mean()) if m.any() else None,
            "q_frac_above_0.95": float((cat["q"][m] > 0.95).mean()) if m.any() else None,
            "v_mean": float(cat["v"][m].mean()) if m.any() else None,
        }
        for k, m in groups.items()
    }
    out["pairs"] = pairs(c, arrays, rng, pair_stride, sigmas)
    return out


def pairs(c: Critic, arrays, rng: np.random.Generator, stride: int, sigmas: list[float]) -> dict:
    """Q(s, a_success) against perturbed and failed chunks at states of successful episodes."""
    h = c.h
    fails = [e for e in arrays if not e.success and e.kind == EpisodeKind.ROLLOUT]
    fails = fails or [e for e in arrays if not e.success]
    f_q = np.concatenate([e.joint_pos for e in fails])
    f_ep = np.concatenate([np.full(len(e.actions), i) for i, e in enumerate(fails)])
    f_t = np.concatenate([np.arange(len(e.actions)) for e in fails])
    f_task = np.concatenate([np.full(len(e.actions), e.task_id) for e in fails])
    arm = c.arm
    res: dict[str, list] = {}
    dist = []
    for e in arrays:
        if not e.success:
            continue
        t = np.arange(0, len(e.actions), stride)
        task = np.full(len(t), e.task_id, np.int32)
        imgs, qpos = e.images[t], e.joint_pos[t]
        base = chunk_at(e, t, h)
        alts = {}
        for sg in sigmas:
            white = base.copy()
            white[..., arm] += rng.normal(0, sg, white[..., arm].shape)
            alts[f"white noise {sg} rad"] = white
            off = base.copy()
            off[..., arm] += rng.normal(0, sg, (len(t), 1, int(arm.sum())))
            alts[f"offset {sg} rad"] = off
        fail_chunks = np.empty_like(base)
        for i, qi in enumerate(qpos):
            cand = np.flatnonzero(f_task == e.task_id)
            d = np.linalg.norm(f_q[cand][:, arm] - qi[arm], axis=-1)
            j = cand[np.argmin(d)]
            dist.append(float(d.min()))
            fail_chunks[i] = chunk_at(fails[f_ep[j]], np.array([f_t[j]]), h)[0]
        alts["failed rollout's chunk, nearest state"] = fail_chunks
        q0, _ = c.q_grad(imgs, qpos, task, base)
        for name, a in alts.items():
            qa, _ = c.q_grad(imgs, qpos, task, a)
            res.setdefault(name, []).append(np.stack([q0, qa]))
    out = {}
    for name, v in res.items():
        qq = np.concatenate(v, axis=1)
        gap = qq[0] - qq[1]
        out[name] = {
            "pairs": int(qq.shape[1]),
            "frac_success_chunk_preferred": float((gap > 0).mean() + 0.5 * (gap == 0).mean()),
            "mean_q_gap": float(gap.mean()),
            "median_abs_q_gap": float(np.median(np.abs(gap))),
        }
    dist = np.asarray(dist)
    out["failed rollout's chunk, nearest state"]["state_distance_rad_median_p90"] = [
        float(np.median(dist)),
        float(np.percentile(dist, 90)),
    ]
    return out


# ---- 2. direction ----------------------------------------------------------------------------
def direction(
    c: Critic,
    task: str,
    branches: int,
    steps: list[float],
    seed: int,
    group: int,
    prefix_chunks: tuple[int, ...] = (1, 2, 3),
) -> dict:
    s = c.s
    h, j = c.h, len(c.arm)
    size = tuple(s.cfg.model.encoder.image_size)
    variants = [("policy", 0.0)] + [(f"{sgn}{st}", st if sgn == "+" else -st) for st in steps for sgn in "+-"]
    nv = len(variants)
    envs = [LwdSimEnv(task, size, seed=0) for _ in range(group * nv)]
    noise_rng = np.random.default_rng(seed)
    succ = np.full((branches, nv), np.nan)
    dq = np.full((branches, nv), np.nan)
    gnorm = np.full(branches, np.nan)
    mismatch = 0.0
    vocab_ids = {i: s.vocab.index(instr, add=False) for i, instr in enumerate(ALL_INSTRUCTIONS)}
    for b0 in range(0, branches, group):
        gs = list(range(b0, min(branches, b0 + group)))
        active = envs[: len(gs) * nv]
        obs = []
        for gi, b in enumerate(gs):
            for v in range(nv):
                obs.append(active[gi * nv + v].reset(seed=seed + b)[0])
        done = np.zeros(len(active), bool)
        result = np.zeros(len(active))
        k = 0
        while not done.all():
            images = policy_batch(np.stack([o["images"] for o in obs]), size, JPEG_QUALITY)
            qpos = np.stack([o["joint_pos"] for o in obs]).astype(np.float32)
            tids = np.array([vocab_ids[int(o["task_id"])] for o in obs], np.int32)
            noise = np.repeat(noise_rng.standard_normal((len(gs), h, j)).astype(np.float32), nv, axis=0)
            chunks = c.sample(s.state.policy, images, qpos, tids, noise)
            for gi, b in enumerate(gs):
                members = slice(gi * nv, (gi + 1) * nv)
                lead = gi * nv
                kb = prefix_chunks[b % len(prefix_chunks)]
                if k < kb:
                    chunks[members] = chunks[lead]
                elif k == kb:
                    if done[lead]:
                        continue  # the episode ended before the branch point: no branch here
                    mismatch = max(mismatch, float(np.abs(qpos[members] - qpos[lead]).max()))
                    base = chunks[lead]
                    q0, g = c.q_grad(
                        images[lead : lead + 1], qpos[lead : lead + 1], tids[lead : lead + 1], base[None]
                    )
                    g_raw = g[0] / c.std  # dQ/da in the executed chunk's units (rad for arm joints)
                    d = np.where(c.arm, g_raw, 0.0)
                    gnorm[b] = float(np.sqrt(np.mean(d[:, c.arm] ** 2)))
                    d = d / (np.sqrt(np.mean(d[:, c.arm] ** 2)) + 1e-12)
                    var_chunks = np.stack([base + step * d for _, step in variants]).astype(np.float32)
                    chunks[members] = var_chunks
                    qv, _ = c.q_grad(
                        np.repeat(images[lead : lead + 1], nv, 0),
                        np.repeat(qpos[lead : lead + 1], nv, 0),
                        np.repeat(tids[lead : lead + 1], nv, 0),
                        var_chunks,
                    )
                    dq[b] = qv - q0[0]
                    succ[b] = -1  # marks: branched; filled in at the end
            for r in range(h):
                for i, env in enumerate(active):
                    if done[i]:
                        continue
                    o, _, term, trunc, info = env.step(chunks[i, r])
                    obs[i] = o
                    if term or trunc:
                        done[i] = True
                        result[i] = float(info["success"])
            k += 1
        for gi, b in enumerate(gs):
            if np.all(succ[b] == -1):
                succ[b] = result[gi * nv : (gi + 1) * nv]
        log(f"direction: branches {b0 + 1}-{b0 + len(gs)}/{branches} done")
    for env in envs:
        env.close()
    ok = np.isfinite(succ).all(1)
    succ, dq = succ[ok], dq[ok]
    out = {
        "task": task,
        "branch_states": int(ok.sum()),
        "branch_states_lost": int((~ok).sum()),
        "variants": [v for v, _ in variants],
        "success": {v: float(succ[:, i].mean()) for i, (v, _) in enumerate(variants)},
        "predicted_dq_mean": {v: float(dq[:, i].mean()) for i, (v, _) in enumerate(variants)},
        "grad_rms_raw_units_mean": float(np.nanmean(gnorm)),
        "prefix_state_mismatch_max": mismatch,
        "per_branch_success": succ.tolist(),  # [branch, variant], for pooling runs with other seeds
        "paired": {},
    }
    for st in steps:
        p, m = succ[:, variants.index((f"+{st}", st))], succ[:, variants.index((f"-{st}", -st))]
        base = succ[:, 0]
        out["paired"][str(st)] = {
            "plus_minus_policy": [float(p.mean()), float(m.mean()), float(base.mean())],
            "plus_better_than_minus": int((p > m).sum()),
            "minus_better_than_plus": int((m > p).sum()),
            "plus_vs_policy_wins_losses": [int((p > base).sum()), int((p < base).sum())],
            "minus_vs_policy_wins_losses": [int((m > base).sum()), int((m < base).sum())],
        }
    return out


# ---- 3. movement ----------------------------------------------------------------------------
def movement(run: str | Path, states: dict, seed: int) -> dict:
    s = load(run)
    c = Critic(s)
    n = len(states["joint_pos"])
    noise = np.random.default_rng(seed).standard_normal((n, c.h, len(c.arm))).astype(np.float32)

    def chunks(params) -> np.ndarray:
        """The chunks of `params`' flow at every state, from the same noise, 128 states at a time."""
        return np.concatenate(
            [
                c.sample(
                    params,
                    states["images"][i : i + 128],
                    states["joint_pos"][i : i + 128],
                    states["task_id"][i : i + 128],
                    noise[i : i + 128],
                )
                for i in range(0, n, 128)
            ]
        )

    a_pol, a_ref = chunks(s.state.policy), chunks(s.state.ref_policy)
    d = np.abs(a_pol - a_ref)[..., c.arm]
    q_pol, g = c.q_grad(states["images"], states["joint_pos"], states["task_id"], a_pol)
    q_ref, _ = c.q_grad(states["images"], states["joint_pos"], states["task_id"], a_ref)
    q_data, _ = c.q_grad(states["images"], states["joint_pos"], states["task_id"], states["actions"])
    unit = {"q_std": float(np.std(q_data)) + 1e-4, "grad_rms": float(np.sqrt(np.mean(g**2))) + 1e-8}
    lam = s.cfg.qam.lam * unit.get(s.cfg.qam.lam_scale, 1.0)
    metrics = Path(run) / "metrics.jsonl"
    logged = {}
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            try:
                m = json.loads(line)
            except json.JSONDecodeError:
                continue
            for k in ("adjoint_norm", "lam_effective", "policy_loss", "step"):
                if k in m and "adjoint_norm" in m:
                    logged[k] = m[k]
    return {
        "run": str(run),
        "phase": s.phase,
        "lam": s.cfg.qam.lam,
        "lam_scale": s.cfg.qam.lam_scale,
        "lam_effective_heldout": lam,
        "states": n,
        "mean_abs_da_rad": float(d.mean()),
        "rms_da_rad": float(np.sqrt((d**2).mean())),
        "max_abs_da_rad": float(d.max()),
        "mean_abs_dq_da_norm_units": float(np.abs(g).mean()),
        "adjoint_mean_abs": float(np.abs(g).mean() / lam),
        "q_policy_minus_q_ref_mean": float((q_pol - q_ref).mean()),
        "q_data_mean_std": [float(q_data.mean()), float(q_data.std())],
        "logged_last": logged,
    }


def heldout_states(arrays, n: int, rng: np.random.Generator, h: int) -> dict:
    pool = [(i, t) for i, e in enumerate(arrays) for t in range(len(e.actions))]
    pick = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    out = {"images": [], "joint_pos": [], "task_id": [], "actions": []}
    for p in pick:
        i, t = pool[p]
        e = arrays[i]
        out["images"].append(e.images[t])
        out["joint_pos"].append(e.joint_pos[t])
        out["task_id"].append(e.task_id)
        out["actions"].append(chunk_at(e, np.array([t]), h)[0])
    return {
        "images": np.stack(out["images"]),
        "joint_pos": np.stack(out["joint_pos"]).astype(np.float32),
        "task_id": np.array(out["task_id"], np.int32),
        "actions": np.stack(out["actions"]).astype(np.float32),
    }


# ---- report ---------------------------------------------------------------------------------
def f(x, p: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return f"{x:.{p}f}" if abs(x) >= 10 ** (-p) or x == 0 else f"{x:.1e}"


def print_tables(r: dict) -> None:
    if "ranking" in r:
        rk = r["ranking"]
        print("\n== 1. ranking (held-out store) ==")
        print(f"{'episodes':26s} {'AUC Q':>7s} {'AUC V':>7s}  {'Q by quarter':>27s}  {'V by quarter':>27s}")
        for name in ("rollouts", "all_kinds"):
            x = rk[name]
            qq = " ".join(f(v, 2) for v in x["auc_q_by_quarter"])
            vq = " ".join(f(v, 2) for v in x["auc_v_by_quarter"])
            print(f"{name:26s} {f(x['auc_q']):>7s} {f(x['auc_v']):>7s}  {qq:>27s}  {vq:>27s}")
        print(f"\n{'group':40s} {'states':>7s} {'mean Q':>7s} {'Q>0.95':>7s} {'mean V':>7s}")
        for k, x in rk["q_by_group"].items():
            print(
                f"{k:40s} {x['states']:7d} {f(x['q_mean']):>7s} {f(x['q_frac_above_0.95']):>7s} {f(x['v_mean']):>7s}"
            )
        print(f"\n{'success chunk vs':40s} {'pairs':>6s} {'correct':>8s} {'mean gap':>9s} {'|gap| med':>9s}")
        for k, x in rk["pairs"].items():
            print(
                f"{k:40s} {x['pairs']:6d} {f(x['frac_success_chunk_preferred']):>8s} "
                f"{f(x['mean_q_gap'], 4):>9s} {f(x['median_abs_q_gap'], 4):>9s}"
            )
    if "direction" in r:
        d = r["direction"]
        print(f"\n== 2. direction ({d['branch_states']} branch states, whole-chunk execution) ==")
        print(f"{'variant':10s} {'success':>8s} {'critic dQ':>10s}")
        for v in d["variants"]:
            print(f"{v:10s} {f(d['success'][v], 3):>8s} {f(d['predicted_dq_mean'][v], 4):>10s}")
        for st, x in d["paired"].items():
            print(
                f"step {st} rad RMS: +grad better than -grad in {x['plus_better_than_minus']} branches, "
                f"worse in {x['minus_better_than_plus']}; +grad vs policy {x['plus_vs_policy_wins_losses']}, "
                f"-grad vs policy {x['minus_vs_policy_wins_losses']} (wins, losses)"
            )
    if "movement" in r:
        print("\n== 3. movement (held-out states; policy vs its QAM reference, same noise) ==")
        print(
            f"{'run':28s} {'lam':>6s} {'scale':>8s} {'lam_eff':>8s} {'mean|da|':>9s} {'max|da|':>8s} "
            f"{'|dQ/da|':>9s} {'adjoint':>9s} {'logged adj':>10s} {'Qpol-Qref':>10s}"
        )
        for x in r["movement"]:
            print(
                f"{Path(x['run']).name:28s} {x['lam']:6g} {x['lam_scale']:>8s} {f(x['lam_effective_heldout']):>8s} "
                f"{f(x['mean_abs_da_rad'], 4):>9s} {f(x['max_abs_da_rad'], 3):>8s} "
                f"{f(x['mean_abs_dq_da_norm_units'], 4):>9s} {f(x['adjoint_mean_abs'], 4):>9s} "
                f"{f(x['logged_last'].get('adjoint_norm'), 4):>10s} {f(x['q_policy_minus_q_ref_mean'], 4):>10s}"
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--run", required=True, help="lwd run directory (or its checkpoints/) for ranking and direction"
    )
    ap.add_argument(
        "--store", required=True, type=Path, help="held-out episode store (not the run's training data)"
    )
    ap.add_argument(
        "--movement", nargs="*", default=None, help="runs for the movement table (default: --run)"
    )
    ap.add_argument("--parts", nargs="+", default=["ranking", "direction", "movement"])
    ap.add_argument("--max-episodes", type=int, default=200)
    ap.add_argument(
        "--stride", type=int, default=3, help="every Nth step of each episode is scored (ranking)"
    )
    ap.add_argument(
        "--pair-stride", type=int, default=10, help="every Nth step of a successful episode is a pair state"
    )
    ap.add_argument(
        "--sigmas", type=float, nargs="+", default=[0.05, 0.1], help="perturbations (rad) of the pairs"
    )
    ap.add_argument("--task", default="can_to_bin")
    ap.add_argument("--branches", type=int, default=48)
    ap.add_argument(
        "--branch-steps", type=float, nargs="+", default=[0.02, 0.05], help="gradient steps, rad RMS"
    )
    ap.add_argument(
        "--branch-seed", type=int, default=50_000, help="env seeds branch-seed + i (not training's)"
    )
    ap.add_argument("--group", type=int, default=8, help="branch states simulated at once")
    ap.add_argument("--movement-states", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write every number here")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    out: dict = {
        "run": args.run,
        "store": str(args.store),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    log(f"restoring {args.run}")
    s = load(args.run)
    c = Critic(s)
    arrays = None
    if "ranking" in args.parts or "movement" in args.parts:
        episodes = StoreReader(args.store).poll()[: args.max_episodes]
        arrays = decode_episodes(episodes, s.vocab, s.cfg)
        log(f"held-out store: {len(arrays)} episodes, {sum(e.success for e in arrays)} successful")
    if "ranking" in args.parts:
        out["ranking"] = ranking(c, arrays, rng, args.stride, args.pair_stride, args.sigmas)
        print_tables({"ranking": out["ranking"]})
    if "direction" in args.parts:
        out["direction"] = direction(
            c, args.task, args.branches, args.branch_steps, args.branch_seed, args.group
        )
        print_tables({"direction": out["direction"]})
    if "movement" in args.parts:
        states = heldout_states(arrays, args.movement_states, np.random.default_rng(args.seed + 1), c.h)
        out["movement"] = []
        for run in args.movement if args.movement is not None else [args.run]:
            log(f"movement: {run}")
            out["movement"].append(movement(run, states, args.seed))
        print_tables({"movement": out["movement"]})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, default=float))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
