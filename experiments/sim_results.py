"""The simulated analogue of the paper's Tables I-III, reproducible from one command.

    python experiments/sim_results.py --out docs/results [--seeds 0 1 2] [--tasks can_to_bin] ...

Per seed: generate an offline buffer with the simulator (Table IV composition),
train behaviour cloning with the value model learning alongside (its policy is
SFT, the reference policy), continue the same checkpoint offline with DIVL + QAM
(LWD offline), with the two ablations (scalar expectile value instead of DIVL;
constant tau instead of adaptive tau) and with RECAP (advantage-conditioned BC),
then run three online phases with the same learner-step budget: LWD online (from
LWD offline), HG-DAgger (from SFT) and RECAP (from RECAP offline). In each, the
online learner and a simulated fleet with operator interventions
(experiments/online_collector.py) run side by side, the fleet loading each newly
published policy at its next episode boundary. Every final policy is exported to
ONNX and evaluated on held-out seeds of the simulator, its chunks executed as the robot's actor
executes them (`--execution actor`, default, with `--delay-ticks`) or whole (`--execution
whole-chunks`, `--execute-steps` rows each, no delay: a diagnostic); the report names which.
Results are success rate (and sub-task score) per task with 95% confidence
intervals over seeds, plus cycle time (failures clipped at the time limit).

Everything runs through the project's real entry points (lwd_sim generator,
lwd_learner CLI, ONNX Runtime policies); `--work` keeps intermediate runs so an
interrupted experiment resumes where it stopped. `--online-methods` runs and reports only some
online phases: docs/results/online4000 ran two of them 4x longer on another `--work` whose
offline stages are symlinks to the first run's.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lwd_common.policy_store import PolicyStore
from lwd_common.store import EpisodeStore
from lwd_sim.env import DEFAULT_DELAY_TICKS, EXECUTION_ACTOR, execution_label
from lwd_sim.evaluate_policy import add_execution_args, evaluate_policy
from lwd_sim.tasks import get_task

HERE = Path(__file__).resolve().parent
PY = sys.executable
# Student t quantiles (two-sided 95%) for n - 1 degrees of freedom.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}

METHODS = {  # name -> extra args of `lwd_learner.cli offline` on top of the shared BC checkpoint
    "LWD offline (DIVL + QAM)": ["--train.method", "lwd"],
    "Expectile value (IQL) + QAM": ["--train.method", "lwd", "--divl.value-kind", "expectile"],
    "Constant tau + QAM": ["--train.method", "lwd", "--divl.no-adaptive-tau", "--divl.constant-tau", "0.52"],
    "RECAP offline (advantage-conditioned BC)": ["--train.method", "recap"],
}
# name -> (the offline run it starts from: "sft" or a METHODS index, the learner's method, extra args)
ONLINE = {
    "LWD online (fleet + interventions)": (0, "lwd", []),
    "HG-DAgger (fleet + interventions)": ("sft", "hg_dagger", []),
    "RECAP online (fleet + interventions)": (3, "recap", []),
    # The reference keeps cloning HG-DAgger's selection (docs/learner.md, "Reference"):
    "LWD online, BC-trained reference": (
        0,
        "lwd",
        ["--qam.reference", "bc_ema", "--train.bc-data", "hg_dagger"],
    ),
}


@dataclass(frozen=True)
class Scale:
    episodes: int
    bc_steps: int
    rl_steps: int
    online_steps: int
    eval_episodes: int
    batch_size: int
    image_size: int
    execute_steps: int
    online_robots: int
    time_limits: tuple[tuple[str, float], ...] = ()  # (task, seconds) overriding the task's own limit
    learner_set: tuple[str, ...] = ()  # `--set` config overrides passed to every learner run
    execution: str = EXECUTION_ACTOR  # held-out evaluation: lwd_sim.env.EXECUTIONS
    delay_ticks: int = DEFAULT_DELAY_TICKS  # actor execution: ticks each chunk arrives late

    def time_limit(self, task: str) -> float | None:
        return dict(self.time_limits).get(task)


def log(msg: str) -> None:
    print(f"[results {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(argv: list[str], log_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as f:
        rc = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        raise SystemExit(f"command failed (exit {rc}), see {log_file}: {' '.join(argv)}")


def learner_args(scale: Scale, seed: int) -> list[str]:
    return [
        "--train.batch-size",
        str(scale.batch_size),
        "--model.encoder.image-size",
        str(scale.image_size),
        str(scale.image_size),
        "--train.seed",
        str(seed),
        "--no-progress",
        *[a for kv in scale.learner_set for a in ("--set", kv)],
    ]


def online_tag(j: int) -> str:
    """The run directory name of ONLINE's j-th phase under a seed's work directory."""
    return "online" if j == 0 else f"online{j}"


def stage_policies(work: Path, seed: int, online: Sequence[str] = tuple(ONLINE)) -> dict[str, Path]:
    """Method name -> where train_seed leaves that method's final policy for this seed (of the online
    phases, those named in `online`)."""
    w = work / f"seed{seed}"
    out = {"SFT (BC reference)": w / "sft" / "policy.onnx"}
    out |= {name: w / f"offline{i}" / "policy.onnx" for i, name in enumerate(METHODS)}
    out |= {name: w / f"{online_tag(j)}_policy.onnx" for j, name in enumerate(ONLINE) if name in online}
    return out


def train_seed(
    seed: int, tasks: list[str], scale: Scale, work: Path, online: Sequence[str] = tuple(ONLINE)
) -> dict[str, Path]:
    """All offline policies of one seed and the online phases named in `online`; returns method
    name -> policy.onnx."""
    w = work / f"seed{seed}"
    store = w / "offline_store"
    if EpisodeStore(store).latest_snapshot() is None:
        log(f"seed {seed}: generating {scale.episodes} offline episodes")
        run(
            [
                PY,
                "-m",
                "lwd_sim.generate_offline",
                "--out",
                str(store),
                "--episodes",
                str(scale.episodes),
                "--tasks",
                *tasks,
                "--seed",
                str(seed),
                "--image-size",
                str(scale.image_size),
                "--no-progress",
            ],
            w / "logs" / "generate.log",
        )
    sft = w / "sft"
    if not (sft / "policy.onnx").exists():
        # BC with the value model learning alongside (method lwd, no RL steps): the policy is plain BC,
        # and every RL continuation starts from a critic trained on the same data, not from scratch.
        log(f"seed {seed}: SFT (behaviour cloning, {scale.bc_steps} steps; the critic learns alongside)")
        run(
            [
                PY,
                "-m",
                "lwd_learner.cli",
                "offline",
                "--store",
                str(store),
                "--out",
                str(sft),
                "--train.method",
                "lwd",
                "--train.bc-steps",
                str(scale.bc_steps),
                "--train.rl-steps",
                "0",
                *learner_args(scale, seed),
            ],
            w / "logs" / "sft.log",
        )
    for i, (name, extra) in enumerate(METHODS.items()):
        out = w / f"offline{i}"
        if not (out / "policy.onnx").exists():
            log(f"seed {seed}: {name} ({scale.rl_steps} RL steps from the SFT checkpoint)")
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(sft / "checkpoints", out / "checkpoints")  # the frozen reference = the SFT policy
            run(
                [
                    PY,
                    "-m",
                    "lwd_learner.cli",
                    "offline",
                    "--store",
                    str(store),
                    "--out",
                    str(out),
                    "--train.bc-steps",
                    str(scale.bc_steps),
                    "--train.rl-steps",
                    str(scale.rl_steps),
                    *extra,
                    *learner_args(scale, seed),
                ],
                w / "logs" / f"offline{i}.log",
            )
    for j, (name, (start, method, extra)) in enumerate(ONLINE.items()):
        if name in online:
            start_run = sft if start == "sft" else w / f"offline{start}"
            run_online(seed, tasks, scale, w, start_run, method, online_tag(j), extra)
    return stage_policies(work, seed, online)


def run_online(
    seed: int,
    tasks: list[str],
    scale: Scale,
    w: Path,
    offline_run: Path,
    method: str,
    tag: str,
    extra: list[str],
) -> Path:
    """Online learner (`method`, from `offline_run`) and a simulated fleet side by side; returns the
    last published policy."""
    final = w / f"{tag}_policy.onnx"
    if final.exists():
        return final
    bridge = w / f"{tag}_bridge"
    shutil.rmtree(bridge, ignore_errors=True)
    shutil.rmtree(w / tag, ignore_errors=True)
    (w / f"{tag}_episodes.jsonl").unlink(missing_ok=True)  # the collectors append: a rerun starts a new log
    policies = PolicyStore(bridge / "policies")
    policies.publish((offline_run / "policy.onnx").read_bytes(), 0, {"source": str(offline_run)})
    robot_tasks = [tasks[k % len(tasks)] for k in range(scale.online_robots)]
    log(
        f"seed {seed}: {tag}: {method} online {' '.join(extra)} ({scale.online_steps} learner steps, "
        f"{len(robot_tasks)}-robot simulated fleet)"
    )
    (w / "logs").mkdir(parents=True, exist_ok=True)
    learner_log = (w / "logs" / f"{tag}.log").open("ab")
    learner = subprocess.Popen(
        [
            PY,
            "-m",
            "lwd_learner.cli",
            "online",
            "--bridge-root",
            str(bridge),
            "--init",
            str(offline_run),
            "--out",
            str(w / tag),
            "--max-new-steps",
            str(scale.online_steps),
            "--train.publish-every",
            "50",
            "--train.method",
            method,
            "--train.recap-relabel-every",
            "100",
            *extra,
            *learner_args(scale, seed),
        ],
        stdout=learner_log,
        stderr=subprocess.STDOUT,
    )
    robots = [
        subprocess.Popen(
            [
                PY,
                str(HERE / "online_collector.py"),
                "--bridge-root",
                str(bridge),
                "--task",
                task,
                "--robot-id",
                f"sim{k}",
                "--seed",
                str(1000 * seed + k),
                "--execute-steps",
                str(scale.execute_steps),
                "--log",
                str(w / f"{tag}_episodes.jsonl"),
                *(["--time-limit-s", str(scale.time_limit(task))] if scale.time_limit(task) else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(w / "logs" / f"collector{k}.log").open("ab"),
        )
        for k, task in enumerate(robot_tasks)
    ]
    # The robots run at normal priority: at nice 19 beside three learners on the frozen encoder
    # they finished 1-2 episodes per 500-step phase, so the online data never reached the learner.
    try:
        rc = learner.wait()
    finally:
        for r in robots:
            r.send_signal(signal.SIGTERM)
        for r in robots:
            r.wait(timeout=60)
        learner_log.close()
    if rc != 0:
        raise SystemExit(f"online learner failed (exit {rc}), see {w / 'logs' / 'online.log'}")
    latest = policies.latest()
    episodes_log = w / f"{tag}_episodes.jsonl"
    n = len(episodes_log.read_text().splitlines()) if episodes_log.exists() else 0
    log(f"seed {seed}: {tag}: {method} online ends on policy {latest.version} after {n} fleet episodes")
    shutil.copyfile(policies.path_of(latest.version), final)
    return final


def evaluate(policy: Path, tasks: list[str], scale: Scale) -> dict[str, dict]:
    """Success, sub-task score and cycle time per task at the table's evaluation budget."""
    return {
        t: evaluate_task(
            policy,
            t,
            scale.eval_episodes,
            scale.execute_steps,
            scale.time_limit(t),
            scale.execution,
            scale.delay_ticks,
        )
        for t in tasks
    }


