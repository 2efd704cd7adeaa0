"""Exports of a robot other than the G1 (lwd_description's single_arm_6dof: 7 joints, cameras `wrist`
and `scene`, 20 Hz): joint names, cameras and rate come from the episodes' metadata, the LeRobot
import gives the episodes back, and episodes of different robots in one dataset are refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rosbags.highlevel import AnyReader

from lwd_common.episode import ActionSource, Label, encode_episode
from lwd_common.export import ExportError
from lwd_common.export.__main__ import main
from lwd_common.export.lerobot_v3 import iter_lerobot_episodes, mapping_from_dict
from lwd_common.store import EpisodeStore
from lwd_description.robot import JOINT_NAMES, load_robot

ARM = load_robot("single_arm_6dof")
CAMS = {"wrist": 12, "scene": 8}  # camera -> frame height (width 16): two sizes, none of the G1's names
P, TEL = ActionSource.POLICY, ActionSource.TELEOP


def read_bag(path: Path) -> tuple[set[str], dict[str, list[tuple[int, object]]]]:
    """Topics, and topic -> [(log time ns, message)], as rosbags reads the file."""
    with AnyReader([path]) as reader:
        msgs: dict[str, list[tuple[int, object]]] = {c.topic: [] for c in reader.connections}
        for conn, stamp, raw in reader.messages():
            msgs[conn.topic].append((stamp, reader.deserialize(raw, conn.msgtype)))
    return set(msgs), msgs


@pytest.fixture
def arm_store(tmp_path, episode_builder):
    """Two single_arm_6dof episodes: a's rate in meta.extra (as the actor records it), b's from its YAML."""

    def arm(eid, n, label, sources, extra=None, seed=0):
        names = {"joint_names": ARM.joint_names, "cameras": CAMS, "hz": 20.0}
        return episode_builder(eid, n, label, sources, "pick the bolt", "arm0", extra, seed, **names)

    eps = [
        arm("arm0-ep-a", 8, Label.SUCCESS, [P] * 3 + [TEL] * 3 + [P] * 2, {"control_hz": 20.0}),
        arm("arm0-ep-b", 5, Label.FAILURE, [P] * 5, seed=1),
    ]
    store = EpisodeStore(tmp_path / "arm_store")
    for ep in eps:
        store.put(ep)
    store.commit_snapshot()
    return store, eps


def error_line(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_mcap_names_the_robots_own_joints_and_cameras(arm_store, tmp_path):
    st, eps = arm_store
    assert main(["mcap", str(st.root), str(tmp_path / "out"), "-q"]) == 0
    for ep in eps:
        types, msgs = read_bag(tmp_path / "out" / f"{ep.meta.episode_id}.mcap")
        cams = sorted(t.split("/")[3] for t in types if "/camera/" in t)
        assert cams == ["scene", "wrist"]
        js = [m for _, m in msgs["/arm0/joint_states"]]
        assert len(js) == ep.num_steps
        assert all(list(m.name) == list(ARM.joint_names) and len(m.position) == 7 for m in js)
        np.testing.assert_array_equal(np.stack([m.position for m in js]), ep.joint_pos.astype(np.float64))
        cmds = [m for _, m in msgs["/arm0/joint_commands"]]
        assert cmds[0].layout.dim[0].size == 7 and len(cmds[0].data) == 7
        # The label comes one control period of this robot (20 Hz) after the last step.
        assert msgs["/arm0/episode_label"][0][0] - int(round(ep.stamp[-1] * 1e9)) == 50_000_000


def test_lerobot_export_carries_the_robots_joints_cameras_and_fps(arm_store, tmp_path):
    st, eps = arm_store
    out = tmp_path / "lr"
    assert main(["lerobot", str(st.root), str(out), "-q"]) == 0
    info = json.loads((out / "meta/info.json").read_text())
    assert info["fps"] == 20 and info["robot_type"] == "lwd_single_arm_6dof"
    feats = info["features"]
    vec = {"dtype": "float32", "shape": [7], "names": list(ARM.joint_names)}
    assert feats["observation.state"] == vec and feats["action"] == vec
    images = {k: f["shape"] for k, f in feats.items() if f["dtype"] == "image"}
    assert images == {"observation.images.wrist": [12, 16, 3], "observation.images.scene": [8, 16, 3]}
    t = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert t.schema.field("action").type == pa.list_(pa.float32(), 7)
    d = t.to_pydict()
    np.testing.assert_array_equal(np.array(d["observation.state"][:8], np.float32), eps[0].joint_pos)
    np.testing.assert_allclose(d["timestamp"][:8], np.arange(8) / 20, rtol=1e-6)
    rows = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["lwd/joint_names"] for r in rows] == [list(ARM.joint_names)] * 2
    assert [r["lwd/cameras"] for r in rows] == [list(CAMS)] * 2


def test_lerobot_import_round_trips_the_robot(arm_store, tmp_path):
    st, eps = arm_store
    assert main(["lerobot", str(st.root), str(tmp_path / "lr"), "-q"]) == 0
    assert main(["import", str(tmp_path / "lr"), str(tmp_path / "back"), "-q"]) == 0
    back = EpisodeStore(tmp_path / "back")
    for ep in eps:
        got = back.get(ep.meta.episode_id)
        assert got.meta.joint_names == ARM.joint_names and got.meta.cameras == tuple(CAMS)
        assert encode_episode(got) == encode_episode(ep)


def test_episodes_of_different_robots_are_refused_in_one_line(arm_store, tmp_path, capsys, episode_builder):
    st, eps = arm_store
    st.put(episode_builder("g1a-ep-x", 4, Label.SUCCESS, [P] * 4, "wave"))
    st.commit_snapshot()
    out = tmp_path / "mixed"
    err = error_line(["lerobot", str(st.root), str(out), "-q"], capsys)
    assert "episodes of different robots" in err and "arm0-ep-a" in err and "g1a-ep-x" in err
    assert "shoulder_pan_joint" in err and "left_arm_joint1" in err and "--episodes" in err
    assert not out.exists()  # no half-written dataset
    # MCAP files hold one episode each, so each names its own robot's joints.
    assert main(["mcap", str(st.root), str(tmp_path / "m"), "-q"]) == 0
    _, msgs = read_bag(tmp_path / "m" / "g1a-ep-x.mcap")
    assert list(msgs["/g1a/joint_states"][0][1].name) == list(JOINT_NAMES)


def test_a_robot_without_a_rate_or_description_needs_fps(tmp_path, capsys, episode_builder):
    ep = episode_builder(
        "bot-ep", 3, Label.SUCCESS, [P] * 3, "push", robot="bot", joint_names=("a", "b"), cameras={"cam": 16}
    )
    st = EpisodeStore(tmp_path / "s")
    st.put(ep)
    st.commit_snapshot()
    err = error_line(["lerobot", str(st.root), str(tmp_path / "lr"), "-q"], capsys)
    assert "bot-ep" in err and "control rate" in err and "--fps" in err
    assert main(["lerobot", str(st.root), str(tmp_path / "lr"), "--fps", "15", "-q"]) == 0
    info = json.loads((tmp_path / "lr/meta/info.json").read_text())
    assert info["fps"] == 15 and info["features"]["action"]["names"] == ["a", "b"]
    (back,) = iter_lerobot_episodes(tmp_path / "lr")
    assert encode_episode(back) == encode_episode(ep)


def test_import_mapping_for_another_robot():
    m = mapping_from_dict({"robot": "single_arm_6dof", "cameras": {"scene": "observation.images.top"}})
    assert m.robot == "single_arm_6dof" and m.cameras == {"scene": "observation.images.top"}
    with pytest.raises(
        ExportError, match=r"unknown lwd cameras \['head'\]; lwd's cameras are \['wrist', 'scene'\]"
    ):
        mapping_from_dict({"robot": "single_arm_6dof", "cameras": {"head": "x"}})
    with pytest.raises(ExportError, match=r"must map all 7 lwd joints; missing \['shoulder_lift_joint'"):
        mapping_from_dict({"robot": "single_arm_6dof", "joints": {"shoulder_pan_joint": "j0"}})
    with pytest.raises(ExportError, match="no robot description named 'nope'"):
        mapping_from_dict({"robot": "nope"})
