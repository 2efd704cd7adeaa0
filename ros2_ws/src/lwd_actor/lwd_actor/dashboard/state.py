"""What the dashboard shows, read from the run directory (ROS-free, no web framework).

One reader per record, the same ones the terminal tools use: episodes are summarised by the
bring-up's `FleetMonitor` (its `EpisodeSummary`s and policy-version bands), the bridge's
`status.json` is read through the monitor too, the policy panel reads the `PolicyStore` as
`policy_admin status` does, and the learner's scalars come from `<learner>/metrics.jsonl`, tailed
incrementally (the file grows for the whole run; it is not re-read every second).

`DashboardState.sections()` returns the page's state as named sections of JSON text with a digest
each, refreshed at most every `refresh_s`, so the event stream sends a section only when it changed.
Every string that came from a robot or a client (robot ids, tasks, versions of hand-built
policies, pin reasons) is passed through `lwd_common.text.printable`; the page additionally sets it
as text, never as markup.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lwd_actor.bringup.bootstrap import run_dir_layout
from lwd_actor.bringup.monitor import EpisodeSummary, FleetMonitor, _by_policy_version, _version_bands
from lwd_common.episode import ActionSource, Episode
from lwd_common.policy_store import PolicyStore, served_version
from lwd_common.store import EpisodeStore, check_episode_id
from lwd_common.text import printable
from lwd_description.robot import CONTROL_HZ

STALE_S = 10.0  # a robot (or the bridge's status file) silent this long is offline (status.fleet_health)
RECENT_EPISODES = 200  # episodes listed in the state; the store may hold many more
MAX_POINTS = 1000  # points per learner series sent to the page
VERSION_BARS = 12  # policy versions pooled into at most this many bands (as the monitor's plot)
Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of k successes in n trials (None for n = 0)."""
    if n <= 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _text(value: Any) -> str:
    return printable(str(value), keep="")


