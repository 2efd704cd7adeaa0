"""MCAP export, read back with rosbags (its own MCAP reader, .msg parser and CDR decoder), not the writer's library."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from lwd_common.episode import ActionSource, Episode, Label
from lwd_common.export.__main__ import main
from lwd_common.export.mcap_ros2 import STANDARD_MSGDEFS, TOPICS, msgdef, robot_namespace, write_episode
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES


def read_bag(path: Path) -> tuple[dict[str, str], dict[str, list[tuple[int, object]]]]:
    """Topic -> type, and topic -> [(log time ns, decoded message)] as rosbags sees the file."""
    with AnyReader([path]) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        msgs: dict[str, list[tuple[int, object]]] = {t: [] for t in types}
        for conn, stamp, raw in reader.messages():
            msgs[conn.topic].append((stamp, reader.deserialize(raw, conn.msgtype)))
    return types, msgs


def ns(stamp: float) -> int:
    return int(round(stamp * 1e9))


def expected_topics(ep: Episode) -> dict[str, str]:
    r = ep.meta.robot_id
    out = {f"/{r}/camera/{c}/image_raw/compressed": "sensor_msgs/msg/CompressedImage" for c in CAMERA_NAMES}
    out.update({f"/{r}/{s}": t for s, t in TOPICS.items() if "{camera}" not in s})
    return out


def test_episode_reads_back_with_rosbags(store, tmp_path, capsys):
    st, eps = store
    assert main(["mcap", str(st.root), str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert err.count("steps exported") == 3 and "[3/3] g1b-ep-c" in err  # one progress line per episode

    ep = eps[0]  # policy -> teleop -> policy -> hold, two policy versions
    r = ep.meta.robot_id
    types, msgs = read_bag(tmp_path / "out" / f"{ep.meta.episode_id}.mcap")
    assert types == expected_topics(ep)
    stamps = [ns(s) for s in ep.stamp]
    for cam in CAMERA_NAMES:
        topic = f"/{r}/camera/{cam}/image_raw/compressed"
        assert [t for t, _ in msgs[topic]] == stamps
        for i, (_, m) in enumerate(msgs[topic]):
            assert m.format == "jpeg" and m.header.frame_id == f"{cam}_camera_link"
            assert bytes(m.data) == ep.images[cam][i]  # the recorded JPEG, not re-encoded
            assert m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == stamps[i]
    js = msgs[f"/{r}/joint_states"]
    assert [t for t, _ in js] == stamps
    assert list(js[0][1].name) == list(JOINT_NAMES)
    np.testing.assert_array_equal(np.stack([m.position for _, m in js]), ep.joint_pos.astype(np.float64))
    cmds = msgs[f"/{r}/joint_commands"]
    assert len(cmds) == ep.num_steps and cmds[0][1].layout.dim[0].size == len(JOINT_NAMES)
    np.testing.assert_array_equal(np.stack([m.data for _, m in cmds]), ep.action.astype(np.float64))

    # Intervention state on change: released at 0, engaged at 3, released at 7.
    iv = msgs[f"/{r}/intervention_state"]
    assert [(t, m.engaged) for t, m in iv] == [(stamps[0], False), (stamps[3], True), (stamps[7], False)]
    assert iv[1][1].since.sec * 10**9 + iv[1][1].since.nanosec == stamps[3]
    status = msgs[f"/{r}/episode_status"]
    assert [(m.state, m.step, m.interventions, m.label) for _, m in status] == [
        (1, 0, 0, 0),
        (1, 3, 1, 0),
        (3, 12, 1, 1),
    ]
    assert status[-1][1].episode_id == ep.meta.episode_id and status[-1][1].instruction == ep.meta.instruction
    assert status[-1][0] > stamps[-1]  # the label comes after the last step
    ((label_t, label_msg),) = msgs[f"/{r}/episode_label"]
    label = json.loads(label_msg.data)
    assert label_t == status[-1][0]
    assert label | {"policy_versions": None} == {
        "episode_id": "g1a-ep-a",
        "robot_id": "g1a",
        "label": "success",
        "success": True,
        "reason": "labelled",
        "note": "from the test",
        "subtask_score": None,
        "num_steps": 12,
        "task": "pick_cup",
        "instruction": "put the cup on the shelf",
        "kind": "rollout",
        "interventions": 1,
        "policy_versions": None,
    }
    info = [json.loads(m.data) for _, m in msgs[f"/{r}/step_info"]]
    assert [d["source"] for d in info] == [ActionSource(int(s)).name.lower() for s in ep.source]
    assert info[-1] == {"step": 111, "source": "hold", "chunk_id": 2, "policy_version": "v000002"}


def test_failure_episode_counts_and_label(store, tmp_path):
    st, eps = store
    ep = eps[1]  # failure, teleop at the start
    assert main(["mcap", str(st.root), str(tmp_path), "--episodes", ep.meta.episode_id, "-q"]) == 0
    assert [p.name for p in tmp_path.glob("*.mcap")] == ["g1a-ep-b.mcap"]
    types, msgs = read_bag(tmp_path / "g1a-ep-b.mcap")
    counts = {t: len(v) for t, v in msgs.items()}
    r = ep.meta.robot_id
    assert counts[f"/{r}/joint_states"] == counts[f"/{r}/camera/head/image_raw/compressed"] == 9
    assert counts[f"/{r}/intervention_state"] == 2 and counts[f"/{r}/episode_label"] == 1
    final = msgs[f"/{r}/episode_status"][-1][1]
    assert (final.state, final.label, final.interventions, final.step) == (3, 2, 1, 9)
    assert json.loads(msgs[f"/{r}/episode_label"][0][1].data)["subtask_score"] == 0.5


@pytest.mark.parametrize(
    "datatype", sorted(f"{k.split('/')[0]}/msg/{k.split('/')[1]}" for k in STANDARD_MSGDEFS)
)
def test_standard_schemas_equal_rosbags_kilted_definitions(datatype):
    """Our schema of each standard type (and its dependencies) parses to rosbags' ROS 2 Kilted definitions."""
    kilted = get_typestore(Stores.ROS2_KILTED).fielddefs
    parsed = get_types_from_msg(msgdef(datatype), datatype)
    assert datatype in parsed
    for name, definition in parsed.items():
        assert definition == kilted[name], name


