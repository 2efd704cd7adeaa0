"""How a LeRobot dataset's features become lwd's columns: the mapping config and the checked plan.

`ImportMapping` is what the user may say (a YAML/JSON file, `load_mapping`); `make_plan` checks it
against a dataset's info.json and the target robot's joint and camera names (`target_robot`) and
says which state/action dimension and which image/video feature each lwd name reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lwd_common.episode import ActionSource, EpisodeKind, Label
from lwd_common.export import ExportError, robot_names
from lwd_common.export.lerobot_v3.schema import ACTION, IMAGE_PREFIX, LWD, STATE
from lwd_common.preprocessing import JPEG_QUALITY


@dataclass
class ImportMapping:
    """How a LeRobot dataset's columns become lwd's (YAML/JSON file; every key optional).

    robot: the lwd_description robot (name or YAML path) whose joint and camera names the episodes
    get (None: the robot an lwd export recorded, else the G1); joints: lwd joint name -> name in the
    dataset's state/action `names` (None: the robot's names, identical); cameras: lwd camera ->
    dataset image/video feature key (None: those of observation.images.<lwd camera> the dataset
    has, at least one). The defaults for label, kind, source and policy version apply only where
    the dataset has no lwd columns (datasets not exported by lwd).
    """

    state_key: str = STATE
    action_key: str = ACTION
    robot: str | None = None
    joints: dict[str, str] | None = None
    cameras: dict[str, str] | None = None
    robot_id: str = "lerobot"
    kind: EpisodeKind = EpisodeKind.DEMO
    label: Label = Label.SUCCESS
    source: ActionSource = ActionSource.TELEOP
    policy_version: str = "teleop"
    jpeg_quality: int = JPEG_QUALITY


def load_mapping(path: str | os.PathLike | None) -> ImportMapping:
    """The mapping in a YAML or JSON file (None: the defaults), checked against lwd's joint and camera names."""
    if path is None:
        return ImportMapping()
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"mapping file {p} does not exist")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ExportError(f"mapping file {p} is not YAML/JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ExportError(f"mapping file {p} must hold a mapping, not {type(raw).__name__}")
    return mapping_from_dict(raw, str(p))


def mapping_from_dict(raw: dict[str, Any], where: str = "mapping") -> ImportMapping:
    """The mapping a dict gives (`where` names it in errors), checked like `load_mapping`'s."""
    known = set(ImportMapping.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ExportError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    m = ImportMapping()
    try:
        for key in ("state_key", "action_key", "robot", "robot_id", "policy_version"):
            if key in raw:
                setattr(m, key, str(raw[key]))
        if "kind" in raw:
            m.kind = EpisodeKind(raw["kind"])
        if "label" in raw:
            m.label = Label(raw["label"])
        if "source" in raw:
            m.source = ActionSource[str(raw["source"]).upper()]
        if "jpeg_quality" in raw:
            m.jpeg_quality = int(raw["jpeg_quality"])
    except (ValueError, KeyError) as exc:
        raise ExportError(f"{where}: {exc}") from None
    joint_names, camera_names = robot_names(m.robot)
    if "joints" in raw:
        joints = raw["joints"]
        if not isinstance(joints, dict):
            raise ExportError(f"{where}: joints must map lwd joint names to dataset names")
        bad = sorted(set(joints) - set(joint_names))
        if bad:
            raise ExportError(f"{where}: unknown lwd joints {bad}; lwd's joints are {list(joint_names)}")
        missing = [j for j in joint_names if j not in joints]
        if missing:
            raise ExportError(
                f"{where}: joints must map all {len(joint_names)} lwd joints; missing {missing}"
            )
        m.joints = {j: str(joints[j]) for j in joint_names}
    if "cameras" in raw:
        cams = raw["cameras"]
        if not isinstance(cams, dict) or not cams:
            raise ExportError(f"{where}: cameras must map lwd camera names to dataset image keys")
        bad = sorted(set(cams) - set(camera_names))
        if bad:
            raise ExportError(f"{where}: unknown lwd cameras {bad}; lwd's cameras are {list(camera_names)}")
        m.cameras = {c: str(cams[c]) for c in camera_names if c in cams}
    return m


def target_robot(
    mapping: ImportMapping, rows: list[dict[str, Any]]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The lwd joint and camera names the episodes get: the mapping's robot, else the one an lwd export
    recorded in its episode rows (unless the mapping maps joints), else the G1's."""
    recorded = {
        (tuple(r[LWD + "joint_names"]), tuple(r.get(LWD + "cameras") or ()))
        for r in rows
        if r.get(LWD + "joint_names")
    }
    if mapping.robot is None and mapping.joints is None and len(recorded) == 1:
        return recorded.pop()
    return robot_names(mapping.robot)


def _names(ft: dict[str, Any]) -> list[str] | None:
    """A feature's per-dimension names (v3 lists, or v2's {"motors": [...]} form)."""
    names = ft.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    return [str(n) for n in names] if isinstance(names, list) else None


@dataclass
class Plan:
    """The checked mapping from a dataset's features to lwd's columns."""

    joint_names: tuple[str, ...]  # the lwd joints, in order
    state_idx: list[int]
    action_idx: list[int]
    cameras: dict[str, str]  # lwd camera -> feature key
    camera_dtype: dict[str, str]  # feature key -> image | video


def make_plan(
    info: dict[str, Any], mapping: ImportMapping, joint_names: tuple[str, ...], camera_names: tuple[str, ...]
) -> Plan:
    feats = info["features"]
    joints = mapping.joints if mapping.joints is not None else {j: j for j in joint_names}

    def vector(key: str, what: str) -> list[int]:
        if key not in feats:
            vecs = sorted(k for k, f in feats.items() if f.get("dtype") not in ("image", "video", "string"))
            raise ExportError(
                f"the dataset has no {what} feature {key!r} (mapping {what}_key); "
                f"its numeric features: {vecs}"
            )
        ft = feats[key]
        shape = list(ft.get("shape", []))
        if len(shape) != 1:
            raise ExportError(f"{key} has shape {shape}; lwd needs a vector of joint values")
        names = _names(ft)
        if names is None:
            if shape[0] != len(joint_names):
                raise ExportError(
                    f"{key} has {shape[0]} values per frame and no names; lwd needs {len(joint_names)} "
                    "(give the dataset names, or map joints)"
                )
            return list(range(len(joint_names)))
        if len(names) != shape[0]:
            raise ExportError(f"{key}: info.json gives shape {shape} but {len(names)} names")
        missing = [(j, d) for j, d in joints.items() if d not in names]
        if missing:
            shown = ", ".join(f"{j} -> {d!r}" for j, d in missing[:4])
            raise ExportError(
                f"{key} has {shape[0]} values named {names[:8]}{'...' if len(names) > 8 else ''}; "
                f"{len(missing)} mapped joints are not among them ({shown}); map them in the "
                "mapping's `joints`"
            )
        return [names.index(joints[j]) for j in joint_names]

    state_idx = vector(mapping.state_key, "state")
    action_idx = vector(mapping.action_key, "action")
    visual = {k: f["dtype"] for k, f in feats.items() if f.get("dtype") in ("image", "video")}
    cameras = mapping.cameras
    if cameras is None:  # lwd's camera names, those the dataset has (an lwd export may hold a subset)
        lwd_named = {c: IMAGE_PREFIX + c for c in camera_names}
        cameras = {c: k for c, k in lwd_named.items() if k in visual} or lwd_named
    unknown = {c: k for c, k in cameras.items() if k not in visual}
    if unknown:
        shown = ", ".join(f"{c} -> {k!r}" for c, k in unknown.items())
        raise ExportError(
            f"unknown cameras: the dataset has no image/video feature for {shown}; "
            f"its cameras: {sorted(visual) or 'none'} (map them in the mapping's `cameras`)"
        )
    dtypes = {k: visual[k] for k in cameras.values()}
    return Plan(joint_names, state_idx, action_idx, dict(cameras), dtypes)
