"""Where the CPU of a `fleet_stream.py` run goes, read from /proc (no profiler needed).

For each process of the run (robot workers, bridge, the benchmark's learner side) and
each of its threads, grouped by job: CPU seconds on a core and seconds spent runnable
but waiting for a core (`/proc/<pid>/task/<tid>/schedstat`: the kernel's run-queue
delay, i.e. CPU starvation), plus the whole machine's busy, iowait and steal time
(`/proc/stat`), so the share of other people's jobs on the same cores shows too.
A thread is sampled every `every` seconds while it lives; what threads that exited
between two samples used shows up in the process total (`/proc/<pid>/stat` or
`os.times()`), as "other". Sampling costs a few /proc reads per second.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _after_comm(text: str) -> tuple[str, list[str]]:
    """(comm, the fields after it) of a /proc stat line (comm may hold spaces and parentheses)."""
    open_, close = text.index("("), text.rindex(")")
    return text[open_ + 1 : close], text[close + 2 :].split()


def process_cpu(pid: int) -> float:
    """utime + stime of the whole process (every thread, live or exited), seconds."""
    _, f = _after_comm(Path(f"/proc/{pid}/stat").read_text())
    return (int(f[11]) + int(f[12])) / CLK_TCK


def task_times(pid: int) -> dict[int, tuple[str, float, float]]:
    """tid -> (comm, seconds on a CPU, seconds runnable but waiting for one), for the live threads."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            run_ns, wait_ns, _ = (task / "schedstat").read_text().split()
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue  # the thread ended meanwhile
        out[int(task.name)] = (comm, int(run_ns) / 1e9, int(wait_ns) / 1e9)
    return out


def machine_times() -> dict[str, float]:
    """Seconds summed over all CPUs since boot: busy (user+nice+system+irq+softirq), iowait, steal, total."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    with open("/proc/stat") as f:
        v = dict(zip(names, (int(x) / CLK_TCK for x in f.readline().split()[1:9]), strict=True))
    busy = v["user"] + v["nice"] + v["system"] + v["irq"] + v["softirq"]
    return {"busy": busy, "iowait": v["iowait"], "steal": v["steal"], "total": sum(v.values())}


@dataclass
class Usage:
    """CPU seconds per part of one process over a window; `wait_s`: runnable but not running."""

    wall_s: float
    total_s: float  # the process, every thread
    cpu_s: dict[str, float] = field(default_factory=dict)
    wait_s: dict[str, float] = field(default_factory=dict)

    def as_tuple(self) -> tuple:
        return (self.wall_s, self.total_s, self.cpu_s, self.wait_s)

    @classmethod
    def from_tuple(cls, t: tuple) -> Usage:
        return cls(*t)


class ThreadSampler:
    """Per-thread CPU of process `pid` from `start_at` (wall clock) until `stop()`, grouped by `classify`.

    `classify(tid, comm)` names a thread's part; with `in_process`, `names()` (the Python
    threads' native ids -> names) is refreshed at every sample for it to use."""

    def __init__(
        self,
        pid: int,
        classify: Callable[[int, str, dict[int, str]], str],
        start_at: float,
        every: float = 0.5,
        in_process: bool = False,
    ):
        self.pid, self.classify, self.start_at, self.every = pid, classify, start_at, every
        self.in_process = in_process
        self._base: dict[int, tuple[float, float]] = {}
        self._last: dict[int, tuple[str, float, float]] = {}  # tid -> (part, cpu, wait) since start
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._t0 = self._cpu0 = 0.0
        self._thread = threading.Thread(target=self._run, name="stream-profile", daemon=True)
        self._thread.start()

    def _process_cpu(self) -> float:
        if self.in_process:
            t = os.times()
            return t.user + t.system
        return process_cpu(self.pid)

    def _sample(self) -> None:
        if self.in_process:
            self._names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        for tid, (comm, run, wait) in task_times(self.pid).items():
            base_run, base_wait = self._base.setdefault(tid, (0.0, 0.0))  # born after start: all of it counts
            part = self.classify(tid, comm, self._names)
            self._last[tid] = (part, run - base_run, wait - base_wait)

    def _run(self) -> None:
        if self._stop.wait(max(0.0, self.start_at - time.time())):
            return
        try:
            self._t0, self._cpu0 = time.monotonic(), self._process_cpu()
            self._base = {tid: (run, wait) for tid, (_, run, wait) in task_times(self.pid).items()}
            while not self._stop.wait(self.every):
                self._sample()
        except (FileNotFoundError, ProcessLookupError):
            pass  # the process ended

    def stop(self) -> Usage:
        self._stop.set()
        self._thread.join()
        try:
            self._sample()
            total = self._process_cpu() - self._cpu0
        except (FileNotFoundError, ProcessLookupError):
            total = float("nan")
        usage = Usage(time.monotonic() - self._t0, total)
        for part, run, wait in self._last.values():
            usage.cpu_s[part] = usage.cpu_s.get(part, 0.0) + run
            usage.wait_s[part] = usage.wait_s.get(part, 0.0) + wait
        rest = total - sum(usage.cpu_s.values())
        if rest > 0.05:
            usage.cpu_s["other"] = usage.cpu_s.get("other", 0.0) + rest
        return usage