def _num(value: Any) -> float | None:
    """A finite float for JSON (NaN/inf and non-numbers become None)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def teleop_segments(source: np.ndarray) -> list[list[int]]:
    """[first, last] step of every run of teleoperated steps (the operator's takeovers)."""
    teleop = np.concatenate([[0], (np.asarray(source) == ActionSource.TELEOP).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(teleop))
    return [[int(a), int(b) - 1] for a, b in zip(edges[::2], edges[1::2], strict=True)]


class MetricsTail:
    """The learner's metrics.jsonl, read incrementally: complete new lines only, a step logged twice
    keeps its later line (a resumed run logs its steps again), unreadable lines are skipped, as
    `lwd_learner.training_plot.read_series` reads it."""

    SCALARS = ("q_mean", "tau_mean", "value_entropy")
    MAX_ROWS = 20000

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.inode: int | None = None
        self.rows: dict[int, dict[str, Any]] = {}

    def _keep(self, key: str) -> bool:
        return key.endswith("_loss") or key in self.SCALARS

    def poll(self) -> bool:
        """Read what was appended since the last call; True if anything new was read."""
        try:
            st = self.path.stat()
        except OSError:
            return False
        if st.st_ino != self.inode or st.st_size < self.offset:  # a new file, or truncated
            self.inode, self.offset, self.rows = st.st_ino, 0, {}
        if st.st_size == self.offset:
            return False
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read(st.st_size - self.offset)
        except OSError:
            return False
        end = data.rfind(b"\n")
        if end < 0:
            return False  # a line being written: read it when it is complete
        self.offset += end + 1
        for line in data[:end].splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                continue
            kept: dict[str, Any] = {k: v for k, v in row.items() if self._keep(k) and _num(v) is not None}
            kept["phase"] = _text(row.get("phase", ""))
            kept["time"] = _num(row.get("time"))
            self.rows[row["step"]] = kept
        if len(self.rows) > self.MAX_ROWS:  # a very long run: keep every other logged step
            self.rows = dict(sorted(self.rows.items())[::2])
        return True

    def summary(self) -> dict[str, Any]:
        if not self.rows:
            return {"step": None, "phase": None, "latest": {}, "series": {}}
        steps = sorted(self.rows)
        stride = max(1, -(-len(steps) // MAX_POINTS))
        picked = steps[::stride]
        if picked[-1] != steps[-1]:
            picked.append(steps[-1])
        keys = sorted({k for s in picked for k in self.rows[s] if k not in ("phase", "time")})
        series: dict[str, list[Any]] = {"step": picked}
        for k in keys:
            series[k] = [_num(self.rows[s].get(k)) for s in picked]
        last = self.rows[steps[-1]]
        return {
            "step": steps[-1],
            "phase": last.get("phase"),
            "time": last.get("time"),
            "latest": {k: _num(v) for k, v in last.items() if k not in ("phase", "time")},
            "series": series,
        }


@dataclass(frozen=True)
class Section:
    digest: str
    text: str  # the section's JSON


class DashboardState:
    """The dashboard's view of one run directory (thread-safe; the app calls it from worker threads)."""

    def __init__(
        self,
        run_dir: str | Path,
        bridge_root: str | Path | None = None,
        store: str | Path | None = None,
        learner_dir: str | Path | None = None,
        refresh_s: float = 1.0,
        stale_s: float = STALE_S,
    ):
        layout = run_dir_layout(run_dir)
        self.run_dir = layout.run_dir
        self.bridge_root = Path(bridge_root).resolve() if bridge_root else layout.bridge_root
        self.learner_dir = Path(learner_dir).resolve() if learner_dir else layout.online_learner
        self.store_location = str(store) if store else str(self.bridge_root / "store")
        self.refresh_s = refresh_s
        self.stale_s = stale_s
        self.monitor = FleetMonitor(self.bridge_root, self.learner_dir, (), store=self.store_location)
        self.metrics = MetricsTail(self.learner_dir / "metrics.jsonl")
        self.latency_history: deque[dict[str, Any]] = deque(maxlen=3600)
        self._lock = threading.Lock()
        self._sections: dict[str, Section] = {}
        self._refreshed = -math.inf
        self._episodes: OrderedDict[str, Episode] = OrderedDict()  # decoded episodes for replay (LRU)
        self._episode_store: EpisodeStore | None = None

    # --- the page's state ------------------------------------------------------------------------------

    def invalidate(self) -> None:
        """The next `sections()` re-reads everything (after a pin change made here)."""
        with self._lock:
            self._refreshed = -math.inf

    def sections(self) -> dict[str, Section]:
        with self._lock:
            now = time.monotonic()
            if now - self._refreshed >= self.refresh_s:
                self._refreshed = now
                self._sections = {name: _section(value) for name, value in self._build().items()}
            return dict(self._sections)

    def state(self) -> dict[str, Any]:
        return {name: json.loads(s.text) for name, s in self.sections().items()}

    def _build(self) -> dict[str, Any]:
        self.monitor.refresh()
        self.metrics.poll()
        now = time.time()
        eps = sorted(self.monitor.episodes.values(), key=lambda e: e.ended_at)
        status = self.monitor.bridge_status()
        if status and isinstance(status.get("time"), int | float):
            if not self.latency_history or self.latency_history[-1]["time"] != status["time"]:
                c, p = status.get("commit_latency_s") or {}, status.get("policy_latency_s") or {}
                self.latency_history.append(
                    {
                        "time": status["time"],
                        "commit_p50": _num(c.get("p50")),
                        "commit_p99": _num(c.get("p99")),
                        "policy_p50": _num(p.get("p50")),
                        "policy_p99": _num(p.get("p99")),
                    }
                )
        return {
            "fleet": self._fleet(now, status, eps),
            "policy": self._policy(eps),
            "learning": self._learning(eps),
            "episodes": self._episode_list(eps),
        }

    def _fleet(self, now: float, status: dict | None, eps: list[EpisodeSummary]) -> dict[str, Any]:
        bridge: dict[str, Any] | None = None
        robots_status: dict[str, Any] = {}
        if status:
            age = now - float(status.get("time") or 0.0)
            health = status.get("health") or {}
            robots_status = status.get("robots") or {}
            bridge = {
                "status_age_s": age,
                "up": age < self.stale_s,
                "health": _text(health.get("level", "ok")),
                "problems": [_text(p) for p in health.get("problems") or []],
                "started_at": _num(status.get("started_at")),
                "snapshot_version": status.get("snapshot_version"),
                "episodes_in_store": status.get("episodes_in_store"),
                "sessions": status.get("sessions"),
                "latest_policy": _text(status.get("latest_policy") or ""),
                "pinned_policy": _text(status.get("pinned_policy") or ""),
                "serving_policy": _text(status.get("serving_policy") or ""),
                "commit_latency_s": {k: _num(v) for k, v in (status.get("commit_latency_s") or {}).items()},
                "policy_latency_s": {k: _num(v) for k, v in (status.get("policy_latency_s") or {}).items()},
            }
        by_robot: dict[str, list[EpisodeSummary]] = {}
        for e in eps:
            by_robot.setdefault(e.robot_id, []).append(e)
        serving = (bridge or {}).get("serving_policy") or ""
        robots = []
        for rid in sorted(set(robots_status) | set(by_robot)):
            r = robots_status.get(rid) or {}
            mine = by_robot.get(rid, [])
            last_seen = _num(r.get("last_seen")) or 0.0
            silent = now - last_seen if last_seen else None
            if r and not r.get("policy_ok", True):
                mode = "fault"
            elif not r or not bridge or not bridge["up"] or silent is None or silent > self.stale_s:
                mode = "offline"
            elif r.get("open_episodes"):  # who drove its newest streamed step (the bridge's record)
                mode = {"policy": "autonomous", "operator": "operator", "hold": "hold"}.get(
                    r.get("acting") or "", "running"
                )
            else:
                mode = "idle"
            loaded = _text(r.get("policy_version") or "")
            robots.append(
                {
                    "id": _text(rid),
                    "mode": mode,
                    "task": _text(mine[-1].task) if mine else "",
                    "policy_version": loaded,
                    "policy_served_as": _text(r.get("policy_served_as") or ""),
                    "policy_ok": bool(r.get("policy_ok", True)),
                    "on_target": bool(serving) and loaded == serving,
                    "episodes": len(mine),
                    "episodes_committed": r.get("episodes_committed"),
                    "open_episodes": r.get("open_episodes", 0),
                    "spooled_episodes": r.get("spooled_episodes", 0),
                    "interventions": sum(e.interventions for e in mine),
                    "success_rate": float(np.mean([e.success for e in mine])) if mine else None,
                    "last_seen_age_s": silent,
                }
            )
        return {"server_time": now, "run_dir": _text(self.run_dir), "bridge": bridge, "robots": robots}

    def _policy(self, eps: list[EpisodeSummary]) -> dict[str, Any]:
        if not (self.bridge_root / "policies").is_dir():
            return {"available": False, "reason": f"no policy store in {_text(self.bridge_root)}"}
        try:  # what `policy_admin status` shows (its fleet_view; lwd_actor does not import the bridge)
            store = PolicyStore(self.bridge_root / "policies")
            infos = [store.get(v) for v in store.versions()]
            pin = store.pin_state()
            serving = store.serving()
            log = store.pin_log()[-20:]
        except (OSError, KeyError, ValueError) as exc:
            return {"available": False, "reason": _text(exc)}
        target = serving[0].version if serving else None
        by_version = _by_policy_version(eps)
        versions = []
        for info in reversed(infos):
            mine = by_version.get(info.version, [])
            versions.append(
                {
                    "version": info.version,
                    "training_step": info.training_step,
                    "created_at": info.created_at,
                    "episodes": len(mine),
                    "succeeded_alone": sum(e.succeeded_alone for e in mine),
                }
            )
        return {
            "available": True,
            "newest": infos[-1].version if infos else None,
            "pinned": pin.pinned,
            "serving": target,
            "serving_as": served_version(target, pin.epoch) if target else None,
            "pin": {k: _text(v) if isinstance(v, str) else v for k, v in pin.to_dict().items()}
            if pin.action
            else None,
            "versions": versions,
            "log": [
                {
                    "at": _num(entry.get("at")),
                    "action": _text(entry.get("action", "")),
                    "by": _text(entry.get("by", "")),
                    "why": _text(entry.get("why", "")),
                    "serving": _text(entry.get("serving") or ""),
                    "served_as": _text(entry.get("served_as") or ""),
                }
                for entry in reversed(log)
                if isinstance(entry, dict)
            ],
        }

    def _learning(self, eps: list[EpisodeSummary]) -> dict[str, Any]:
        bands = []
        for label, items in _version_bands(_by_policy_version(eps), max_bars=VERSION_BARS).items():
            n = len(items)
            k = sum(e.success for e in items)
            alone = sum(e.succeeded_alone for e in items)
            bands.append(
                {
                    "label": _text(label),
                    "n": n,
                    "success": k / n if n else None,
                    "success_ci": wilson(k, n),
                    "alone": alone / n if n else None,
                    "alone_ci": wilson(alone, n),
                    "interventions_per_episode": sum(e.interventions for e in items) / n if n else None,
                    "teleop_share": sum(e.intervention_steps for e in items)
                    / max(1, sum(e.steps for e in items)),
                }
            )
        n = len(eps)
        return {
            "episodes": n,
            "success": sum(e.success for e in eps) / n if n else None,
            "alone": sum(e.succeeded_alone for e in eps) / n if n else None,
            "interventions_per_episode": sum(e.interventions for e in eps) / n if n else None,
            "versions": bands,
            "learner": {"dir": _text(self.learner_dir), **self.metrics.summary()},
            "latency": list(self.latency_history)[-600:],
        }

    def _episode_list(self, eps: list[EpisodeSummary]) -> dict[str, Any]:
        recent = eps[-RECENT_EPISODES:][::-1]
        return {
            "total": len(eps),
            "store": _text(self.store_location),
            "recent": [
                {
                    "id": e.episode_id,
                    "robot": _text(e.robot_id),
                    "task": _text(e.task),
                    "version": _text(e.policy_versions[0]) if e.policy_versions else "teleop",
                    "success": e.success,
                    "alone": e.succeeded_alone,
                    "interventions": e.interventions,
                    "intervention_steps": e.intervention_steps,
                    "steps": e.steps,
                    "duration_s": e.steps / CONTROL_HZ,
                    "ended_at": e.ended_at,
                }
                for e in recent
            ],
        }

    # --- one episode, for the replay -------------------------------------------------------------------

    def episode(self, episode_id: str) -> Episode:
        """A committed episode (KeyError for ids the monitor has not seen in a snapshot)."""
        check_episode_id(episode_id)  # ValueError
        with self._lock:
            if episode_id not in self.monitor.episodes:
                self.monitor.refresh()  # committed since the last refresh?
            if episode_id not in self.monitor.episodes:
                raise KeyError(episode_id)
            ep = self._episodes.get(episode_id)
            if ep is not None:
                self._episodes.move_to_end(episode_id)
                return ep
            if self._episode_store is None:
                self._episode_store = EpisodeStore(self.store_location)
            store = self._episode_store
        ep = store.get(episode_id)  # outside the lock: may take a while (S3)
        with self._lock:
            self._episodes[episode_id] = ep
            while len(self._episodes) > 4:
                self._episodes.popitem(last=False)
        return ep

    def episode_detail(self, episode_id: str) -> dict[str, Any]:
        ep = self.episode(episode_id)
        stamps = np.asarray(ep.stamp, np.float64)
        rel = (stamps - stamps[0]) if len(stamps) else stamps
        return {
            "id": ep.meta.episode_id,
            "robot": _text(ep.meta.robot_id),
            "task": _text(ep.meta.task),
            "instruction": _text(ep.meta.instruction),
            "kind": _text(ep.meta.kind),
            "outcome": {
                "label": _text(ep.outcome.label),
                "reason": _text(ep.outcome.reason),
                "note": _text(ep.outcome.note),
                "ended_at": ep.outcome.ended_at,
            },
            "steps": ep.num_steps,
            "time": [round(float(t), 4) for t in rel],
            "cameras": [_text(c) for c in ep.images],
            "joint_names": [_text(j) for j in ep.meta.joint_names],
            "joint_pos": _finite_list(ep.joint_pos),
            "action": _finite_list(ep.action),
            "source": [int(s) for s in ep.source],
            "policy_versions": [_text(v) for v in ep.policy_versions],
            "policy_index": [int(i) for i in ep.policy_index],
            "teleop_segments": teleop_segments(ep.source),
        }

    def frame(self, episode_id: str, camera: str, step: int) -> bytes:
        """The JPEG of `camera` at `step` (KeyError/IndexError if there is none)."""
        frames = self.episode(episode_id).images[camera]
        if not 0 <= step < len(frames):
            raise IndexError(step)
        return frames[step]


def _finite_list(values: np.ndarray) -> list:
    """Rounded values as nested lists, None where not finite (JSON has no NaN)."""
    arr = np.asarray(values, np.float64)
    out = np.round(arr, 5).astype(object)
    out[~np.isfinite(arr)] = None
    return out.tolist()


def _section(value: Any) -> Section:
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=_json_default)
    return Section(hashlib.sha256(text.encode()).hexdigest()[:16], text)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return _num(float(value))
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON: {type(value).__name__}")