def _fields(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not re.match(r"\S+\s+[A-Za-z_]\w*\s*=", line):
            typ, name = line.split()[:2]
            out.append((typ.split("/")[-1], name))
    return out


@pytest.mark.parametrize("name", sorted(STANDARD_MSGDEFS))
def test_standard_schemas_match_installed_msg_files(name):
    pkg, typ = name.split("/")
    path = Path(sys.prefix) / "share" / pkg / "msg" / f"{typ}.msg"
    if not path.is_file():
        pytest.skip(f"{path} not installed")
    assert _fields(STANDARD_MSGDEFS[name]) == _fields(path.read_text())


@pytest.mark.parametrize("typ", ["InterventionState", "EpisodeStatus"])
def test_lwd_msgs_schemas_match_the_generated_messages(typ):
    """The lwd_msgs schema parses (rosbags) to the fields rosidl generated for the robot."""
    msg_mod = pytest.importorskip("lwd_msgs.msg")
    parsed = get_types_from_msg(msgdef(f"lwd_msgs/msg/{typ}"), f"lwd_msgs/msg/{typ}")
    fields = [name for name, _ in parsed[f"lwd_msgs/msg/{typ}"][1]]
    assert fields == list(getattr(msg_mod, typ).get_fields_and_field_types())


def test_robot_ids_become_valid_ros_namespaces(tmp_path, episode_builder):
    """ROS 2 names allow letters, digits and `_` (no leading digit); the status keeps the real id."""
    assert [robot_namespace(r) for r in ("sim0", "g1-01", "7x")] == ["sim0", "g1_01", "r_7x"]
    ep = episode_builder("g1-01-ep", 3, Label.SUCCESS, [ActionSource.POLICY] * 3, "wave", robot="g1-01")
    write_episode(ep, tmp_path / "e.mcap")
    types, msgs = read_bag(tmp_path / "e.mcap")
    assert "/g1_01/joint_states" in types and msgs["/g1_01/episode_status"][-1][1].robot_id == "g1-01"
