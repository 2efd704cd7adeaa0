"""LeRobot v3 export: the published v3.0 layout, read with pyarrow/pandas as LeRobot reads it, and export -> import."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lwd_common.episode import content_hash, encode_episode
from lwd_common.export.__main__ import main
from lwd_common.export.lerobot_v3 import ImportMapping, iter_lerobot_episodes
from lwd_common.preprocessing import decode_jpeg
from lwd_description.robot import CAMERA_NAMES, JOINT_NAMES, NUM_JOINTS

DEFAULTS = ["timestamp", "frame_index", "episode_index", "index", "task_index"]
VIDEO_TOLERANCE = 6.0  # mean |pixel difference| after the MPEG-4 round trip of a 16x16 frame (measured ~2-4)


@pytest.fixture
def exported(store, tmp_path):
    st, eps = store
    out = tmp_path / "lerobot"
    assert main(["lerobot", str(st.root), str(out), "-q"]) == 0
    return out, eps


def test_layout_and_info_follow_v3(exported):
    out, eps = exported
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "data/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
    ]
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 30 and info["video_path"] is None
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 26, 2)
    assert info["splits"] == {"train": "0:3"} and info["chunks_size"] == 1000
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    feats = info["features"]
    assert feats["observation.state"] == {"dtype": "float32", "shape": [16], "names": list(JOINT_NAMES)}
    assert feats["action"]["names"] == list(JOINT_NAMES)
    for cam in CAMERA_NAMES:
        assert feats[f"observation.images.{cam}"] == {
            "dtype": "image",
            "shape": [16, 16, 3],
            "names": ["height", "width", "channels"],
        }
    for key in DEFAULTS + ["next.reward", "next.done", "next.success", "intervention", "action_source"]:
        assert feats[key]["shape"] == [1]
    assert all("/" not in k for k in feats)  # LeRobot refuses feature names with '/'


def test_data_file_columns_types_and_values(exported):
    out, eps = exported
    t = pq.read_table(out / "data/chunk-000/file-000.parquet")
    info = json.loads((out / "meta/info.json").read_text())
    assert t.column_names == list(info["features"])  # every feature is a column (no videos here)
    assert t.schema.field("observation.state").type == pa.list_(pa.float32(), NUM_JOINTS)
    assert t.schema.field("observation.images.head").type == pa.struct(
        [("bytes", pa.binary()), ("path", pa.string())]
    )
    hf = json.loads(t.schema.metadata[b"huggingface"])["info"]["features"]
    assert hf["observation.images.head"] == {"_type": "Image"}
    assert hf["action"] == {
        "feature": {"dtype": "float32", "_type": "Value"},
        "length": 16,
        "_type": "Sequence",
    }
    d = t.to_pydict()
    assert d["index"] == list(range(26)) and d["episode_index"] == [0] * 12 + [1] * 9 + [2] * 5
    assert d["frame_index"][:13] == list(range(12)) + [0]
    np.testing.assert_allclose(d["timestamp"][:12], np.arange(12) / 30, rtol=1e-6)
    a = eps[0]
    np.testing.assert_array_equal(np.array(d["observation.state"][:12], np.float32), a.joint_pos)
    np.testing.assert_array_equal(np.array(d["action"][:12], np.float32), a.action)
    assert d["observation.images.left_wrist"][5]["bytes"] == a.images["left_wrist"][5]
    assert d["intervention"][:12] == [False] * 3 + [True] * 4 + [False] * 5
    assert d["action_source"][:12] == [0] * 3 + [1] * 4 + [0] * 3 + [2] * 2
    assert d["next.success"][:12] == [False] * 11 + [True] and not any(d["next.success"][12:21])  # b failed
    assert d["next.reward"][11] == 1.0 and sum(d["next.reward"]) == 2.0
    assert d["lwd.stamp"][:12] == a.stamp.tolist() and d["policy_version"][3] == "teleop"


def test_tasks_and_episodes_tables_read_like_lerobot(exported):
    out, eps = exported
    tasks = pd.read_parquet(out / "meta/tasks.parquet")  # LeRobot: tasks.loc[task].task_index
    assert tasks.index.name == "task"
    assert int(tasks.loc["put the cup on the shelf"].task_index) == 0
    assert int(tasks.loc["hand over the cup"].task_index) == 1
    ep = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [
        (r["episode_index"], r["length"], r["dataset_from_index"], r["dataset_to_index"]) for r in ep
    ] == [(0, 12, 0, 12), (1, 9, 12, 21), (2, 5, 21, 26)]
    assert ep[1]["tasks"] == ["hand over the cup"] and ep[0]["data/file_index"] == 0
    assert [r["lwd/success"] for r in ep] == [True, False, True]
    assert [r["lwd/interventions"] for r in ep] == [1, 1, 0]
    assert ep[0]["lwd/episode_id"] == "g1a-ep-a" and ep[2]["lwd/robot_id"] == "g1b"
    assert np.array(ep[0]["stats/observation.images.head/mean"]).shape == (3, 1, 1)
    np.testing.assert_allclose(ep[0]["stats/action/mean"], eps[0].action.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_stats_cover_all_frames(exported):
    out, eps = exported
    stats = json.loads((out / "meta/stats.json").read_text())
    state = np.concatenate([e.joint_pos for e in eps]).astype(np.float64)
    np.testing.assert_allclose(stats["observation.state"]["mean"], state.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(stats["observation.state"]["std"], state.std(axis=0), rtol=1e-9)
    assert stats["observation.state"]["count"] == [26]
    head = np.stack([decode_jpeg(f) for e in eps for f in e.images["head"]]) / 255.0
    np.testing.assert_allclose(
        np.array(stats["observation.images.head"]["mean"]).ravel(), head.mean(axis=(0, 1, 2)), rtol=1e-9
    )
    assert "policy_version" not in stats  # strings have no stats (as in LeRobot)


def test_export_then_import_gives_identical_episodes(exported, tmp_path):
    out, eps = exported
    store_dir = tmp_path / "imported"
    assert main(["import", str(out), str(store_dir), "-q"]) == 0
    from lwd_common.store import EpisodeStore

    back = EpisodeStore(store_dir)
    assert back.latest_snapshot().episode_ids == tuple(sorted(e.meta.episode_id for e in eps))
    for ep in eps:
        got = back.get(ep.meta.episode_id)
        # Images are the same JPEG bytes (no re-encoding), so the whole episode encodes identically.
        assert encode_episode(got) == encode_episode(ep)
        assert content_hash(got) == content_hash(ep)
    assert back.get("g1a-ep-a").meta.extra["raw"] == b"\x00\x01"
    # A second import stores nothing new.
    assert main(["import", str(out), str(store_dir), "-q"]) == 0
    assert len(back.ids()) == 3


def test_video_export_round_trip_within_tolerance(store, tmp_path):
    st, eps = store
    out = tmp_path / "video"
    assert main(["lerobot", str(st.root), str(out), "--video", "-q"]) == 0
    info = json.loads((out / "meta/info.json").read_text())
    head = info["features"]["observation.images.head"]
    assert head["dtype"] == "video" and head["info"]["video.codec"] == "mpeg4"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert (out / "videos/observation.images.head/chunk-000/file-000.mp4").is_file()
    assert "observation.images.head" not in pq.read_schema(out / "data/chunk-000/file-000.parquet").names
    rows = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    k = "videos/observation.images.head/"
    assert [t for r in rows for t in (r[k + "from_timestamp"], r[k + "to_timestamp"])] == pytest.approx(
        [0, 12 / 30, 12 / 30, 21 / 30, 21 / 30, 26 / 30]
    )
    back = list(iter_lerobot_episodes(out, ImportMapping()))
    for got, ep in zip(back, eps, strict=True):
        np.testing.assert_array_equal(got.joint_pos, ep.joint_pos)
        np.testing.assert_array_equal(got.action, ep.action)
        np.testing.assert_array_equal(got.source, ep.source)
        assert (got.success, got.meta.instruction, got.meta.episode_id) == (
            ep.success,
            ep.meta.instruction,
            ep.meta.episode_id,
        )
        for cam in CAMERA_NAMES:
            diff = np.stack(
                [
                    np.abs(decode_jpeg(x).astype(int) - decode_jpeg(y).astype(int)).mean()
                    for x, y in zip(got.images[cam], ep.images[cam], strict=True)
                ]
            )
            assert diff.max() < VIDEO_TOLERANCE, (cam, diff)


def test_snapshot_selection_and_refusing_a_non_empty_output(store, tmp_path, capsys):
    st, eps = store
    out = tmp_path / "snap1"
    assert main(["lerobot", str(st.root), str(out), "--snapshot", "1", "-q"]) == 0
    assert json.loads((out / "meta/info.json").read_text())["total_episodes"] == 2
    assert main(["lerobot", str(st.root), str(out), "-q"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["lerobot", str(st.root), str(out), "--overwrite", "-q"]) == 0
    assert json.loads((out / "meta/info.json").read_text())["total_episodes"] == 3
