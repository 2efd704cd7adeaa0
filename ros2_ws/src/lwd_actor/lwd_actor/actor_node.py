"""The onboard actor as a ROS 2 lifecycle node: a thin shell around `lwd_actor.core`.

    python -m lwd_actor.actor_node --ros-args -r __ns:=/robot0 \
        --params-file ros2_ws/src/lwd_actor/config/actor.yaml -p policy_path:=policy.onnx

configure: read parameters, load joint limits and the policy (a model that breaks
the ONNX contract fails the transition), open the sink, create topics/services.
activate: start the control loop (wall time: a thread on absolute deadlines; with
use_sim_time: a thread woken by /clock that ticks every simulated period).
deactivate: stop the timer; a running episode is aborted (recorded as failure).
cleanup: close worker, recorder and sink. With `autostart: true` the node
configures and activates itself. SIGINT/SIGTERM (`StopSignal`, not rclpy's handlers) stop it
in order within `shutdown_timeout_s`: executor, episode (aborted), recorder, sink, node,
context. Episodes a killed run left unfinished are stored at configure (the sink's journal or
spool; docs/actor.md "Stopping, and surviving a kill").

Safety inputs: `estop` (std_msgs/Bool, True latches the e-stop) and the `~/estop` /
`~/reset_estop` services; the core's watchdog holds when the control thread or the
inference stalls, and a stall watch on its own thread (and the 1 Hz status) reports a control
thread that is stalled right now. Command inputs (pedal, teleop targets, e-stop) are subscribed reliable and
best-effort at once, so a publisher of either QoS is heard (`core.dedupe`).

Threads: the control loop has its own thread; sensors, the episode services and the 1 Hz
status timer run on one executor thread (a thread pool only adds GIL contention); the
e-stop (topic and services) is the node's `safety_group`, served by an executor of its own
on its own thread (`SafetyThread`), so no input callback (a large frame being decoded) can
delay it: an e-stop is latched, and the held command sent, when it arrives. On wall time a
`StallWatch` thread reports a stalled control thread at once. Policy downloads (and loading a downloaded policy) run on the policy
fetcher's thread, asked at activation and episode ends (`core.policy_switch`);
inference and JPEG encoding run on plain threads of the core. One lock serialises
the core between the control tick (which also publishes its command under it), the
e-stop and the services.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration as RosDuration
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Bool, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from lwd_actor.core.actor import ActorConfig, ActorCore, TickResult, default_robot_id
from lwd_actor.core.control_loop import ControlLoop, set_fifo_priority
from lwd_actor.core.dedupe import PublisherDedupe
from lwd_actor.core.episode_fsm import LABEL_TIMEOUT_REASONS, Ending, EpisodeState, TransitionError
from lwd_actor.core.inference_worker import InferenceResult, InferenceWorker
from lwd_actor.core.instructions import UnknownInstructions
from lwd_actor.core.observation import (
    JOINTS_INPUT,
    InputError,
    JointsIncomplete,
    JointStateMerger,
    all_inputs,
    aspect_mismatch,
    compressed_image,
    fit_frame,
    ordered_joints,
    rgb_image,
)
from lwd_actor.core.policy_runtime import OnnxPolicy, PolicyError, RuntimeConfig
from lwd_actor.core.policy_switch import PolicySource, PolicySwitch
from lwd_actor.core.recorder import EpisodeRecorder
from lwd_actor.core.safety import SafetyConfig
from lwd_actor.core.sync import ApproximateSync
from lwd_actor.core.watchdog import EStop, StallWatch, WatchdogConfig
from lwd_actor.executors import GroupExecutor, SafetyThread
from lwd_actor.sinks import SinkBundle, make_sink
from lwd_common.episode import EpisodeKind, Label, new_episode_id
from lwd_common.execution.scheduler import MergeMode, SchedulerConfig
from lwd_description.robot import DEFAULT_ROBOT, RobotDescription, load_joint_limits, load_robot
from lwd_msgs.msg import ActionChunk, EpisodeStatus, InterventionState, PolicyStatus
from lwd_msgs.srv import LabelEpisode, StartEpisode, StopEpisode

COMMAND_ARRAY = "float64_array"  # std_msgs/Float64MultiArray on `joint_commands`
COMMAND_TRAJECTORY = "joint_trajectory"  # trajectory_msgs/JointTrajectory on `joint_trajectory`
# label_deadline_outcome -> the stored outcome's reason (the label is failure either way)
LABEL_OUTCOMES = {"failure": "label_timeout", "unlabelled": "unlabelled"}
assert set(LABEL_OUTCOMES.values()) == set(LABEL_TIMEOUT_REASONS)

# name -> (default, description). Types follow the defaults.
PARAMETERS: dict[str, tuple[object, str]] = {
    "robot_id": (
        "",
        "robot name recorded in every episode; empty: the node's namespace (/robot1 -> robot1), "
        "in the root namespace the host name",
    ),
    "robot": (
        DEFAULT_ROBOT,
        "robot description: a name from lwd_description's robots/ (g1_dual_arm, single_arm_6dof) or "
        "the path of a robot YAML; its joints, limits, cameras, rate and chunk horizon",
    ),
    "autostart": (True, "configure and activate at start-up"),
    "policy_path": ("", "ONNX policy file (lwd_common/policy_io.py contract)"),
    "prefer_cuda": (False, "use the CUDA provider if a session really comes up on it"),
    "inference_threads": (1, "ONNX Runtime intra-op threads"),
    "urdf_path": (
        "",
        "URDF with the robot's joint limits; empty: the robot description's (g1_dual_arm: $LWD_URDF or "
        "lwd_description's urdf/g1_dual_arm.urdf)",
    ),
    "control_hz": (0.0, "control rate (node clock: wall or /clock); 0: the robot description's (G1: 30)"),
    "realtime_priority": (0, "SCHED_FIFO priority of the control thread (0: normal scheduling)"),
    "process_realtime_priority": (0, "SCHED_FIFO priority of every other thread of the process (0: normal)"),
    "command_interface": (COMMAND_ARRAY, f"'{COMMAND_ARRAY}' or '{COMMAND_TRAJECTORY}'"),
    # The scheduler's defaults are SchedulerConfig's (one owner, shared with the simulator's evaluation).
    "request_threshold": (
        SchedulerConfig.request_threshold,
        "request the next chunk when this many planned steps remain",
    ),
    "merge": (
        SchedulerConfig.merge.value,
        "chunk overlap merge: 'replace' (newer wins), 'blend' (cross-fade) or 'ensemble' (ACT temporal ensembling)",
    ),
    "blend_steps": (SchedulerConfig.blend_steps, "blend: cross-fade length in steps"),
    "ensemble_decay": (
        SchedulerConfig.ensemble_decay,
        "ensemble: m of the weights exp(-m * i), i = 0 the oldest prediction of a step",
    ),
    "velocity_scale": (1.0, "fraction of the URDF velocity limit allowed per step"),
    "stale_input_timeout_s": (0.5, "hold when a camera or joint_states is older than this"),
    "sync_slop_s": (0.05, "max stamp spread of a synchronised camera+joint set"),
    "image_height": (0, "expected camera image height; 0: any"),
    "image_width": (0, "expected camera image width; 0: any"),
    "compressed_cameras": (
        "",
        "cameras read as sensor_msgs/CompressedImage (jpeg, png) on "
        "camera/<name>/image_raw/compressed: comma-separated names or 'all'; "
        "the others as Image on camera/<name>/image_raw",
    ),
    "record_height": (
        0,
        "frames are resized to record_height x record_width on receipt, recorded and "
        "prepared for the policy at it; 0: as received",
    ),
    "record_width": (0, "see record_height"),
    "episode_time_limit_s": (60.0, "a running episode ends as failure after this long"),
    "label_deadline_s": (
        120.0,
        "an episode awaiting its label this long is stored without one; 0: wait forever",
    ),
    "label_deadline_outcome": (
        "failure",
        "what the deadline stores: 'failure' (reason label_timeout) or "
        "'unlabelled' (label failure, reason unlabelled: for learners to skip)",
    ),
    "estop_hold_s": (0.5, "after an e-stop repeat the last command this long, then send nothing until reset"),
    "watchdog_control_stall_s": (0.25, "a control tick later than this: hold and re-plan; 0: off"),
    "watchdog_inference_stall_s": (
        1.0,
        "an inference in flight longer than this: hold and ask again; 0: off",
    ),
    "unknown_instruction": (
        "warn",
        "an instruction the policy was not trained on (it gets the untrained index-0 embedding): "
        "'warn' (run it, log each new one once, count it in diagnostics) or 'refuse' (turn the start down)",
    ),
    "episode_kind": ("rollout", "kind recorded in episode metadata: rollout | demo | play"),
    "hold_when_idle": (False, "repeat the last command outside episodes (else send nothing)"),
    "sink": ("directory", "'directory' (local EpisodeStore) or 'bridge' (ZeroMQ to the learner bridge)"),
    "store_dir": ("episodes", "directory sink: EpisodeStore root"),
    "bridge_endpoint": ("tcp://127.0.0.1:5555", "bridge sink: ZeroMQ endpoint of the bridge"),
    "spool_dir": ("spool", "bridge sink: on-disk spool of unacknowledged episodes"),
    "spool_max_mib": (
        4096,
        "bridge sink: spool cap; over it the oldest complete unsent episodes are dropped (counted in "
        "diagnostics spool_dropped_*), never the one recording or on the wire; 0: no cap",
    ),
    "spool_rejected_max_mib": (
        256,
        "bridge sink: cap of the spool's rejected/ (episodes the bridge refused); oldest deleted first; 0: no cap",
    ),
    "spool_orphaned_max_mib": (
        256,
        "bridge sink: cap of the spool's orphaned/ (episodes a crash cut off); oldest deleted first; 0: no cap",
    ),
    "curve_secret_key_file": (
        "",
        "bridge sink: this robot's CURVE secret cert (<robot_id>.key_secret); empty: unencrypted",
    ),
    "bridge_public_key_file": (
        "",
        "bridge sink: the bridge's CURVE public cert (bridge.key); with the above",
    ),
    "jpeg_quality": (80, "JPEG quality of recorded frames, 1..100"),
    "recorder_max_pending": (300, "steps the recorder may queue before it drops (and reports)"),
    "shutdown_timeout_s": (
        3.0,
        "SIGINT/SIGTERM: the process exits within this long; a running episode is aborted and "
        "stored (what cannot be stored in time stays in the journal/spool for the next start)",
    ),
}


def stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def time_msg(t: float) -> TimeMsg:
    """Seconds as a ROS time, rounded to the nanosecond with the carry (1.9999999996 s is 2.0 s)."""
    sec, nanosec = divmod(int(round(t * 1e9)), 1_000_000_000)
    return TimeMsg(sec=sec, nanosec=nanosec)


class ActorNode(LifecycleNode):
    def __init__(self, policy_source: PolicySource | None = None, **kwargs):
        super().__init__("actor", **kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        self.policy_source = policy_source  # set by integrators; else the sink's (the bridge's fetcher)
        self._lock = threading.RLock()
        # The e-stop (topic, services): served on their own thread by `main` (`SafetyThread`), never
        # behind an input callback. One group: its callbacks never run at once.
        self.safety_group = MutuallyExclusiveCallbackGroup()
        # The executor serving `safety_group` on its own thread, if any (`SafetyThread`): woken when
        # the group's entities change (it is not the node's executor, which rclpy wakes itself).
        self.safety_executor: Executor | None = None
        self._stall_watch: StallWatch | None = None  # wall time: the control thread's stall watch
        self._core: ActorCore | None = None
        self._worker: InferenceWorker | None = None
        self._recorder: EpisodeRecorder | None = None
        self._sinks: SinkBundle | None = None
        self._policy: OnnxPolicy | None = None
        self._sim_thread: threading.Thread | None = None
        self._loop: ControlLoop | None = None
        self._entities: list = []
        self._active = False
        self._tick_overruns = 0
        self._input_errors = 0
        self._frames_received: dict[str, int] = {}  # frames taken into the sync, per camera
        self._robot: RobotDescription | None = None  # the `robot` parameter's description, once loaded
        self._hz = 0.0  # the control rate, set at configure
        self._last_status: tuple | None = None
        self._engaged_since = 0.0
        self._switch: PolicySwitch | None = None
        self._last_tick_mono: float | None = None  # monotonic time of the last control tick
        self._expected_hw: tuple[int, int] | None = None  # camera size as configured
        self._record_size: tuple[int, int] | None = None  # frames resized to this on receipt
        self._compressed: set[str] = set()  # cameras read as CompressedImage
        self._kept_estop: EStop | None = None  # an engaged e-stop carried across cleanup -> configure
        self._robot_id = ""
        self._provider_logged: tuple[str, str, str] | None = None
        self._instructions = UnknownInstructions()
        self._unknown_running = ""  # the running episode's instruction, if its policy does not know it

    # --- helpers ---------------------------------------------------------------------
    def p(self, name: str):
        return self.get_parameter(name).value

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def robot_id(self) -> str:
        """The configured robot_id, else one derived from the namespace (never shared by two robots)."""
        return str(self.p("robot_id")) or default_robot_id(self.get_namespace(), socket.gethostname())

    def robot_description(self) -> RobotDescription:
        """The robot description the `robot` parameter names (loaded once per value)."""
        source = str(self.p("robot")) or DEFAULT_ROBOT
        if self._robot is None or source not in (self._robot.name, str(self._robot.source)):
            self._robot = load_robot(source)
        return self._robot

    def control_hz(self) -> float:
        """The `control_hz` parameter, else (0) the robot description's rate."""
        hz = float(self.p("control_hz"))
        if hz < 0:
            raise ValueError(f"control_hz must be > 0 (or 0: the robot description's), not {hz:g}")
        return hz or self.robot_description().control_hz

    def _camera_hw(self) -> tuple[int, int] | None:
        h, w = int(self.p("image_height")), int(self.p("image_width"))
        return (h, w) if h > 0 and w > 0 else None

    def _record_hw(self) -> tuple[int, int] | None:
        h, w = int(self.p("record_height")), int(self.p("record_width"))
        if (h > 0) != (w > 0):
            raise ValueError(f"record_height and record_width go together (got {h} x {w})")
        return (h, w) if h > 0 else None

    def _compressed_cameras(self) -> set[str]:
        text = str(self.p("compressed_cameras")).strip()
        cameras = self.robot_description().camera_names
        names = set(cameras) if text == "all" else {n.strip() for n in text.split(",") if n.strip()}
        unknown = names - set(cameras)
        if unknown:
            raise ValueError(
                f"compressed_cameras: unknown cameras {sorted(unknown)} (cameras: {list(cameras)} or 'all')"
            )
        return names

    def _frame_sizes(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """(camera size, recording size) as configured; a recording size that would squash refused."""
        camera, record = self._camera_hw(), self._record_hw()
        if camera is not None and record is not None:
            why = aspect_mismatch(camera, record, "the recording size (record_height x record_width)")
            if why:
                raise ValueError(why)
        return camera, record

    # --- lifecycle -----------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            robot_id = self.robot_id()
            robot = self.robot_description()
            hz = self.control_hz()
            if self.p("command_interface") not in (COMMAND_ARRAY, COMMAND_TRAJECTORY):
                raise ValueError(f"command_interface must be {COMMAND_ARRAY!r} or {COMMAND_TRAJECTORY!r}")
            self._expected_hw, self._record_size = self._frame_sizes()
            self._compressed = self._compressed_cameras()
            instructions = UnknownInstructions(str(self.p("unknown_instruction")))
            outcome = str(self.p("label_deadline_outcome"))
            if outcome not in LABEL_OUTCOMES:
                raise ValueError(
                    f"label_deadline_outcome must be one of {sorted(LABEL_OUTCOMES)}, not {outcome!r}"
                )
            urdf = self.p("urdf_path") or None
            limits = load_joint_limits(urdf, robot.joint_names) if urdf else robot.limits
            if not self.p("policy_path"):
                raise ValueError("policy_path is empty: the actor needs an ONNX policy")
            policy = OnnxPolicy(self.p("policy_path"), self._runtime_config())
            config = ActorConfig(
                robot_id=robot_id,
                control_hz=hz,
                episode_time_limit_s=float(self.p("episode_time_limit_s")),
                stale_input_timeout_s=float(self.p("stale_input_timeout_s")),
                hold_when_idle=bool(self.p("hold_when_idle")),
                episode_kind=EpisodeKind(self.p("episode_kind")),
                scheduler=SchedulerConfig(
                    int(self.p("request_threshold")),
                    MergeMode(self.p("merge")),
                    int(self.p("blend_steps")),
                    float(self.p("ensemble_decay")),
                ),
                safety=SafetyConfig(control_hz=hz, velocity_scale=float(self.p("velocity_scale"))),
                watchdog=WatchdogConfig(
                    float(self.p("watchdog_control_stall_s")), float(self.p("watchdog_inference_stall_s"))
                ),
                estop_hold_s=float(self.p("estop_hold_s")),
                label_deadline_s=float(self.p("label_deadline_s")),
                label_timeout_reason=LABEL_OUTCOMES[outcome],
                joint_names=robot.joint_names,
                cameras=robot.camera_names,
                chunk_horizon=robot.chunk_horizon,
            )
            sinks = make_sink(
                str(self.p("sink")),
                robot_id,
                str(self.p("store_dir")),
                str(self.p("bridge_endpoint")),
                str(self.p("spool_dir")),
                str(self.p("curve_secret_key_file")),
                str(self.p("bridge_public_key_file")),
                robot=robot,
                spool_caps_mib=(
                    int(self.p("spool_max_mib")),
                    int(self.p("spool_rejected_max_mib")),
                    int(self.p("spool_orphaned_max_mib")),
                ),
            )
        except (PolicyError, ValueError, OSError) as exc:
            log.error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._sinks = sinks
        self._instructions = instructions
        self._switch = PolicySwitch(
            policy.version,
            self.policy_source or sinks.policy_source,
            self._runtime_config(),
            info=lambda m: self.get_logger().info(m),
            error=lambda m: self.get_logger().error(m),
        )
        self._recorder = EpisodeRecorder(
            sinks.sink,
            int(self.p("jpeg_quality")),
            int(self.p("recorder_max_pending")),
            on_error=lambda m: self.get_logger().error(m),
        )
        self._policy = policy
        self._worker = InferenceWorker(policy)
        self._core = ActorCore(config, limits, self._recorder, policy.version)
        if self._kept_estop is not None:  # a cleanup is not a reset: the latch survives reconfiguration
            self._core.estop = replace(self._kept_estop, hold_s=config.estop_hold_s, hold_command=None)
            log.error(f"E-STOP still engaged ({self._kept_estop.reason}): reset with actor/reset_estop")
            self._kept_estop = None
        self._sync = ApproximateSync(float(self.p("sync_slop_s")), inputs=all_inputs(robot.camera_names))
        stale_s = float(self.p("stale_input_timeout_s"))
        self._joints = JointStateMerger(stale_s, robot.joint_names)
        self._frames_received = dict.fromkeys(robot.camera_names, 0)
        self._hz = hz
        self._core.input_report = lambda now: self._sync.explain(now, stale_s)
        self._period = 1.0 / hz
        self._robot_id = robot_id
        self._create_entities()
        for line in sinks.recovered:
            log.warning(f"recovered an unfinished episode of an earlier run: {line}")
        log.info(
            f"configured: robot {robot_id} ({robot.name}: {robot.num_joints} joints, cameras "
            f"{', '.join(robot.camera_names) or 'none'}), policy {policy.version} ({policy.provider}, "
            f"{policy.signature.image_height}x{policy.signature.image_width}), sink {sinks.describe}, "
            f"{hz:g} Hz, commands as {self.p('command_interface')}"
        )
        self._log_provider(policy)
        self._publish_policy_status()
        return TransitionCallbackReturn.SUCCESS

    def _log_provider(self, policy: OnnxPolicy) -> None:
        """Say once which execution provider runs the policy and, if not the preferred one, why
        (again only when that changes, e.g. a swapped-in policy lands on another provider)."""
        choice = policy.provider_choice
        key = (choice.active, choice.preferred, choice.why)
        if key == self._provider_logged:
            return
        self._provider_logged = key
        if choice.fallback:
            self.get_logger().warning(
                f"inference runs on {choice.active}: {choice.preferred} was preferred (prefer_cuda) "
                f"but is not used: {choice.why}"
            )
        else:
            self.get_logger().info(
                f"inference runs on {choice.active}"
                + ("" if self.p("prefer_cuda") else " (prefer_cuda false)")
            )

    def provider_values(self) -> dict[str, object]:
        """The policy's execution provider for diagnostics: what runs, what was preferred, why not."""
        policy = self._policy
        if policy is None:
            return {}
        choice = policy.provider_choice
        return {
            "inference_provider": choice.active,
            "inference_provider_preferred": choice.preferred,
            "inference_provider_why": choice.why,
        }

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        hz = self._hz
        self._last_tick_mono = None  # a tick of before a deactivation is no stall of this activation
        self._active = True
        if self.get_parameter("use_sim_time").value:
            self._sim_thread = threading.Thread(
                target=self._sim_time_loop, args=(hz,), name="lwd-control-sim", daemon=True
            )
            self._sim_thread.start()
            how = "control thread on /clock"
        else:
            self._loop = ControlLoop(
                hz,
                self._tick,
                realtime_priority=int(self.p("realtime_priority")),
                on_error=lambda e: self.get_logger().error(f"control tick failed: {e!r}"),
            )
            self._loop.start()
            how = "control thread on wall time"
            bound = float(self.p("watchdog_control_stall_s"))
            if bound > 0:
                self._stall_watch = StallWatch(lambda: self._last_tick_mono, bound, self._on_stall)
                self._stall_watch.start()
        self.get_logger().info(f"active: control loop running ({how})")
        self._request_policy()
        return TransitionCallbackReturn.SUCCESS

    def _sim_time_loop(self, hz: float) -> None:
        """Tick on simulated time: woken by every /clock update, ticks when a period has passed.

        (An rclpy timer on ROS time missed most ticks here when /clock advanced in small steps.)
        """
        clock = self.get_clock()
        wake = threading.Event()
        handle = clock.create_jump_callback(
            JumpThreshold(
                min_forward=RosDuration(nanoseconds=1),
                min_backward=RosDuration(nanoseconds=-1),
                on_clock_change=True,
            ),
            post_callback=lambda jump: wake.set(),
        )
        period = int(round(1e9 / hz))
        next_ns: int | None = None
        try:
            while self._active and self.context.ok():
                wake.wait(0.5)
                wake.clear()
                now = clock.now().nanoseconds
                if now == 0:
                    continue  # no /clock yet
                if next_ns is None or now < next_ns - period:  # first tick, or time went back (reset)
                    next_ns = now
                if now >= next_ns:
                    next_ns += ((now - next_ns) // period + 1) * period
                    try:
                        self._tick()
                    except Exception as exc:  # noqa: BLE001 - one bad tick must not end control
                        self.get_logger().error(f"control tick failed: {exc!r}")
        finally:
            handle.unregister()

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        if self._stall_watch is not None:
            self._stall_watch.stop()
            self._stall_watch = None
        if self._loop is not None:
            self._loop.stop()
            self._loop = None
        if self._sim_thread is not None:
            self._sim_thread.join(timeout=2.0)
            self._sim_thread = None
        with self._lock:
            if self._core is not None and self._core.state is EpisodeState.RUNNING:
                self._core.stop_episode(abort=True, reason="actor deactivated")
                self.get_logger().warning("deactivated during an episode: aborted (recorded as failure)")
        if self.context.ok():  # not after Ctrl-C: the context is gone, the episode is still recorded
            self._publish_episode_status(force=True)
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        for what in self._teardown():
            self.get_logger().error(f"cleanup: {what} did not finish")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.shutdown_within(float(self.p("shutdown_timeout_s")))
        return TransitionCallbackReturn.SUCCESS

    def shutdown_within(self, timeout: float) -> list[str]:
        """Stop within `timeout` s (SIGINT/SIGTERM): deactivate (a running episode is aborted and
        recorded as failure), hand the recorder's queue to the sink (steps it cannot encode in time are
        dropped and noted, the episode's end is not), close worker and sink. Returns what was still
        unfinished at the deadline (left to daemon threads: the journal/spool keeps the episode)."""
        deadline = time.monotonic() + timeout
        if self._active:
            self.on_deactivate(None)
        return self._teardown(max(0.0, deadline - time.monotonic()))

    def _teardown(self, timeout: float = 20.0) -> list[str]:
        """Close worker, recorder and sink within `timeout` s; returns what did not finish."""
        deadline = time.monotonic() + timeout

        def left(reserve: float = 0.0) -> float:
            return max(0.0, deadline - time.monotonic() - reserve)

        unfinished = []
        recorder_done = True
        if self._worker is not None and not self._worker.close(min(0.5, left())):
            unfinished.append("an inference")
        if self._recorder is not None:
            rec = self._recorder
            # the end of the episode needs little time (the journal's end record; the spool's end frame)
            recorder_done = rec.close(left(reserve=0.2), end_reserve_s=0.5)
            if not recorder_done:
                unfinished.append(
                    f"the recorder (writing an episode to the sink; {rec.pending} steps queued)"
                )
            elif rec.errors:
                unfinished.append(f"the recorder ({rec.errors} sink errors)")
        # A sink still in use by the recorder's thread is left open (its files close with the process).
        if recorder_done and self._sinks is not None and self._sinks.closer is not None:
            closer = threading.Thread(target=self._sinks.closer, name="lwd-sink-close", daemon=True)
            closer.start()
            closer.join(left())
            if closer.is_alive():
                unfinished.append(f"closing the sink ({self._sinks.describe})")
        for entity in self._entities:
            for destroy in (
                self.destroy_publisher,
                self.destroy_subscription,
                self.destroy_service,
                self.destroy_timer,
            ):
                try:
                    if destroy(entity):
                        break
                except Exception:  # noqa: BLE001 - wrong destroy_* for this entity type
                    continue
        self._entities.clear()
        self._wake_safety()
        with self._lock:  # an e-stop latching on the safety thread right now is kept, not lost
            if self._core is not None and self._core.estop.engaged:
                self._kept_estop = self._core.estop
            self._worker = self._recorder = self._sinks = self._core = self._policy = self._switch = None
        return unfinished

    # --- ROS entities ----------------------------------------------------------------
    def _wake_safety(self) -> None:
        """The safety group's entities changed: its executor rebuilds what it waits on."""
        executor = self.safety_executor
        if executor is not None:
            executor.wake()

    def _create_entities(self) -> None:
        sensors = ReentrantCallbackGroup()
        services = MutuallyExclusiveCallbackGroup()
        status = MutuallyExclusiveCallbackGroup()
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        e = self._entities
        self._cmd_array = self.p("command_interface") == COMMAND_ARRAY
        if self._cmd_array:
            self._cmd_pub = self.create_publisher(Float64MultiArray, "joint_commands", 10)
        else:
            self._cmd_pub = self.create_publisher(JointTrajectory, "joint_trajectory", 10)
        self._chunk_pub = self.create_publisher(ActionChunk, "action_chunk", 10)
        self._episode_pub = self.create_publisher(EpisodeStatus, "episode_status", latched)
        self._policy_pub = self.create_publisher(PolicyStatus, "policy_status", latched)
        self._intervention_pub = self.create_publisher(InterventionState, "intervention_state", latched)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        e += [
            self._cmd_pub,
            self._chunk_pub,
            self._episode_pub,
            self._policy_pub,
            self._intervention_pub,
            self._diag_pub,
        ]
        for cam in self._frames_received:  # the robot description's cameras
            if cam in self._compressed:  # image_transport's topic name for the compressed plugin
                e.append(
                    self.create_subscription(
                        CompressedImage,
                        f"camera/{cam}/image_raw/compressed",
                        lambda msg, cam=cam: self._on_compressed(cam, msg),
                        qos_profile_sensor_data,
                        callback_group=sensors,
                    )
                )
            else:
                e.append(
                    self.create_subscription(
                        Image,
                        f"camera/{cam}/image_raw",
                        lambda msg, cam=cam: self._on_image(cam, msg),
                        qos_profile_sensor_data,
                        callback_group=sensors,
                    )
                )
        e.append(
            self.create_subscription(
                JointState, "joint_states", self._on_joints, qos_profile_sensor_data, callback_group=sensors
            )
        )
        e += self._subscribe_any_qos(Bool, "pedal", self._on_pedal, sensors)
        e += self._subscribe_any_qos(JointState, "teleop/joint_targets", self._on_teleop, sensors)
        safety = self.safety_group
        e += self._subscribe_any_qos(Bool, "estop", self._on_estop, safety, latched=True)
        e.append(
            self.create_service(StartEpisode, "~/start_episode", self._srv_start, callback_group=services)
        )
        e.append(self.create_service(StopEpisode, "~/stop_episode", self._srv_stop, callback_group=services))
        e.append(
            self.create_service(LabelEpisode, "~/label_episode", self._srv_label, callback_group=services)
        )
        # No std_srvs in this install: StopEpisode's `reason` says why (engage) or who reset; `abort` is ignored.
        e.append(self.create_service(StopEpisode, "~/estop", self._srv_estop, callback_group=safety))
        e.append(
            self.create_service(StopEpisode, "~/reset_estop", self._srv_reset_estop, callback_group=safety)
        )
        e.append(self.create_timer(1.0, self._status_tick, callback_group=status))
        self._wake_safety()

    def _subscribe_any_qos(
        self, msg_type, topic: str, callback: Callable, group, latched: bool = False
    ) -> list:
        """Reliable and best-effort subscriptions feeding `callback` once per message: publishers of
        either QoS are heard (a reliable-only subscription ignores best-effort publishers silently).
        `latched` adds a transient-local one, so a latching publisher's last value arrives even when
        it was published before this node (re)started: an e-stop held while the actor restarts."""
        dedupe = PublisherDedupe()

        def on_message(msg, info) -> None:
            gid = info.get("publisher_gid")
            seq = info.get("publication_sequence_number")
            if seq is None:
                seq = info.get("source_timestamp")
            if dedupe.accept(bytes(gid["data"]) if gid else None, seq):
                callback(msg)

        def best_effort_publisher(info) -> None:  # instead of rclpy's "no messages will be received" warning
            self.get_logger().info(
                f"best-effort publisher on '{topic}': heard on the best-effort subscription"
            )

        reliable, best_effort = (
            QoSProfile(depth=10, reliability=r, durability=QoSDurabilityPolicy.VOLATILE)
            for r in (QoSReliabilityPolicy.RELIABLE, QoSReliabilityPolicy.BEST_EFFORT)
        )
        subs = [
            self.create_subscription(
                msg_type,
                topic,
                on_message,
                reliable,
                callback_group=group,
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=best_effort_publisher),
            ),
            self.create_subscription(msg_type, topic, on_message, best_effort, callback_group=group),
        ]
        if latched:  # volatile publishers do not match it; they are heard on the two above
            history = QoSProfile(
                depth=1,
                reliability=QoSReliabilityPolicy.RELIABLE,
                durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
            )
            subs.append(
                self.create_subscription(
                    msg_type,
                    topic,
                    on_message,
                    history,
                    callback_group=group,
                    event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda info: None),
                )
            )
        return subs

    # --- inputs ----------------------------------------------------------------------
    def _bad_input(self, what: str, exc: Exception, input_name: str | None = None) -> None:
        self._input_errors += 1
        if input_name is not None:
            self._sync.reject(input_name, str(exc))
        self.get_logger().warning(f"dropping {what}: {exc}", throttle_duration_sec=2.0)

    def _on_image(self, cam: str, msg: Image) -> None:
        self._take_frame(
            cam,
            msg,
            lambda: rgb_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, self._expected_hw),
        )

    def _on_compressed(self, cam: str, msg: CompressedImage) -> None:
        self._take_frame(cam, msg, lambda: compressed_image(msg.format, msg.data, self._expected_hw))

    def _take_frame(self, cam: str, msg, convert: Callable[[], np.ndarray]) -> None:
        """Convert (decode), resize to the recording size, refuse squashing; then into the sync."""
        policy = self._policy
        policy_hw = (
            (policy.signature.image_height, policy.signature.image_width) if policy is not None else None
        )
        try:
            img = fit_frame(convert(), self._record_size, policy_hw)
        except InputError as exc:
            self._bad_input(f"camera/{cam} image", exc, cam)
            return
        self._sync.add(cam, stamp_s(msg.header.stamp), img)
        self._frames_received[cam] += 1

    def _on_joints(self, msg: JointState) -> None:
        """One JointState of possibly several sources (arm, gripper controllers): merged by name."""
        try:
            q, stamp = self._joints.add(msg.name, msg.position, stamp_s(msg.header.stamp))
        except JointsIncomplete as exc:  # another source has not published yet: a reason, not an error
            self._sync.reject(JOINTS_INPUT, str(exc))
            self.get_logger().info(f"waiting: {exc}", throttle_duration_sec=5.0)
            return
        except InputError as exc:
            self._bad_input("joint_states", exc, JOINTS_INPUT)
            return
        self._sync.add(JOINTS_INPUT, stamp, q)

    def _on_estop(self, msg: Bool) -> None:
        with self._lock:
            core = self._core
            if core is None:
                return
            was = core.estop.engaged
            now = self.now_s()
            ending = core.set_estop_input(bool(msg.data), now)
            engaged_now = core.estop.engaged and not was
            if engaged_now:
                self._hold_now(core, now)
        if engaged_now:
            self._after_estop(ending)

    def _hold_now(self, core: ActorCore, now: float) -> None:
        """The e-stop has just engaged (called under the lock, on the safety thread): the command
        output changes now, not at the next tick. The held command goes out at once (nothing if the
        actor was not commanding); every tick after this sends the hold, then nothing."""
        held = core.estop.command(now)
        if held is not None and self._active:
            self._publish_command(held)

    def _after_estop(self, ending: Ending | None) -> None:
        core = self._core
        if core is None:
            return
        aborted = (
            f"; episode {core.fsm.episode_id} aborted (failure, {ending.reason})"
            if ending is not None
            else ""
        )
        self.get_logger().error(
            f"E-STOP engaged: {core.estop.reason}{aborted}; holding "
            f"{core.estop.hold_s:g} s, then no commands until actor/reset_estop"
        )
        if ending is not None:
            self._request_policy()
        self._publish_episode_status(force=True)
        self._publish_diagnostics()

    def _on_pedal(self, msg: Bool) -> None:
        core = self._core
        if core is not None and core.pedal != bool(msg.data):
            core.set_pedal(bool(msg.data))

    def _on_teleop(self, msg: JointState) -> None:
        try:
            q = ordered_joints(msg.name, msg.position, "teleop/joint_targets", self._joints.names)
        except InputError as exc:
            self._bad_input("teleop target", exc)
            return
        core = self._core
        if core is not None:
            core.set_teleop_target(q, self.now_s())

    # --- the control tick ---------------------------------------------------------------
    def _tick(self) -> None:
        t0 = time.perf_counter()
        core, worker = self._core, self._worker
        if not self._active or core is None or worker is None:
            return
        now = self.now_s()
        self._last_tick_mono = time.monotonic()
        obs = self._sync.latest()
        with self._lock:
            res = core.tick(now, obs, worker.poll(), self._sync.newest_stamps())
            if res.command is not None:
                # Under the lock: an e-stop latched after this tick's step (its callback takes the
                # lock) comes after this command on the wire; no command of before it follows it.
                self._publish_command(res.command)
        if res.request is not None:
            worker.submit(res.request)
        for chunk in res.new_chunks:
            self._publish_chunk(chunk)
        if res.stale_inputs:
            why = self._sync.explain(now, core.stale_guard.max_age_s)
            self.get_logger().warning(
                f"holding: stale inputs {list(res.stale_inputs)}" + (f" ({why})" if why else ""),
                throttle_duration_sec=2.0,
            )
        if res.watchdog:
            self.get_logger().error(
                f"watchdog: {res.watchdog}; holding, re-planning from a fresh chunk",
                throttle_duration_sec=2.0,
            )
        if res.intervention_changed:
            self._engaged_since = now
            self._publish_intervention(core.pedal)
        if res.policy_fault:
            self._after_estop(res.ended)  # logs it once, ends the episode's status, ERROR diagnostics
        elif res.ended is not None:
            self._request_policy()
            self.get_logger().warning(
                f"episode {core.fsm.episode_id} ended: {res.ended.reason} ({res.ended.note})"
            )
        self._publish_episode_status(res)
        if time.perf_counter() - t0 > self._period:
            self._tick_overruns += 1

    def _publish_command(self, q: np.ndarray) -> None:
        if self._cmd_array:
            self._cmd_pub.publish(Float64MultiArray(data=q.tolist()))
            return
        dt = 1.0 / self._hz
        point = JointTrajectoryPoint(
            positions=q.tolist(), time_from_start=Duration(sec=int(dt), nanosec=int((dt % 1) * 1e9))
        )
        self._cmd_pub.publish(JointTrajectory(joint_names=list(self._joints.names), points=[point]))

    def _publish_chunk(self, r: InferenceResult) -> None:
        msg = ActionChunk()
        msg.header.stamp = time_msg(r.request.obs.stamp)
        msg.policy_version = r.policy_version
        msg.chunk_id = r.chunk_id
        msg.start_step = r.request.start_step
        msg.horizon = int(r.actions.shape[0])
        msg.joint_names = list(self._joints.names)
        msg.targets = r.actions.ravel().tolist()
        msg.inference_ms = float(r.latency_ms)
        self._chunk_pub.publish(msg)

    # --- status ----------------------------------------------------------------------
    def _publish_episode_status(self, res: TickResult | None = None, force: bool = False) -> None:
        core = self._core
        if core is None:
            return
        fsm = core.fsm
        label = EpisodeStatus.LABEL_NONE
        if fsm.ending is not None:
            label = (
                EpisodeStatus.LABEL_SUCCESS
                if fsm.ending.label is Label.SUCCESS
                else EpisodeStatus.LABEL_FAILURE
            )
        key = (fsm.state, fsm.episode_id, label, core.counters.interventions)
        if not force and key == self._last_status:
            return
        self._last_status = key
        msg = EpisodeStatus(
            robot_id=core.config.robot_id,
            episode_id=fsm.episode_id,
            state=int(fsm.state),
            task=fsm.task,
            instruction=fsm.instruction,
            step=core.episode_steps,
            label=label,
            interventions=core.counters.interventions,
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self._episode_pub.publish(msg)

    def _publish_policy_status(self) -> None:
        policy, core = self._policy, self._core
        if policy is None or core is None:
            return
        msg = PolicyStatus(
            robot_id=core.config.robot_id,
            version=policy.version,
            sha256=policy.sha256,
            loaded_at=time_msg(policy.loaded_at),
            execution_provider=policy.provider,
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self._policy_pub.publish(msg)

    def _publish_intervention(self, engaged: bool) -> None:
        self._intervention_pub.publish(
            InterventionState(engaged=engaged, source="pedal", since=time_msg(self._engaged_since))
        )

    def _status_tick(self) -> None:
        self._publish_episode_status(force=True)
        self._publish_diagnostics()

    def _on_stall(self, age_s: float) -> None:
        """`StallWatch` (its own thread): the wall-time control thread has not ticked for longer than
        `watchdog_control_stall_s`, now: logged and /diagnostics ERROR at once, not at the next 1 Hz
        status (which runs with the input callbacks). The core's watchdog holds and re-plans when the
        ticks resume; until then nothing is published."""
        self.get_logger().error(
            f"watchdog: control thread stalled: no tick for {age_s * 1e3:.0f} ms "
            f"(watchdog_control_stall_s {self.p('watchdog_control_stall_s'):g})"
        )
        self._publish_diagnostics()

    def tick_stats(self) -> dict[str, float]:
        loop = self._loop
        stats = loop.stats() if loop is not None else {}
        stats.pop("missed_ticks", None)  # the core counts missed steps for both timer kinds
        if loop is not None and loop.priority_note:
            stats["scheduling"] = loop.priority_note
        return stats

    def _publish_diagnostics(self) -> None:
        core, worker, rec = self._core, self._worker, self._recorder
        if core is None or worker is None or rec is None:
            return
        c = core.counters
        lat = np.asarray(worker.latencies_ms) if worker.latencies_ms else np.zeros(1)
        values = {
            "state": core.state.name.lower(),
            "active": self._active,
            "policy_version": core.policy_version,
            "ticks": c.ticks,
            "missed_ticks": c.missed_ticks,
            "policy_steps": c.policy_steps,
            "teleop_steps": c.teleop_steps,
            "hold_steps": sum(c.hold_steps.values()),
            **{f"hold_{k}": v for k, v in c.hold_steps.items()},
            "timeline_dry_events": core.scheduler.dry_events,
            "stale_chunks_discarded": c.stale_chunks,
            "failed_inferences": c.failed_inferences,
            "stale_events": c.stale_events,
            "inference_superseded": worker.superseded,
            "inference_p50_ms": float(np.percentile(lat, 50)),
            "inference_p99_ms": float(np.percentile(lat, 99)),
            "position_clamps": core.safety.position_clamps,
            "velocity_clamps": core.safety.velocity_clamps,
            "nonfinite_holds": core.safety.nonfinite_holds,
            "input_errors": self._input_errors,
            **{f"frames_received_{cam}": n for cam, n in self._frames_received.items()},
            "unsynced_sets": self._sync.unsynced_sets,
            "recorder_dropped_steps": rec.dropped_steps,
            "recorder_pending": rec.pending,
            "recorder_errors": rec.errors,
            "tick_overruns": self._tick_overruns,
            **self.tick_stats(),
            **self._safety_values(),
            **self.provider_values(),
            "unknown_instruction_episodes": self._instructions.episodes,
            "unknown_instruction_refused": self._instructions.refused,
            "unknown_instructions": self._instructions.distinct,
            "unknown_instruction_last": self._instructions.last,
            **self.spool_values(),
        }
        errors = self._safety_errors(values)
        problems = []
        if rec.dropped_steps or rec.errors:
            problems.append("recorder lost steps")
        if core.scheduler.dry_events:
            problems.append("timeline ran dry")
        if values.get("spool_dropped_episodes") or values.get("spool_over_cap"):
            problems.append(
                f"spool full: {values.get('spool_dropped_episodes')} unsent episodes dropped, "
                f"{values.get('spool_over_cap')} frames over its cap (is the bridge reachable?)"
            )
        if c.hold_steps.get("stale_input"):
            problems.append("stale inputs")
        if self._policy is not None and self._policy.provider_choice.fallback:
            choice = self._policy.provider_choice
            problems.append(f"inference on {choice.active}, not the preferred {choice.preferred}")
        if self._unknown_running and core.state is EpisodeState.RUNNING:
            problems.append(f"episode runs instruction {self._unknown_running!r} unknown to its policy")
        if any(core.watchdog.trips.values()):
            problems.append(f"watchdog tripped ({core.watchdog.last_trip})")
        if values.get("awaiting_label_s") is not None:
            problems.append(
                f"episode {core.fsm.episode_id} awaiting its label for {values['awaiting_label_s']} s"
            )
        level = (
            DiagnosticStatus.ERROR if errors else DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        )
        status = DiagnosticStatus(
            level=level,
            name=f"{core.config.robot_id}/actor",
            hardware_id=core.config.robot_id,
            message="; ".join(errors + problems) or "ok",
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def spool_values(self) -> dict[str, object]:
        """The bridge sink's spool sizes and drop counters (spool_*), for diagnostics; {} otherwise.

        Here and not only in the bridge's fleet status, because a full spool means the bridge
        is not hearing from this robot."""
        sinks = self._sinks
        if sinks is None or sinks.stats is None:
            return {}
        return {k: v for k, v in sinks.stats().items() if k.startswith("spool_")}

    def _safety_values(self) -> dict[str, object]:
        """E-stop, watchdog and label-wait state for diagnostics (also read by tests and operators)."""
        core = self._core
        if core is None:
            return {}
        now = self.now_s()
        stop, dog, fsm = core.estop, core.watchdog, core.fsm
        tick_age = time.monotonic() - self._last_tick_mono if self._last_tick_mono is not None else None
        wait, left = fsm.label_wait_s(now), fsm.label_deadline_in_s(now)
        return {
            "estop": stop.engaged,
            "estop_reason": stop.reason,
            "estop_engagements": stop.engagements,
            "estop_input_engaged": stop.input_engaged,
            "policy_faults": core.counters.policy_faults,
            "watchdog_control_trips": dog.trips["control"],
            "watchdog_inference_trips": dog.trips["inference"],
            "watchdog_last_trip": dog.last_trip,
            "last_tick_age_ms": None if tick_age is None else round(tick_age * 1e3, 1),
            "awaiting_label_s": None if wait is None else round(wait, 1),
            "label_deadline_in_s": None if left is None else round(left, 1),
        }

    def _safety_errors(self, values: dict[str, object]) -> list[str]:
        """What makes the actor's diagnostics ERROR: an engaged e-stop, a control thread stalled now."""
        errors = []
        core = self._core
        if core is not None and core.estop.engaged:
            errors.append(f"E-STOP engaged ({core.estop.reason}); reset with actor/reset_estop")
        age = values.get("last_tick_age_ms")
        bound = float(self.p("watchdog_control_stall_s"))
        wall = self._loop is not None  # on /clock a paused simulator stops ticks, rightly
        if self._active and wall and isinstance(age, float) and bound > 0 and age > bound * 1e3:
            errors.append(f"control thread stalled: no tick for {age:.0f} ms")
        return errors

    # --- services --------------------------------------------------------------------
    def _request_policy(self) -> None:
        """Activation or episode end: let the fetcher look for a newer policy (never blocks)."""
        if self._switch is not None:
            self._switch.request()

    def _maybe_swap_policy(self) -> str:
        """At an episode start: run the prepared newer policy if `PolicySwitch` says so. Returns a note."""
        core, switch = self._core, self._switch
        with self._lock:
            if core is None or switch is None or self._worker is None:
                return ""
            policy = switch.at_boundary(core.fsm.can_swap_policy, takeover=core.pedal)
            if policy is None:
                return ""
            self._worker.set_policy(policy)
            core.set_policy_version(policy.version)
            self._policy = policy
        self.get_logger().info(f"policy swapped to {policy.version} ({policy.provider})")
        self._log_provider(policy)
        self._publish_policy_status()
        switch.swapped(policy)
        return f"; policy {policy.version}"

    def _runtime_config(self) -> RuntimeConfig:
        """How policies are loaded and checked: here and for every downloaded one (PolicySwitch)."""
        return RuntimeConfig.for_robot(
            self.robot_description(),
            prefer_cuda=bool(self.p("prefer_cuda")),
            intra_op_threads=int(self.p("inference_threads")),
            jpeg_quality=int(self.p("jpeg_quality")),
            control_hz=self.control_hz(),
            camera_hw=self._record_hw() or self._camera_hw(),
        )

    def _srv_start(self, req: StartEpisode.Request, resp: StartEpisode.Response) -> StartEpisode.Response:
        core = self._core
        if core is None or not self._active:
            resp.accepted, resp.message = False, "actor is not active"
            return resp
        note = self._maybe_swap_policy()
        policy = self._policy
        verdict = (
            self._instructions.check(req.instruction, policy.signature.instructions, policy.version)
            if policy is not None
            else None
        )
        if verdict is not None and verdict.refuse:
            self.get_logger().warning(verdict.message)
            resp.accepted, resp.message = False, verdict.message
            return resp
        episode_id = new_episode_id(core.config.robot_id)
        try:
            with self._lock:
                core.start_episode(episode_id, req.task, req.instruction, self.now_s())
        except TransitionError as exc:
            resp.accepted, resp.message = False, str(exc)
            return resp
        resp.accepted, resp.episode_id = True, episode_id
        resp.message = f"started {req.task}{note}"
        self.get_logger().info(f"episode {episode_id} started: {req.task} / {req.instruction!r}")
        self._unknown_running = ""
        if verdict is not None and not verdict.known:
            self._instructions.started(verdict)
            self._unknown_running = req.instruction
            resp.message += f"; {verdict.message}"
            if verdict.first_time:
                self.get_logger().warning(
                    f"UNKNOWN INSTRUCTION: {verdict.message} (logged once per instruction)"
                )
        self._publish_episode_status()
        return resp

    def _episode_transition(self, resp, transition):
        """Run an episode transition under the lock and fill `resp`; returns (accepted, result)."""
        core = self._core
        if core is None:
            resp.accepted, resp.message = False, "actor is not configured"
            return False, None
        try:
            with self._lock:
                episode_id = core.fsm.episode_id
                result = transition(core)
        except TransitionError as exc:
            resp.accepted, resp.message = False, str(exc)
            return False, None
        resp.accepted, resp.episode_id = True, episode_id
        return True, result

    def _srv_stop(self, req: StopEpisode.Request, resp: StopEpisode.Response) -> StopEpisode.Response:
        now = self.now_s()
        ok, ending = self._episode_transition(
            resp, lambda core: core.stop_episode(req.abort, req.reason, now)
        )
        if not ok:
            return resp
        resp.message = "aborted (failure)" if ending is not None else "stopped; awaiting label"
        core = self._core
        left = core.fsm.label_deadline_in_s(now) if core is not None else None
        if ending is not None:
            self._request_policy()
        elif left is not None:
            resp.message += f" (stored without a label in {left:.0f} s: {core.fsm.label_timeout_reason})"
        self._publish_episode_status()
        return resp

    def _srv_estop(self, req: StopEpisode.Request, resp: StopEpisode.Response) -> StopEpisode.Response:
        """Engage the e-stop (latched); `reason` is recorded. Accepted even if it already was engaged."""
        with self._lock:
            core = self._core
            if core is None:
                resp.accepted, resp.message = False, "actor is not configured"
                return resp
            episode_id = core.fsm.episode_id if core.state is EpisodeState.RUNNING else ""
            was = core.estop.engaged
            now = self.now_s()
            ending = core.engage_estop(req.reason or "estop service", now)
            if not was:
                self._hold_now(core, now)
        resp.accepted, resp.episode_id = True, episode_id if ending is not None else ""
        resp.message = (
            f"e-stop already engaged ({core.estop.reason})"
            if was
            else "e-stop engaged" + (f"; episode {episode_id} aborted" if ending is not None else "")
        )
        if not was:
            self._after_estop(ending)
        return resp

    def _srv_reset_estop(self, req: StopEpisode.Request, resp: StopEpisode.Response) -> StopEpisode.Response:
        """Clear the e-stop (the explicit operator action); refused while the e-stop input is engaged."""
        ok, reason = self._episode_transition(resp, lambda core: core.reset_estop())
        resp.episode_id = ""
        if ok:
            resp.message = f"e-stop reset (it was: {reason})"
            self.get_logger().warning(
                f"e-stop reset{f' by {req.reason}' if req.reason else ''} (it was: {reason})"
            )
            self._publish_diagnostics()
        return resp

    def _srv_label(self, req: LabelEpisode.Request, resp: LabelEpisode.Response) -> LabelEpisode.Response:
        ok, ending = self._episode_transition(resp, lambda core: core.label_episode(req.success, req.note))
        if not ok:
            return resp
        resp.message = f"labelled {ending.label.value}"
        self._request_policy()
        self._publish_episode_status()
        return resp


class StopSignal:
    """SIGINT/SIGTERM as a request to stop, never an exception.

    rclpy's own handlers shut the context down from a signal while the executor may be taking a
    message and let KeyboardInterrupt hit whatever Python code runs: now and then inside rclpy's
    message conversion in `take_message`, which turned it into `RuntimeError: Unable to convert call
    argument '0' to Python object` and exit code 1. Here a signal only sets an event that the spin
    loop checks; the node is then stopped in order (executor, episode and recorder, node, context).
    The first signal also arms a last-resort exit `timeout_s` later, whatever is still running.
    """

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.event = threading.Event()
        self.at: float | None = None  # monotonic time of the first signal
        self.name = ""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        if self.event.is_set():
            return  # already stopping, within the bound
        self.at, self.name = time.monotonic(), signal.Signals(signum).name
        self.event.set()
        last_resort = threading.Timer(self.timeout_s, self._force_exit)
        last_resort.daemon = True
        last_resort.start()

    def left(self) -> float:
        """Seconds left of the shutdown bound (the whole bound before any signal)."""
        return self.timeout_s if self.at is None else max(0.0, self.at + self.timeout_s - time.monotonic())

    def _force_exit(self) -> None:
        sys.stderr.write(
            f"actor: still stopping {self.timeout_s:g} s after {self.name} (shutdown_timeout_s): exiting now; "
            "an episode not stored yet is stored from its journal/spool at the next start\n"
        )
        sys.stderr.flush()
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    stop = StopSignal(float(PARAMETERS["shutdown_timeout_s"][0]))  # before anything slow
    rclpy.init(args=argv if argv is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    node = ActorNode()
    stop.timeout_s = float(node.p("shutdown_timeout_s"))
    log = node.get_logger()
    rt = int(node.p("process_realtime_priority"))
    if rt > 0:  # before executor, worker and recorder threads exist, so they inherit it
        log.info(f"process scheduling: {set_fifo_priority(rt)}")
    # One executor thread for the inputs: a thread pool multiplies GIL contention with the control
    # thread (measured: p99 tick jitter 15-28 ms with MultiThreadedExecutor(4) vs 0-1.3 ms with this);
    # and one for the e-stop, which must not wait behind an input callback.
    executor = GroupExecutor(lambda group: group is not node.safety_group)
    executor.add_node(node)
    safety = SafetyThread(node)
    safety.start()
    try:
        if node.p("autostart") and not stop.event.is_set():
            node.trigger_configure()
            if node._core is None:
                log.error("autostart: configure failed; staying unconfigured")
            elif not stop.event.is_set():
                node.trigger_activate()
        while not stop.event.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        if stop.event.is_set():
            log.info(f"{stop.name}: stopping (bound: shutdown_timeout_s {stop.timeout_s:g} s)")
        # No callback runs from here on: nothing takes a message while the node is torn down.
        safety.stop(timeout=min(0.5, stop.left()))
        executor.shutdown(timeout_sec=min(0.5, stop.left()))
        # 0.8 s of the bound stay for the node, the context and the interpreter's exit
        unfinished = node.shutdown_within(max(0.0, stop.left() - 0.8)) if node._core is not None else []
        for what in unfinished:
            log.warning(
                f"shutdown: {what} did not finish in time; an episode not stored yet is stored from "
                "its journal/spool at the next start"
            )
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