def execution_tag(execution: str, execute_steps: int, delay_ticks: int) -> str:
    """How chunks are executed, in a file name: `actor-d0` or (whole chunks) `30rows`."""
    return f"actor-d{delay_ticks}" if execution == EXECUTION_ACTOR else f"{execute_steps}rows"


def evaluate_task(
    policy: Path,
    task: str,
    episodes: int,
    execute_steps: int,
    time_limit_s: float | None = None,
    execution: str = EXECUTION_ACTOR,
    delay_ticks: int = DEFAULT_DELAY_TICKS,
) -> dict:
    """One task's held-out evaluation (evaluation seed 12345), cached next to the policy per task,
    budget and execution, so resumed runs and re-evaluations at another budget (paired_eval.py)
    reuse it. `execute_steps` counts in whole-chunk execution only, `delay_ticks` in actor execution."""
    tag = execution_tag(execution, execute_steps, delay_ticks)
    cache = policy.with_name(f"{policy.stem}.eval-{task}-{episodes}ep-{tag}.json")
    key: dict = {
        "episodes": episodes,
        "execute_steps": execute_steps,
        "time_limit_s": time_limit_s,
        "policy_mtime": policy.stat().st_mtime,
    }
    if execution == EXECUTION_ACTOR:  # whole-chunk caches keep the key they had before executions
        key.update(execution=execution, delay_ticks=delay_ticks)
    if cache.exists() and json.loads(cache.read_text()).get("key") == key:
        # caches written before executions were named are whole-chunk ones: name it
        return {
            "execution": execution_label(execution, execute_steps, delay_ticks),
            **json.loads(cache.read_text())["result"],
        }
    r = evaluate_policy(
        str(policy),
        task,
        episodes,
        num_envs=4,
        execute_steps=execute_steps,
        seed=12345,
        time_limit_s=time_limit_s,
        execution=execution,
        delay_ticks=delay_ticks,
    )
    result = {
        "success": r.success_rate,
        "score": r.mean_score,
        "cycle_s": r.mean_cycle_time_s,
        "episodes": r.episodes,
        "execution": r.label,
        "dry_ticks": r.dry_ticks,
    }
    cache.write_text(json.dumps({"key": key, "result": result}))
    return result


