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

The node only wires; each job has its module: `node_params` (the declaration, reading and
checking), `node_inputs` (subscriptions, QoS, decoding), `node_outputs` (publishers),
`node_control` (the control thread and its tick; `sim_time_loop` on /clock), `node_safety` (the
e-stop reaction, the stall report), `node_services`, `node_policy` (policy updates),
`node_diagnostics` and `stop_signal`. The ROS-free core (`lwd_actor.core`) keeps every decision.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import replace

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

from lwd_actor.core.actor import ActorCore
from lwd_actor.core.control_loop import set_fifo_priority
from lwd_actor.core.episode_fsm import EpisodeState
from lwd_actor.core.inference_worker import InferenceWorker
from lwd_actor.core.policy_runtime import OnnxPolicy, PolicyError
from lwd_actor.core.policy_switch import PolicySource, PolicySwitch
from lwd_actor.core.recorder import EpisodeRecorder
from lwd_actor.core.watchdog import EStop
from lwd_actor.executors import GroupExecutor, SafetyThread
from lwd_actor.node_control import NodeControl
from lwd_actor.node_diagnostics import NodeDiagnostics
from lwd_actor.node_inputs import NodeInputs, stamp_s
from lwd_actor.node_outputs import NodeOutputs, time_msg
from lwd_actor.node_params import (
    COMMAND_ARRAY,
    COMMAND_TRAJECTORY,
    LABEL_OUTCOMES,
    PARAMETERS,
    NodeParams,
    declare,
)
from lwd_actor.node_policy import NodePolicy
from lwd_actor.node_safety import NodeSafety
from lwd_actor.node_services import NodeServices
from lwd_actor.sinks import SinkBundle
from lwd_actor.stop_signal import StopSignal

__all__ = [
    "COMMAND_ARRAY",
    "COMMAND_TRAJECTORY",
    "LABEL_OUTCOMES",
    "PARAMETERS",
    "ActorNode",
    "StopSignal",
    "main",
    "stamp_s",
    "time_msg",
]


class ActorNode(LifecycleNode):
    """The actor's lifecycle node: owns the core and its workers, wires the node_* modules to them."""

    def __init__(self, policy_source: PolicySource | None = None, **kwargs):
        super().__init__("actor", **kwargs)
        declare(self)
        self.policy_source = policy_source  # set by integrators; else the sink's (the bridge's fetcher)
        # Serialises the core between the control tick, the e-stop and the services.
        self._lock = threading.RLock()
        # The e-stop (topic, services): served on their own thread by `main` (`SafetyThread`), never
        # behind an input callback. One group: its callbacks never run at once.
        self.safety_group = MutuallyExclusiveCallbackGroup()
        # The executor serving `safety_group` on its own thread, if any (`SafetyThread`): woken when
        # the group's entities change (it is not the node's executor, which rclpy wakes itself).
        self.safety_executor: Executor | None = None
        self._core: ActorCore | None = None
        self._worker: InferenceWorker | None = None
        self._recorder: EpisodeRecorder | None = None
        self._sinks: SinkBundle | None = None
        self._policy: OnnxPolicy | None = None
        self._switch: PolicySwitch | None = None
        self._entities: list = []
        self._active = False
        self._hz = 0.0  # the control rate, set at configure
        self._kept_estop: EStop | None = None  # an engaged e-stop carried across cleanup -> configure
        # One job each; every one uses this node's lock and callback groups.
        self.params = NodeParams(self)
        self.inputs = NodeInputs(self)
        self.outputs = NodeOutputs(self)
        self.control = NodeControl(self)
        self.safety = NodeSafety(self)
        self.servers = NodeServices(self)
        self.policy_updates = NodePolicy(self)
        self.diagnostics = NodeDiagnostics(self)

    def p(self, name: str):
        return self.params(name)

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def robot_id(self) -> str:
        """The configured robot_id, else one derived from the namespace (never shared by two robots)."""
        return self.params.robot_id()

    # --- lifecycle -----------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            c = self.params.configuration()
        except (PolicyError, ValueError, OSError) as exc:
            log.error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        policy, sinks, robot = c.policy, c.sinks, c.robot
        self._sinks = sinks
        self.servers.instructions = c.instructions
        self._switch = PolicySwitch(
            policy.version,
            self.policy_source or sinks.policy_source,
            self.params.runtime_config(),
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
        self._core = ActorCore(c.config, c.limits, self._recorder, policy.version)
        if self._kept_estop is not None:  # a cleanup is not a reset: the latch survives reconfiguration
            self._core.estop = replace(self._kept_estop, hold_s=c.config.estop_hold_s, hold_command=None)
            log.error(f"E-STOP still engaged ({self._kept_estop.reason}): reset with actor/reset_estop")
            self._kept_estop = None
        self.inputs.configure(c, float(self.p("sync_slop_s")), float(self.p("stale_input_timeout_s")))
        self._hz = c.hz
        self._core.input_report = self.inputs.explain
        self._create_entities()
        for line in sinks.recovered:
            log.warning(f"recovered an unfinished episode of an earlier run: {line}")
        log.info(
            f"configured: robot {c.robot_id} ({robot.name}: {robot.num_joints} joints, cameras "
            f"{', '.join(robot.camera_names) or 'none'}), policy {policy.version} ({policy.provider}, "
            f"{policy.signature.image_height}x{policy.signature.image_width}), sink {sinks.describe}, "
            f"{c.hz:g} Hz, commands as {self.p('command_interface')}"
        )
        self.policy_updates.log_provider(policy)
        self.outputs.policy_status()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.control.last_tick_mono = None  # a tick of before a deactivation is no stall of this activation
        self._active = True
        how = self.control.start(self._hz)
        self.get_logger().info(f"active: control loop running ({how})")
        self.policy_updates.request()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self.control.stop()
        with self._lock:
            if self._core is not None and self._core.state is EpisodeState.RUNNING:
                self._core.stop_episode(abort=True, reason="actor deactivated")
                self.get_logger().warning("deactivated during an episode: aborted (recorded as failure)")
        if self.context.ok():  # not after Ctrl-C: the context is gone, the episode is still recorded
            self.outputs.episode_status(force=True)
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
        e = self._entities
        e += self.outputs.create(str(self.p("command_interface")), self._hz, self.inputs.joints.names)
        e.append(self.diagnostics.create_publisher())
        e += self.inputs.subscribe(sensors, self.safety_group, self.safety.on_input)
        e += self.servers.create(services, self.safety_group)
        e.append(self.diagnostics.create_timer(status))
        self._wake_safety()


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
