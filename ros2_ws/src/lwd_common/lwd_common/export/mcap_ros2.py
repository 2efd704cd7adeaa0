"""Episodes as MCAP files with ROS 2 message schemas (one `<episode_id>.mcap` per episode).

Why MCAP/ROS 2: the tools people already use on robot data (Foxglove, `ros2 bag play`, rosbags,
PlotJuggler) read it without lwd code, and the topics are the ones the robot itself publishes
(`lwd_actor.actor_node`), so a replayed episode looks like the live robot. The file has the `ros2`
profile, CDR-encoded messages and `ros2msg` schemas: the `.msg` text of each type followed by its
dependencies, each after a `=====` line and `MSG: pkg/Type` (rosbag2's concatenated format, which
mcap-ros2-support and rosbags parse). Standard types are defined below (the `.msg` files of the ROS
2 message packages without their comments; a test compares them with the installed ones); lwd_msgs
types are read from their `.msg` files so the schema is exactly what the robot builds.

Topics (`<r>` = the episode's robot id; all stamps are the episode's step times, see TOPICS):
camera frames as the recorded JPEG bytes (never re-encoded), joint states and executed commands
(named and sized by the episode's own `meta.joint_names`, so any robot's episodes export),
intervention state and episode status on change, the label at the end, and one `step_info` JSON
per step with what ROS types cannot hold (action source incl. safety holds, chunk id, policy
version). An MCAP metadata record `lwd_episode` carries the episode's meta and outcome.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mcap.records import Schema
from mcap_ros2.writer import Writer

from lwd_common.episode import ActionSource, Episode, Label, meta_to_dict, outcome_to_dict
from lwd_common.export import ExportError, Progress, episode_robot, load_episode
from lwd_common.store import EpisodeStore
from lwd_description.robot import CONTROL_HZ

# Standard ROS 2 definitions (rosidl .msg syntax, comments dropped, package-relative types qualified).
STANDARD_MSGDEFS: dict[str, str] = {
    "builtin_interfaces/Time": "int32 sec\nuint32 nanosec\n",
    "std_msgs/Header": "builtin_interfaces/Time stamp\nstring frame_id\n",
    "std_msgs/String": "string data\n",
    "std_msgs/MultiArrayDimension": "string label\nuint32 size\nuint32 stride\n",
    "std_msgs/MultiArrayLayout": "std_msgs/MultiArrayDimension[] dim\nuint32 data_offset\n",
    "std_msgs/Float64MultiArray": "std_msgs/MultiArrayLayout layout\nfloat64[] data\n",
    "sensor_msgs/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data\n",
    "sensor_msgs/JointState": (
        "std_msgs/Header header\nstring[] name\nfloat64[] position\nfloat64[] velocity\nfloat64[] effort\n"
    ),
}
LWD_MSGS = "lwd_msgs"
_SEPARATOR = "=" * 80
_CONSTANT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*=")
_PRIMITIVES = {
    "bool",
    "byte",
    "char",
    "float32",
    "float64",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "string",
    "wstring",
}

# Topic suffix under /<robot_id>/ -> ROS 2 type; `{camera}` is filled per camera.
TOPICS: dict[str, str] = {
    "camera/{camera}/image_raw/compressed": "sensor_msgs/msg/CompressedImage",  # every step, header = step stamp
    "joint_states": "sensor_msgs/msg/JointState",  # every step: measured positions, meta.joint_names
    "joint_commands": "std_msgs/msg/Float64MultiArray",  # every step: executed joint-position target
    "intervention_state": "lwd_msgs/msg/InterventionState",  # first step and each change of engaged
    "episode_status": "lwd_msgs/msg/EpisodeStatus",  # RUNNING at start and per intervention, DONE at end
    "episode_label": "std_msgs/msg/String",  # once, at the end: JSON label, reason, task, ...
    "step_info": "std_msgs/msg/String",  # every step: JSON step, source, chunk_id, policy_version
}
# EpisodeStatus constants (lwd_msgs/msg/EpisodeStatus.msg).
STATUS_RUNNING, STATUS_DONE = 1, 3
LABEL_CODES = {Label.SUCCESS: 1, Label.FAILURE: 2}
IMAGE_FORMAT = "jpeg"  # sensor_msgs/CompressedImage.format of the recorded frames


def robot_namespace(robot_id: str) -> str:
    """The robot id as a ROS 2 name token (letters, digits, `_`; not starting with a digit), as the fleet uses it."""
    token = re.sub(r"[^A-Za-z0-9_]", "_", robot_id) or "robot"
    return f"r_{token}" if token[0].isdigit() else token


def topic_name(robot_id: str, suffix: str, camera: str = "") -> str:
    return f"/{robot_namespace(robot_id)}/" + suffix.format(camera=camera)


def lwd_msgs_dirs() -> list[Path]:
    """Where lwd_msgs' .msg files may be: the source tree beside this package, then installed share/ dirs."""
    here = Path(__file__).resolve()
    dirs = [here.parents[3] / LWD_MSGS / "msg", Path(sys.prefix) / "share" / LWD_MSGS / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / LWD_MSGS / "msg")
    return dirs