def scale_execution_label(scale: Scale) -> str:
    """How the held-out evaluation executes chunks (the online fleet executes `execute_steps` rows)."""
    if scale.execution == EXECUTION_ACTOR:
        return f"evaluation in actor execution (the actor's scheduler, chunks {scale.delay_ticks} ticks late)"
    return f"evaluation in whole chunks ({scale.execute_steps} of 30 rows, no delay)"


def mean_ci(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(T95.get(len(v) - 1, 1.96) * v.std(ddof=1) / np.sqrt(len(v)))


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a binomial rate (k successes in n episodes)."""
    z, p = 1.96, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def write_report(
    results: dict, tasks: list[str], scale: Scale, out: Path, argv: list[str], elapsed_s: float, work: Path
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    methods = list(next(iter(results.values())).keys())
    seeds = sorted(results)
    lines = [
        "# Simulated results (analogue of the paper's Tables I-III)",
        "",
        f"Generated by `{shlex.join(['python', 'experiments/sim_results.py', *argv])}`; this invocation took "
        f"{elapsed_s / 60:.0f} min on a 2-core CPU machine (stages already in `--work` are reused, not rerun); "
        f"seeds {seeds}; "
        f"{scale.eval_episodes} evaluation episodes per task, policy and seed (held-out simulator seeds).",
        "",
        f"Scale: {scale.episodes} offline episodes per seed, BC {scale.bc_steps} steps, offline RL "
        f"{scale.rl_steps} steps, online {scale.online_steps} learner steps with a simulated fleet of "
        f"{scale.online_robots} robot(s) and operator interventions, batch {scale.batch_size}, images "
        f"{scale.image_size}x{scale.image_size}, held-out {scale_execution_label(scale)}. Time limits: "
        + ", ".join(
            f"{t} {scale.time_limit(t) or get_task(t).time_limit_s:.0f} s"
            + (f" (the task's own: {get_task(t).time_limit_s:.0f} s)" if scale.time_limit(t) else "")
            for t in tasks
        )
        + ".",
        "",
        "Mean over seeds ± 95% confidence half-width (Student t).",
        "",
    ]
    header = (
        "| method | "
        + " | ".join(f"{t} success" for t in tasks)
        + " | average success | average sub-task score | "
        + " | ".join(f"{t} cycle time (s)" for t in tasks)
        + " |"
    )
    lines += [header, "|" + "---|" * (2 * len(tasks) + 3)]
    for m in methods:
        cells = []
        for t in tasks:
            mu, ci = mean_ci([results[s][m][t]["success"] for s in seeds])
            cells.append(f"{mu:.2f} ± {ci:.2f}")
        avg = mean_ci([np.mean([results[s][m][t]["success"] for t in tasks]) for s in seeds])
        score = mean_ci([np.mean([results[s][m][t]["score"] for t in tasks]) for s in seeds])
        cycles = [mean_ci([results[s][m][t]["cycle_s"] for s in seeds]) for t in tasks]
        lines.append(
            f"| {m} | " + " | ".join(cells) + f" | {avg[0]:.2f} ± {avg[1]:.2f} | "
            f"{score[0]:.2f} ± {score[1]:.2f} | "
            + " | ".join(f"{c[0]:.1f} ± {c[1]:.1f}" for c in cycles)
            + " |"
        )

    def online_stats(eps: list[dict]) -> str:
        return (
            f"{len(eps)} episodes, {np.mean([e['success'] for e in eps]):.2f} success with the operator's help, "
            f"{np.mean([e['interventions'] for e in eps]):.2f} interventions per episode, "
            f"{np.mean([e['teleop_steps'] / max(1, e['steps']) for e in eps]):.2f} of steps teleoperated"
        )

    for j, name in enumerate(ONLINE):
        logs = [work / f"seed{s}" / f"{online_tag(j)}_episodes.jsonl" for s in seeds]
        online_log = [json.loads(x) for f in logs if f.exists() for x in f.read_text().splitlines()]
        if name not in methods or not online_log:
            continue
        lines += ["", f"{name}, its online phase (all seeds): {online_stats(online_log)}."]
        if len(tasks) > 1:
            for t in tasks:
                mine = [e for e in online_log if e.get("task") == t]
                if mine:
                    lines.append(f"- {t}: {online_stats(mine)}.")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    _plot(results, tasks, seeds, methods, out)
    log(f"wrote {out / 'results.md'}")


def _plot(results: dict, tasks: list[str], seeds: list[int], methods: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(methods))
    width = 0.8 / len(tasks)
    for j, t in enumerate(tasks):
        stats = [mean_ci([results[s][m][t]["success"] for s in seeds]) for m in methods]
        ax.bar(
            x + j * width,
            [s[0] for s in stats],
            width,
            yerr=[0 if np.isnan(s[1]) else s[1] for s in stats],
            capsize=4,
            label=t,
        )
    ax.set_xticks(x + width * (len(tasks) - 1) / 2, [m.replace(" (", "\n(") for m in methods], fontsize=8)
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1.05)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "success_by_method.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    ap.add_argument("--work", type=Path, default=Path("runs/results"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tasks", nargs="+", default=["can_to_bin"])
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--bc-steps", type=int, default=2000)
    ap.add_argument("--rl-steps", type=int, default=500)
    ap.add_argument("--online-steps", type=int, default=500)
    ap.add_argument("--eval-episodes", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=64)
    add_execution_args(ap, execute_steps_default=15)
    ap.add_argument("--online-robots", type=int, default=0, help="default: one simulated robot per task")
    ap.add_argument(
        "--online-methods",
        nargs="+",
        choices=list(ONLINE),
        default=list(ONLINE),
        metavar="NAME",
        help="online phases to run and report (default: all): " + "; ".join(ONLINE),
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="learner config override passed to every learner run (e.g. model.encoder.pool=spatial)",
    )
    ap.add_argument(
        "--time-limit",
        action="append",
        default=[],
        metavar="TASK=SECONDS",
        help="override a task's episode time limit (evaluation and online episodes); repeatable",
    )
    args = ap.parse_args(argv)
    limits = []
    for item in args.time_limit:
        task, _, sec = item.partition("=")
        try:
            get_task(task)
            limits.append((task, float(sec)))
        except ValueError as e:
            ap.error(f"--time-limit {item!r}: {e}")
        if limits[-1][1] <= 0:
            ap.error(f"--time-limit {item!r}: seconds must be > 0")
    scale = Scale(
        args.episodes,
        args.bc_steps,
        args.rl_steps,
        args.online_steps,
        args.eval_episodes,
        args.batch_size,
        args.image_size,
        args.execute_steps,
        args.online_robots or len(args.tasks),
        tuple(limits),
        tuple(args.set),
        args.execution.replace("-", "_"),
        args.delay_ticks,
    )
    start = time.monotonic()
    results: dict[int, dict[str, dict]] = {}
    for seed in args.seeds:
        policies = train_seed(seed, args.tasks, scale, args.work, args.online_methods)
        results[seed] = {}
        for name, path in policies.items():
            results[seed][name] = evaluate(path, args.tasks, scale)
            log(
                f"seed {seed}: {name} ({scale_execution_label(scale)}): "
                + ", ".join(
                    f"{t} success {v['success']:.2f} score {v['score']:.2f}"
                    for t, v in results[seed][name].items()
                )
            )
    write_report(results, args.tasks, scale, args.out, argv, time.monotonic() - start, args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
