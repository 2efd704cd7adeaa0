"""The actor's control step, ROS-free: one call of `tick` per 30 Hz timer event.

Each tick, in order: take finished inference results (stitch the current
generation's chunks, drop older ones); end the episode on its time limit; then,
while an episode runs, pick the command source — stale inputs: hold; pedal held:
the teleop target (on the very tick the pedal engages, pending policy chunks are
discarded); otherwise the policy timeline (hold if dry) — pass it through the
safety filter, request the next chunk when the timeline runs low, and record the
step. On pedal release the timeline is cleared and a fresh inference on the
current observation is requested at once; the robot holds until it arrives.

Outside an episode the actor commands nothing (the controller keeps its last
command) unless `hold_when_idle` is set, in which case it repeats its last command.

Before all of that: an engaged e-stop ends the running episode (failure, `estop`),
holds the last command for `estop_hold_s` and then sends nothing until an explicit
reset. A chunk that breaks the policy contract (`safety.chunk_violation`: shape, dtype, NaN/Inf,
targets far outside the joint ranges) is a policy fault: it is not executed, and it latches the
same safe stop (episode failure `policy_fault`, hold, then nothing until the reset). The
watchdog (`core.watchdog`) holds and re-plans when the control thread
or the inference stalled beyond its bound; an episode awaiting its label past the
label deadline is stored without one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from lwd_actor.core.episode_fsm import Ending, EpisodeState, EpisodeStateMachine, TransitionError
from lwd_actor.core.inference_worker import InferenceRequest, InferenceResult
from lwd_actor.core.observation import Observation
from lwd_actor.core.recorder import EpisodeRecorder, RawStep
from lwd_actor.core.safety import HoldReason, SafetyConfig, SafetyFilter, StaleGuard, chunk_violation
from lwd_actor.core.watchdog import EStop, Watchdog, WatchdogConfig
from lwd_common.episode import ActionSource, EpisodeKind, EpisodeMeta, EpisodeOutcome
from lwd_common.execution.chunk_execution import ChunkExecution
from lwd_common.execution.scheduler import ChunkScheduler, SchedulerConfig
from lwd_description.robot import CAMERA_NAMES, CHUNK_HORIZON, CONTROL_HZ, JOINT_NAMES, JointLimits

NO_CHUNK = -1  # chunk_id of teleop and hold steps


def default_robot_id(namespace: str, hostname: str) -> str:
    """The robot id when none is configured: the node's namespace ("/robot1" -> "robot1",
    "/site/robot1" -> "site_robot1"), so robots in separate namespaces never share ids; in the
    root namespace the host name (one actor per machine)."""
    ns = namespace.strip("/")
    return ns.replace("/", "_") if ns else (hostname or "robot")


@dataclass(frozen=True)
class ActorConfig:
    robot_id: str = "robot0"
    control_hz: float = CONTROL_HZ
    episode_time_limit_s: float = 60.0
    stale_input_timeout_s: float = 0.5
    hold_when_idle: bool = False
    episode_kind: EpisodeKind = EpisodeKind.ROLLOUT
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    estop_hold_s: float = 0.5  # e-stop: repeat the last command this long, then send nothing
    label_deadline_s: float = 0.0  # awaiting a label longer than this: stored as failure (0: wait forever)
    label_timeout_reason: str = "label_timeout"  # or "unlabelled": the stored episode's outcome reason
    # The robot description's joint order and cameras, recorded in every episode (defaults: the G1's).
    joint_names: tuple[str, ...] = JOINT_NAMES
    cameras: tuple[str, ...] = CAMERA_NAMES
    chunk_horizon: int = CHUNK_HORIZON  # rows per chunk (the size of a request's RTC prefix)
    # A chunk target beyond its joint's range by more than this fraction of the range is a policy fault
    # (measured: trained flow policies overshoot the gripper range by up to 0.35 x the range; clamped).
    policy_fault_margin: float = 1.0


@dataclass(frozen=True)
class TickResult:
    step: int
    command: np.ndarray | None  # (J,) safe joint targets to send, or None: send nothing
    source: ActionSource | None
    chunk_id: int = NO_CHUNK
    hold_reason: HoldReason = HoldReason.NONE
    stale_inputs: tuple[str, ...] = ()
    request: InferenceRequest | None = None  # submit this to the inference worker
    new_chunks: tuple[InferenceResult, ...] = ()  # stitched this tick (publish for introspection)
    ended: Ending | None = None  # the episode ended this tick (time limit, label deadline)
    intervention_changed: bool = False
    estop: bool = False  # the e-stop is engaged
    watchdog: str = ""  # what the watchdog found stalled this tick ("" if nothing)
    policy_fault: str = ""  # a chunk broke the policy contract and latched the safe stop this tick: why


@dataclass
class Counters:
    ticks: int = 0
    missed_ticks: int = 0  # control steps that passed without a tick (late timer)
    policy_steps: int = 0
    teleop_steps: int = 0
    hold_steps: dict[str, int] = field(default_factory=dict)
    stale_chunks: int = 0  # results of an older generation (pedal/episode change) discarded
    failed_inferences: int = 0
    stale_events: int = 0  # times inputs went stale during an episode (each: hold, then a fresh chunk)
    interventions: int = 0  # pedal engagements in the current episode
    policy_faults: int = 0  # chunks that broke the policy contract (each latched the safe stop)


class ActorCore:
    """Single-threaded: call everything from the control thread (the node serialises services)."""

    def __init__(
        self, config: ActorConfig, limits: JointLimits, recorder: EpisodeRecorder | None, policy_version: str
    ):
        if tuple(limits.names) != tuple(config.joint_names):
            raise ValueError(
                f"joint limits are for {list(limits.names)}, the actor's joints are {list(config.joint_names)}"
            )
        self.config = config
        # When to ask for a chunk, where it belongs, how it is stitched: shared with the simulator's
        # held-out evaluation (lwd_sim.env.evaluate), so its figures are this actor's behaviour.
        self.execution = ChunkExecution(config.scheduler, config.chunk_horizon, len(config.joint_names))
        self.safety = SafetyFilter(limits, config.safety)
        self.stale_guard = StaleGuard(config.stale_input_timeout_s)
        self.fsm = EpisodeStateMachine(
            config.episode_time_limit_s, config.label_deadline_s, config.label_timeout_reason
        )
        self.estop = EStop(config.estop_hold_s)
        self.watchdog = Watchdog(config.watchdog)
        # Says why no (fresh) synchronised observation exists, for refused starts (the node sets it).
        self.input_report: Callable[[float], str] | None = None
        self.recorder = recorder
        self.policy_version = policy_version
        self.counters = Counters()
        self.step = 0
        self.last_command: np.ndarray | None = None
        self.pedal = False
        self.teleop_target: np.ndarray | None = None
        self.teleop_stamp = float("-inf")
        self._pedal_was = False
        self._was_stale = False
        self._episode_steps = 0
        self._generation = 0
        self._inflight_since: float | None = None  # clock time that request was made
        self._inference_stalled = False  # the watchdog found inference stalled; no chunk since
        self._obs: Observation | None = None
        self._t0: float | None = None  # clock time of step 0
        self._last_now = float("-inf")

    # --- inputs between ticks -------------------------------------------------
    def set_pedal(self, engaged: bool) -> None:
        """Latest pedal state; acted upon at the next tick."""
        self.pedal = bool(engaged)

    def set_teleop_target(self, target: np.ndarray, stamp: float) -> None:
        """Latest teleop joint targets (the robot's joint order) and when they were received."""
        self.teleop_target = np.asarray(target, np.float64)
        self.teleop_stamp = stamp

    def set_policy_version(self, version: str) -> None:
        if not self.fsm.can_swap_policy:
            raise TransitionError(
                f"policy swap refused: episode {self.fsm.episode_id} is {self.fsm.state.name.lower()}"
            )
        self.policy_version = version

    @property
    def state(self) -> EpisodeState:
        return self.fsm.state

    @property
    def episode_steps(self) -> int:
        """Steps executed (and recorded) in the current or last episode."""
        return self._episode_steps

    @property
    def observation(self) -> Observation | None:
        return self._obs

    # --- e-stop ------------------------------------------------------------------
    def engage_estop(self, reason: str, now: float) -> Ending | None:
        """Latch the e-stop (service); returns the episode it ended, if one was running."""
        if not self.estop.engage(reason, now, self._commanding()):
            return None
        return self._end_for_estop()

    def set_estop_input(self, engaged: bool, now: float, source: str = "estop topic") -> Ending | None:
        """The e-stop topic's value: True latches the e-stop, False lets a reset through."""
        if not self.estop.set_input(engaged, now, self._commanding(), source):
            return None
        return self._end_for_estop()

    def reset_estop(self) -> str:
        """Explicit reset (refused while the e-stop input is engaged); returns why it had engaged."""
        return self.estop.reset()

    def _commanding(self) -> np.ndarray | None:
        """The command being sent now, if the actor sends any (an e-stop holds only that)."""
        if self.fsm.state is EpisodeState.RUNNING or self.config.hold_when_idle:
            return self.last_command
        return None

    def _end_for_estop(self, kind: str = "estop") -> Ending | None:
        self._reset_plan()
        if self.fsm.state is not EpisodeState.RUNNING:
            return None
        steps = self._episode_steps
        ending = self.fsm.fail(kind, self.estop.reason)
        self._finish(ending, steps)
        return ending

    # --- episode control --------------------------------------------------------
    def start_episode(self, episode_id: str, task: str, instruction: str, now: float) -> None:
        if self.estop.engaged:
            raise TransitionError(f"cannot start: e-stop engaged ({self.estop.reason}); reset it first")
        obs = self._obs
        if obs is None:
            raise TransitionError(
                "cannot start: no synchronised camera + joint observation yet" + self._why_no_input(now)
            )
        stale = self.stale_guard.stale_inputs(now, dict(obs.stamps))
        if stale:
            raise TransitionError(f"cannot start: stale inputs {stale}" + self._why_no_input(now))
        self.fsm.start(episode_id, task, instruction, now)
        self._reset_plan()
        self._inference_stalled = False
        self.last_command = obs.joint_pos.copy()
        self.counters.interventions = 0
        self._episode_steps = 0
        self._pedal_was = False  # a pedal already held at start counts as a takeover on the first tick
        if self.recorder is not None:
            self.recorder.begin(
                EpisodeMeta(
                    episode_id=episode_id,
                    robot_id=self.config.robot_id,
                    task=task,
                    instruction=instruction,
                    kind=self.config.episode_kind,
                    started_at=now,
                    cameras=tuple(self.config.cameras),
                    extra={"policy_version": self.policy_version, "control_hz": self.config.control_hz},
                    joint_names=tuple(self.config.joint_names),
                )
            )

    def _why_no_input(self, now: float) -> str:
        why = self.input_report(now) if self.input_report is not None else ""
        return f": {why}" if why else ""

    def stop_episode(self, abort: bool, reason: str = "", now: float | None = None) -> Ending | None:
        """Stop (await the label; `now` starts the label deadline) or abort the running episode."""
        steps = self._episode_steps
        ending = self.fsm.stop(abort, reason, now)
        self._reset_plan()
        if ending is not None:
            self._finish(ending, steps)
        return ending

    def label_episode(self, success: bool, note: str = "") -> Ending:
        ending = self.fsm.label(success, note)
        self._finish(ending, self._episode_steps)
        return ending

    # --- the control step ---------------------------------------------------------
    def tick(
        self,
        now: float,
        obs: Observation | None,
        results: Iterable[InferenceResult] = (),
        input_stamps: Mapping[str, float | None] | None = None,
    ) -> TickResult:
        """One control step at clock time `now`. `input_stamps` (newest stamp of every input,
        synchronised or not) only sharpens which inputs a stale hold names."""
        gap = now - self._last_now
        step = self._step_at(now)
        self.counters.ticks += 1
        if obs is not None:
            self._obs = obs
        obs = self._obs
        stitched, fault = self._take_results(results, step)
        new_chunks = tuple(stitched)

        ended = None
        if fault:
            self.counters.policy_faults += 1
            if self.estop.engage(f"policy fault: {fault}", now, self._commanding()):
                ended = self._end_for_estop("policy_fault")
            else:
                fault = ""  # already latched: reported when it first engaged
        elif self.fsm.state is EpisodeState.RUNNING:
            ended = self.fsm.check_time_limit(now)
            if ended is not None:
                self._reset_plan()
                self._finish(ended, self._episode_steps)
        elif self.fsm.state is EpisodeState.AWAITING_LABEL:
            ended = self.fsm.check_label_deadline(now)
            if ended is not None:
                self._finish(ended, self._episode_steps)
        if self.estop.engaged:
            cmd = self.estop.command(now)
            return TickResult(
                step,
                cmd,
                ActionSource.HOLD if cmd is not None else None,
                hold_reason=HoldReason.ESTOP,
                new_chunks=new_chunks,
                ended=ended,
                estop=True,
                policy_fault=fault,
            )
        if self.fsm.state is not EpisodeState.RUNNING:
            cmd = (
                self.last_command if (self.config.hold_when_idle and self.last_command is not None) else None
            )
            return TickResult(
                step, cmd, ActionSource.HOLD if cmd is not None else None, new_chunks=new_chunks, ended=ended
            )
        # An episode runs: start_episode required an observation and set the first command, and
        # neither is ever cleared.
        assert obs is not None, "a running episode always has an observation"
        last = self.last_command
        assert last is not None, "a running episode always has a last command"

        watchdog = ""
        if 0.0 <= gap < float("inf") and self.watchdog.control_gap(gap, now):
            watchdog = self.watchdog.last_trip
            self._reset_plan()  # the plan was made for a moment long past: resume from a fresh chunk
        if (
            self.execution.in_flight is not None
            and self._inflight_since is not None
            and self.watchdog.inference_age(now - self._inflight_since, now)
        ):
            watchdog = self.watchdog.last_trip
            self._reset_plan()  # ask again; whatever the stuck inference returns is discarded
            self._inference_stalled = True

        stale = tuple(self.stale_guard.stale_inputs(now, dict(obs.stamps)))
        named = stale
        if stale and input_stamps is not None:  # name the inputs at fault, not every one of a stale set
            named = tuple(self.stale_guard.stale_inputs(now, dict(input_stamps))) or stale
        engaged_now = self.pedal and not self._pedal_was
        released_now = self._pedal_was and not self.pedal
        self._pedal_was = self.pedal
        if engaged_now:
            self.counters.interventions += 1
            self._reset_plan()  # discard pending policy chunks and any inference in flight
        if released_now:
            self._reset_plan()  # resume from a fresh inference, requested below

        request = None
        chunk_id = NO_CHUNK
        was_stale, self._was_stale = self._was_stale, bool(stale)
        if stale and not was_stale:
            self.counters.stale_events += 1
        if stale:
            if not was_stale:
                self._reset_plan()  # the plan moved on in time while we hold: resume from a fresh chunk
            res = self.safety.hold(last, HoldReason.STALE)
            source = ActionSource.HOLD
        elif self.pedal:
            if self.teleop_target is None or now - self.teleop_stamp > self.stale_guard.max_age_s:
                res = self.safety.hold(last, HoldReason.NO_TELEOP)
                source = ActionSource.HOLD
            else:
                res = self.safety.apply(self.teleop_target, last)
                source = ActionSource.HOLD if res.held else ActionSource.TELEOP
        else:
            scheduled = self.execution.pop(step)
            if scheduled is None:
                stalled = bool(watchdog) or self._inference_stalled
                res = self.safety.hold(last, HoldReason.WATCHDOG if stalled else HoldReason.DRY)
                source = ActionSource.HOLD
            else:
                res = self.safety.apply(scheduled.target, last)
                source = ActionSource.HOLD if res.held else ActionSource.POLICY
                chunk_id = scheduled.chunk_id if not res.held else NO_CHUNK
            chunk = self.execution.request(step)
            if chunk is not None:
                request = InferenceRequest(
                    obs,
                    chunk.start_step,
                    self._generation,
                    self.fsm.instruction,
                    chunk.prefix,
                    chunk.prefix_len,
                    chunk.delay,
                )
                self._inflight_since = now

        self.last_command = res.command
        self._count(source, res.reason)
        if self.recorder is not None:
            self.recorder.add(
                RawStep(
                    step,
                    obs.stamp,
                    obs.images,
                    obs.joint_pos,
                    res.command,
                    source,
                    chunk_id,
                    self.policy_version,
                )
            )
        self._episode_steps += 1
        return TickResult(
            step,
            res.command,
            source,
            chunk_id,
            res.reason,
            named,
            request,
            new_chunks,
            None,
            engaged_now or released_now,
            watchdog=watchdog,
        )

    # --- internals ----------------------------------------------------------------
    def _step_at(self, now: float) -> int:
        """Control step of a tick at `now`: steps follow the clock, so a late tick skips the
        steps it missed (counted) instead of stretching the plan in time."""
        hz = self.config.control_hz
        if self._t0 is None or now < self._last_now:  # first tick, or the clock jumped back (sim reset)
            self._t0 = now - self.step / hz
        self._last_now = now
        step = max(int(round((now - self._t0) * hz)), self.step)
        self.counters.missed_ticks += step - self.step
        self.step = step + 1
        return step

    @property
    def scheduler(self) -> ChunkScheduler:
        """The timeline (`execution.scheduler`): counters and what is planned."""
        return self.execution.scheduler

    def _reset_plan(self) -> None:
        self.execution.clear()  # the plan and the request in flight
        self._generation += 1
        self._inflight_since = None

    def _take_results(
        self, results: Iterable[InferenceResult], step: int
    ) -> tuple[list[InferenceResult], str]:
        """Stitch the current generation's chunks; (the stitched ones, why a chunk broke the policy
        contract or ""). A faulty chunk is never stitched, and neither is anything after it."""
        stitched: list[InferenceResult] = []
        for r in results:
            current = r.request.generation == self._generation
            if current and self.execution.in_flight is not None:
                self.execution.answered()
                self._inflight_since = None
            if r.actions is None:
                self.counters.failed_inferences += 1
                continue
            fault = chunk_violation(
                r.actions, self.config.chunk_horizon, self.safety.limits, self.config.policy_fault_margin
            )
            if fault:
                return stitched, f"{fault} (policy {r.policy_version})"
            if not current or self.fsm.state is not EpisodeState.RUNNING or self.pedal:
                self.counters.stale_chunks += 1
                continue
            self.execution.stitch(r.request.start_step, r.actions, r.chunk_id, step)
            self._inference_stalled = False
            stitched.append(r)
        return stitched, ""

    def _count(self, source: ActionSource, reason: HoldReason) -> None:
        if source is ActionSource.POLICY:
            self.counters.policy_steps += 1
        elif source is ActionSource.TELEOP:
            self.counters.teleop_steps += 1
        else:
            key = str(reason) or "held"
            self.counters.hold_steps[key] = self.counters.hold_steps.get(key, 0) + 1

    def _finish(self, ending: Ending, steps: int) -> None:
        if self.recorder is not None:
            self.recorder.end(
                EpisodeOutcome(label=ending.label, num_steps=steps, reason=ending.reason, note=ending.note)
            )