def _msg_text(name: str) -> str:
    """The .msg text of `pkg/Type` (standard table or lwd_msgs files)."""
    if name in STANDARD_MSGDEFS:
        return STANDARD_MSGDEFS[name]
    pkg, _, typ = name.partition("/")
    if pkg == LWD_MSGS:
        for d in lwd_msgs_dirs():
            f = d / f"{typ}.msg"
            if f.is_file():
                return f.read_text()
        raise ExportError(
            f"cannot find {typ}.msg of lwd_msgs (looked in {', '.join(map(str, lwd_msgs_dirs()))})"
        )
    raise ExportError(f"no message definition for {name}")


def _field_types(text: str, pkg: str) -> list[str]:
    """Non-primitive field types of a .msg text as `pkg/Type` (constants and comments skipped)."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        typ, rest = line.split(None, 1)
        if _CONSTANT.match(rest):  # `uint8 IDLE=0` (constants are primitive)
            continue
        base = re.sub(r"\[.*\]$", "", typ)
        base = re.sub(r"<=\d+$", "", base)
        if base in _PRIMITIVES:
            continue
        if base == "Header":
            base = "std_msgs/Header"
        parts = base.split("/")
        out.append(f"{parts[0]}/{parts[-1]}" if len(parts) > 1 else f"{pkg}/{base}")
    return out


def msgdef(datatype: str) -> str:
    """rosbag2-style concatenated definition of `pkg/msg/Type`: its text, then each dependency once."""
    pkg, _, typ = datatype.partition("/msg/")
    root = f"{pkg}/{typ}"
    text = _msg_text(root)
    seen: list[str] = []
    stack = list(reversed(_field_types(text, pkg)))
    while stack:
        dep = stack.pop()
        if dep in seen:
            continue
        seen.append(dep)
        stack.extend(reversed(_field_types(_msg_text(dep), dep.split("/")[0])))
    parts = [text.rstrip("\n")]
    for dep in seen:
        parts.append(f"{_SEPARATOR}\nMSG: {dep}\n{_msg_text(dep).rstrip(chr(10))}")
    return "\n".join(parts) + "\n"


def _ns(stamp: float) -> int:
    return int(round(float(stamp) * 1e9))


def _time(ns: int) -> dict[str, int]:
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def _header(ns: int, frame_id: str = "") -> dict[str, Any]:
    return {"stamp": _time(ns), "frame_id": frame_id}


def label_json(ep: Episode) -> str:
    """The `episode_label` payload: what the operator decided and what the episode was."""
    o, m = ep.outcome, ep.meta
    return json.dumps(
        {
            "episode_id": m.episode_id,
            "robot_id": m.robot_id,
            "label": o.label.value,
            "success": ep.success,
            "reason": o.reason,
            "note": o.note,
            "subtask_score": o.subtask_score,
            "num_steps": ep.num_steps,
            "task": m.task,
            "instruction": m.instruction,
            "kind": m.kind.value,
            "interventions": intervention_segments(ep),
            "policy_versions": list(ep.policy_versions),
        }
    )


def intervention_segments(ep: Episode) -> int:
    """Number of runs of teleoperated steps (what EpisodeStatus.interventions counts on the robot)."""
    mask = ep.intervention_mask.astype(int)
    return int(((mask[1:] - mask[:-1]) == 1).sum() + (mask[:1] == 1).sum()) if len(mask) else 0


def write_episode(ep: Episode, path: Path) -> dict[str, int]:
    """Write one episode to `path` (.mcap); returns messages per topic."""
    ep.validate()
    robot = ep.meta.robot_id
    counts: dict[str, int] = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f, Writer(f) as w:
            schemas: dict[str, Schema] = {}

            def put(topic: str, datatype: str, msg: dict[str, Any], ns: int) -> None:
                if datatype not in schemas:
                    schemas[datatype] = w.register_msgdef(datatype, msgdef(datatype))
                w.write_message(
                    topic, schemas[datatype], msg, log_time=ns, publish_time=ns, sequence=counts.get(topic, 0)
                )
                counts[topic] = counts.get(topic, 0) + 1

            meta = {k: json.dumps(v, default=_jsonable) for k, v in meta_to_dict(ep.meta).items()}
            meta.update({f"outcome.{k}": json.dumps(v) for k, v in outcome_to_dict(ep.outcome).items()})
            meta["policy_versions"] = json.dumps(list(ep.policy_versions))
            w.add_metadata("lwd_episode", meta)

            _write_steps(ep, robot, put)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return counts


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"__bytes_hex__": v.hex()}
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def _write_steps(ep: Episode, robot: str, put: Callable[[str, str, dict[str, Any], int], None]) -> None:
    t = ep.num_steps
    ns = [_ns(s) for s in ep.stamp]
    cams = list(ep.meta.cameras)
    cam_topics = {c: topic_name(robot, "camera/{camera}/image_raw/compressed", c) for c in cams}
    js_topic, cmd_topic = topic_name(robot, "joint_states"), topic_name(robot, "joint_commands")
    iv_topic, st_topic = topic_name(robot, "intervention_state"), topic_name(robot, "episode_status")
    info_topic, label_topic = topic_name(robot, "step_info"), topic_name(robot, "episode_label")
    joint_names = list(ep.meta.joint_names)
    layout = {
        "dim": [{"label": "joints", "size": len(joint_names), "stride": len(joint_names)}],
        "data_offset": 0,
    }
    teleop = ep.intervention_mask
    interventions = 0

    def status(state: int, step: int, label: int, at: int) -> None:
        put(
            st_topic,
            TOPICS["episode_status"],
            {
                "header": _header(at),
                "robot_id": robot,
                "episode_id": ep.meta.episode_id,
                "state": state,
                "task": ep.meta.task,
                "instruction": ep.meta.instruction,
                "step": step,
                "label": label,
                "interventions": interventions,
            },
            at,
        )

    for i in range(t):
        at = ns[i]
        engaged = bool(teleop[i])
        if i == 0 or engaged != bool(teleop[i - 1]):
            if engaged:
                interventions += 1
            put(
                iv_topic,
                TOPICS["intervention_state"],
                {"engaged": engaged, "source": "pedal", "since": _time(at)},
                at,
            )
            if i == 0 or engaged:
                status(STATUS_RUNNING, i, 0, at)
        for c in cams:
            put(
                cam_topics[c],
                TOPICS["camera/{camera}/image_raw/compressed"],
                {"header": _header(at, f"{c}_camera_link"), "format": IMAGE_FORMAT, "data": ep.images[c][i]},
                at,
            )
        put(
            js_topic,
            TOPICS["joint_states"],
            {
                "header": _header(at),
                "name": joint_names,
                "position": ep.joint_pos[i].astype(float).tolist(),
                "velocity": [],
                "effort": [],
            },
            at,
        )
        put(
            cmd_topic,
            TOPICS["joint_commands"],
            {"layout": layout, "data": ep.action[i].astype(float).tolist()},
            at,
        )
        put(
            info_topic,
            TOPICS["step_info"],
            {
                "data": json.dumps(
                    {
                        "step": int(ep.step[i]),
                        "source": ActionSource(int(ep.source[i])).name.lower(),
                        "chunk_id": int(ep.chunk_id[i]),
                        "policy_version": ep.policy_version_at(i),
                    }
                )
            },
            at,
        )
    # The label comes after the last step: one control period later on the same clock.
    end = (ns[-1] if t else _ns(ep.meta.started_at)) + _ns(control_period(ep))
    status(STATUS_DONE, t, LABEL_CODES[ep.outcome.label], end)
    put(label_topic, TOPICS["episode_label"], {"data": label_json(ep)}, end)


def control_period(ep: Episode) -> float:
    """Seconds per step of `ep`'s robot: its recorded or described rate, else the median step interval."""
    hz = episode_robot(ep).control_hz
    if hz is None and ep.num_steps > 1:
        median = float(np.median(np.diff(ep.stamp)))
        hz = 1.0 / median if median > 0 else None
    return 1.0 / (hz or CONTROL_HZ)


def export_mcap(
    store: EpisodeStore, episode_ids: Sequence[str], out_dir: Path, progress: Progress
) -> list[Path]:
    """Write `<out_dir>/<episode_id>.mcap` for each episode; returns the paths.

    Each file holds one episode with its own robot's joints and cameras, so a selection that
    mixes robots exports too (unlike a LeRobot dataset, which has one feature layout)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for eid in episode_ids:
        ep = load_episode(store, eid)
        path = out_dir / f"{eid}.mcap"
        write_episode(ep, path)
        paths.append(path)
        progress.episode(eid, ep.num_steps, f"{path.stat().st_size / 1e6:.2f} MB")
    return paths
