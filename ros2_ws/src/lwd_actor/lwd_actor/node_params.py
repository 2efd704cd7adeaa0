"""The actor node's parameters: declared once here (`PARAMETERS`), read and checked at configure.

`PARAMETERS` is the one declaration: docs/actor.md's parameter table and config/actor.yaml are
generated from it (`python -m lwd_actor.params_doc`). `NodeParams` reads them from the node and
turns them into what configure needs (`Configuration`): the robot description, the core's
`ActorConfig`, the policy (loaded and checked) and the sink. Invalid values raise `ValueError`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from lwd_actor.core.actor import ActorConfig, default_robot_id
from lwd_actor.core.episode_fsm import LABEL_TIMEOUT_REASONS
from lwd_actor.core.instructions import UnknownInstructions
from lwd_actor.core.observation import aspect_mismatch
from lwd_actor.core.policy_runtime import OnnxPolicy, RuntimeConfig
from lwd_actor.core.safety import SafetyConfig
from lwd_actor.core.watchdog import WatchdogConfig
from lwd_actor.sinks import SinkBundle, make_sink
from lwd_common.episode import EpisodeKind
from lwd_common.execution.scheduler import MergeMode, SchedulerConfig
from lwd_description.robot import DEFAULT_ROBOT, JointLimits, RobotDescription, load_joint_limits, load_robot

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


def declare(node: Node) -> None:
    """Declare every parameter of `PARAMETERS` on `node`, with its default and description."""
    for name, (default, description) in PARAMETERS.items():
        node.declare_parameter(name, default, ParameterDescriptor(description=description))


@dataclass
class Configuration:
    """What configure reads from the parameters: checked, with the policy loaded and the sink open."""

    robot_id: str
    robot: RobotDescription
    hz: float
    camera_hw: tuple[int, int] | None  # camera size as configured
    record_hw: tuple[int, int] | None  # frames resized to this on receipt
    compressed: set[str]  # cameras read as CompressedImage
    instructions: UnknownInstructions
    limits: JointLimits
    policy: OnnxPolicy
    config: ActorConfig
    sinks: SinkBundle


class NodeParams:
    """The node's parameters, read and checked (the robot description loaded once per value)."""

    def __init__(self, node: Node):
        self._node = node
        self._robot: RobotDescription | None = None  # the `robot` parameter's description, once loaded

    def __call__(self, name: str):
        return self._node.get_parameter(name).value

    def robot_id(self) -> str:
        """The configured robot_id, else one derived from the namespace (never shared by two robots)."""
        return str(self("robot_id")) or default_robot_id(self._node.get_namespace(), socket.gethostname())

    def robot_description(self) -> RobotDescription:
        """The robot description the `robot` parameter names (loaded once per value)."""
        source = str(self("robot")) or DEFAULT_ROBOT
        if self._robot is None or source not in (self._robot.name, str(self._robot.source)):
            self._robot = load_robot(source)
        return self._robot

    def control_hz(self) -> float:
        """The `control_hz` parameter, else (0) the robot description's rate."""
        hz = float(self("control_hz"))
        if hz < 0:
            raise ValueError(f"control_hz must be > 0 (or 0: the robot description's), not {hz:g}")
        return hz or self.robot_description().control_hz

    def camera_hw(self) -> tuple[int, int] | None:
        h, w = int(self("image_height")), int(self("image_width"))
        return (h, w) if h > 0 and w > 0 else None

    def record_hw(self) -> tuple[int, int] | None:
        h, w = int(self("record_height")), int(self("record_width"))
        if (h > 0) != (w > 0):
            raise ValueError(f"record_height and record_width go together (got {h} x {w})")
        return (h, w) if h > 0 else None

    def compressed_cameras(self) -> set[str]:
        text = str(self("compressed_cameras")).strip()
        cameras = self.robot_description().camera_names
        names = set(cameras) if text == "all" else {n.strip() for n in text.split(",") if n.strip()}
        unknown = names - set(cameras)
        if unknown:
            raise ValueError(
                f"compressed_cameras: unknown cameras {sorted(unknown)} (cameras: {list(cameras)} or 'all')"
            )
        return names

    def frame_sizes(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """(camera size, recording size) as configured; a recording size that would squash refused."""
        camera, record = self.camera_hw(), self.record_hw()
        if camera is not None and record is not None:
            why = aspect_mismatch(camera, record, "the recording size (record_height x record_width)")
            if why:
                raise ValueError(why)
        return camera, record

    def runtime_config(self) -> RuntimeConfig:
        """How policies are loaded and checked: here and for every downloaded one (PolicySwitch)."""
        return RuntimeConfig.for_robot(
            self.robot_description(),
            prefer_cuda=bool(self("prefer_cuda")),
            intra_op_threads=int(self("inference_threads")),
            jpeg_quality=int(self("jpeg_quality")),
            control_hz=self.control_hz(),
            camera_hw=self.record_hw() or self.camera_hw(),
        )

    def configuration(self) -> Configuration:
        """Everything configure reads, checked; raises `PolicyError`, `ValueError` or `OSError`."""
        p = self
        robot_id = self.robot_id()
        robot = self.robot_description()
        hz = self.control_hz()
        if p("command_interface") not in (COMMAND_ARRAY, COMMAND_TRAJECTORY):
            raise ValueError(f"command_interface must be {COMMAND_ARRAY!r} or {COMMAND_TRAJECTORY!r}")
        camera_hw, record_hw = self.frame_sizes()
        compressed = self.compressed_cameras()
        instructions = UnknownInstructions(str(p("unknown_instruction")))
        outcome = str(p("label_deadline_outcome"))
        if outcome not in LABEL_OUTCOMES:
            raise ValueError(
                f"label_deadline_outcome must be one of {sorted(LABEL_OUTCOMES)}, not {outcome!r}"
            )
        urdf = p("urdf_path") or None
        limits = load_joint_limits(urdf, robot.joint_names) if urdf else robot.limits
        if not p("policy_path"):
            raise ValueError("policy_path is empty: the actor needs an ONNX policy")
        policy = OnnxPolicy(p("policy_path"), self.runtime_config())
        config = ActorConfig(
            robot_id=robot_id,
            control_hz=hz,
            episode_time_limit_s=float(p("episode_time_limit_s")),
            stale_input_timeout_s=float(p("stale_input_timeout_s")),
            hold_when_idle=bool(p("hold_when_idle")),
            episode_kind=EpisodeKind(p("episode_kind")),
            scheduler=SchedulerConfig(
                int(p("request_threshold")),
                MergeMode(p("merge")),
                int(p("blend_steps")),
                float(p("ensemble_decay")),
            ),
            safety=SafetyConfig(control_hz=hz, velocity_scale=float(p("velocity_scale"))),
            watchdog=WatchdogConfig(
                float(p("watchdog_control_stall_s")), float(p("watchdog_inference_stall_s"))
            ),
            estop_hold_s=float(p("estop_hold_s")),
            label_deadline_s=float(p("label_deadline_s")),
            label_timeout_reason=LABEL_OUTCOMES[outcome],
            joint_names=robot.joint_names,
            cameras=robot.camera_names,
            chunk_horizon=robot.chunk_horizon,
        )
        sinks = make_sink(
            str(p("sink")),
            robot_id,
            str(p("store_dir")),
            str(p("bridge_endpoint")),
            str(p("spool_dir")),
            str(p("curve_secret_key_file")),
            str(p("bridge_public_key_file")),
            robot=robot,
            spool_caps_mib=(
                int(p("spool_max_mib")),
                int(p("spool_rejected_max_mib")),
                int(p("spool_orphaned_max_mib")),
            ),
        )
        return Configuration(
            robot_id, robot, hz, camera_hw, record_hw, compressed, instructions, limits, policy, config, sinks
        )