def _zmq(comm: str) -> bool:
    return comm.startswith("ZMQbg")


def producer_part(tid: int, comm: str, names: dict[int, str]) -> str:
    """A robot worker's threads: the robots' 30 Hz loops, their episode streams, policy fetchers, libzmq."""
    name = names.get(tid, "")
    if _zmq(comm):
        return "zmq I/O threads (libzmq, C)"
    if "robot_loop" in name:
        return "robot loops (StepRecord, add_step, end, 30 Hz pacing)"
    if name.startswith("episode-stream-"):
        return "episode streams (chunk msgpack, spool write+fsync+read, send, end hash)"
    if name.startswith("policy-fetch-"):
        return "policy fetchers (2 MB downloads, sha256, cache write)"
    return "other"


def bridge_part(pid: int) -> Callable[[int, str, dict[int, str]], str]:
    def part(tid: int, comm: str, names: dict[int, str]) -> str:
        if tid == pid:
            return "frame loop (decode, assembly, commit, replies, status.json)"
        if _zmq(comm):
            return "zmq I/O thread (libzmq, C)"
        return "episode writers (+ --queue threads): assemble, encode, sha256, fsync"

    return part


def learner_part(tid: int, comm: str, names: dict[int, str]) -> str:
    name = names.get(tid, "")
    if name == "learner":
        return "learner thread (store.changes_since every 10 ms)"
    if name == "publisher":
        return "policy publisher (2 MB every 7 s)"
    return "other"


def merge(usages: list[Usage]) -> Usage:
    out = Usage(max((u.wall_s for u in usages), default=0.0), sum(u.total_s for u in usages))
    for u in usages:
        for part, v in u.cpu_s.items():
            out.cpu_s[part] = out.cpu_s.get(part, 0.0) + v
        for part, v in u.wait_s.items():
            out.wait_s[part] = out.wait_s.get(part, 0.0) + v
    return out


def table(
    groups: list[tuple[str, Usage]], machine: dict[str, float], wall_s: float, cores: int, load: str
) -> str:
    """The CPU table: per group and part, CPU seconds, cores used on average, share of the machine,
    and seconds runnable but waiting for a CPU; then the machine's totals."""
    cap = cores * wall_s
    lines = [
        f"# CPU over {wall_s:.1f} s of streaming + drain; {cores} cores = {cap:.0f} core-s; {load}",
        f"#   {'part':<78}{'CPU s':>8}{'cores':>7}{'of all':>8}{'waited for CPU s':>18}",
    ]

    def row(label: str, cpu: float, wait: float | None, indent: int) -> None:
        w = "" if wait is None else f"{wait:>18.1f}"
        lines.append(
            f"#   {' ' * indent + label:<78}{cpu:>8.1f}{cpu / wall_s:>7.2f}{100 * cpu / cap:>7.0f}%{w}"
        )

    ours = 0.0
    for title, u in groups:
        ours += u.total_s
        row(title, u.total_s, sum(u.wait_s.values()), 0)
        for part in sorted(u.cpu_s, key=lambda p: -u.cpu_s[p]):
            row(part, u.cpu_s[part], u.wait_s.get(part), 2)
    row("this benchmark, all processes", ours, None, 0)
    row("machine busy (/proc/stat: every process and the kernel)", machine["busy"], None, 0)
    row(
        "  of which not this benchmark (other jobs, kernel; s3-queue: S3, NATS, coordinator)",
        machine["busy"] - ours,
        None,
        0,
    )
    row("machine iowait (idle, a task waiting on the disk)", machine["iowait"], None, 0)
    row("machine steal (hypervisor)", machine["steal"], None, 0)
    return "\n".join(lines)
