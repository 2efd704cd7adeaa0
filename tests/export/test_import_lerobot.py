"""Import of LeRobot v3 datasets not written by lwd: mapping by name, PNG frames, and readable errors.

The datasets here are written the way LeRobot writes them (pyarrow data/episodes parquet, pandas
tasks.parquet with the task as index, HF `Image` structs holding PNG bytes), with other joint and
camera names than lwd's, so the mapping config has to do the work.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from lwd_common.episode import ActionSource, EpisodeKind, Label
from lwd_common.export import ExportError
from lwd_common.export.__main__ import main
from lwd_common.export.lerobot_v3 import ImportMapping, iter_lerobot_episodes, load_mapping, mapping_from_dict
from lwd_common.preprocessing import decode_jpeg
from lwd_common.store import EpisodeStore
from lwd_description.robot import JOINT_NAMES

NAMES = [f"j{i:02d}" for i in range(16)]
ORDER = [5, 0, 11, 3, 15, 8, 1, 13, 2, 9, 14, 6, 10, 4, 12, 7]  # lwd joint k is dataset name NAMES[ORDER[k]]
LENGTHS = [6, 4]
PNG_TOLERANCE = 3.0  # mean |pixel difference| after PNG -> JPEG (quality 80) of a smooth 16x16 frame


def top_frame(ep: int, i: int) -> np.ndarray:
    y, x = np.mgrid[0:16, 0:16]
    return np.stack([60 + 8 * x + ep * 20, 100 + 5 * y + i * 3, 90 + 0 * x], axis=-1).astype(np.uint8)


def write_foreign(
    root: Path,
    *,
    state_width: int = 16,
    info_state_shape: int = 16,
    names: list[str] | None = NAMES,
    drop_column: str | None = None,
    version: str = "v3.0",
    success: list[bool] | None = None,
) -> Path:
    """A two-episode LeRobot v3 dataset (state/action named j00..j15, camera observation.images.top)."""
    root.mkdir(parents=True)
    rows: dict[str, list] = {
        k: []
        for k in [
            "observation.state",
            "action",
            "observation.images.top",
            "timestamp",
            "frame_index",
            "episode_index",
            "index",
            "task_index",
            "next.success",
        ]
    }
    index = 0
    for e, n in enumerate(LENGTHS):
        for i in range(n):
            rows["observation.state"].append([e * 100 + i + j / 100 for j in range(state_width)])
            rows["action"].append([-(e * 100 + i + j / 100) for j in range(16)])
            png = cv2.imencode(".png", top_frame(e, i)[:, :, ::-1])[1].tobytes()
            rows["observation.images.top"].append({"bytes": png, "path": f"frame-{i:06d}.png"})
            rows["timestamp"].append(i / 10)
            rows["frame_index"].append(i)
            rows["episode_index"].append(e)
            rows["index"].append(index)
            rows["task_index"].append(e)
            rows["next.success"].append(bool(success[e]) and i == n - 1 if success else False)
            index += 1
    if success is None:
        del rows["next.success"]
    if drop_column:
        del rows[drop_column]
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(pa.table(rows), root / "data/chunk-000/file-000.parquet")
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "episode_index": [0, 1],
                "tasks": [["stack the blocks"], ["open the drawer"]],
                "length": LENGTHS,
                "data/chunk_index": [0, 0],
                "data/file_index": [0, 0],
                "dataset_from_index": [0, 6],
                "dataset_to_index": [6, 10],
                "meta/episodes/chunk_index": [0, 0],
                "meta/episodes/file_index": [0, 0],
            }
        ),
        root / "meta/episodes/chunk-000/file-000.parquet",
    )
    pd.DataFrame(
        {"task_index": [0, 1]}, index=pd.Index(["stack the blocks", "open the drawer"], name="task")
    ).to_parquet(root / "meta/tasks.parquet")
    vec = {"dtype": "float32", "shape": [info_state_shape], "names": names}
    features = {
        "observation.state": vec,
        "action": {"dtype": "float32", "shape": [16], "names": NAMES},
        "observation.images.top": {
            "dtype": "image",
            "shape": [16, 16, 3],
            "names": ["height", "width", "channels"],
        },
        **{
            k: {"dtype": "int64", "shape": [1], "names": None}
            for k in ["frame_index", "episode_index", "index", "task_index"]
        },
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    }
    if success is not None:
        features["next.success"] = {"dtype": "bool", "shape": [1], "names": None}
    info = {
        "codebase_version": version,
        "robot_type": "so100_bimanual",
        "total_episodes": 2,
        "total_frames": 10,
        "total_tasks": 2,
        "chunks_size": 1000,
        "fps": 10,
        "splits": {"train": "0:2"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": None,
        "features": features,
    }
    (root / "meta/info.json").write_text(json.dumps(info))
    return root


def mapping_file(tmp_path: Path, **overrides) -> Path:
    raw = {
        "joints": {j: NAMES[ORDER[k]] for k, j in enumerate(JOINT_NAMES)},
        "cameras": {"head": "observation.images.top"},
        "robot_id": "so100",
        "kind": "demo",
    }
    raw.update(overrides)
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_foreign_dataset_imports_with_a_name_mapping(tmp_path, capsys):
    ds = write_foreign(tmp_path / "blocks", success=[True, False])
    store_dir = tmp_path / "store"
    assert main(["import", str(ds), str(store_dir), "--mapping", str(mapping_file(tmp_path))]) == 0
    assert capsys.readouterr().err.count("steps imported") == 2
    store = EpisodeStore(store_dir)
    assert store.latest_snapshot().episode_ids == ("so100-blocks-ep000000", "so100-blocks-ep000001")
    ep = store.get("so100-blocks-ep000000")
    state = np.array([[j / 100 + i for j in range(16)] for i in range(6)], np.float32)
    np.testing.assert_array_equal(ep.joint_pos, state[:, ORDER])  # lwd order, by name
    np.testing.assert_array_equal(ep.action, -state[:, ORDER])
    assert ep.meta.cameras == ("head",) and ep.meta.instruction == "stack the blocks"
    assert ep.meta.kind == EpisodeKind.DEMO and ep.meta.robot_id == "so100"
    assert ep.meta.extra["lerobot"] == {
        "dataset": "blocks",
        "episode_index": 0,
        "robot_type": "so100_bimanual",
    }
    assert ep.success and not store.get("so100-blocks-ep000001").success  # from next.success
    assert (ep.source == ActionSource.TELEOP).all() and ep.policy_versions == ["teleop"]
    np.testing.assert_allclose(ep.stamp, np.arange(6) / 10, atol=1e-6)
    for i, jpeg in enumerate(ep.images["head"]):
        assert jpeg[:3] == b"\xff\xd8\xff"  # PNG frames become the store's JPEG
        assert np.abs(decode_jpeg(jpeg).astype(int) - top_frame(0, i)).mean() < PNG_TOLERANCE


def test_default_label_applies_without_success_column(tmp_path):
    ds = write_foreign(tmp_path / "ds", success=None)
    mapping = load_mapping(mapping_file(tmp_path, label="failure", source="policy"))
    eps = list(iter_lerobot_episodes(ds, mapping, episodes=[1]))
    assert len(eps) == 1 and eps[0].outcome.label == Label.FAILURE and eps[0].num_steps == 4
    assert (eps[0].source == ActionSource.POLICY).all()


def error_of(ds: Path, mapping: ImportMapping | None = None) -> str:
    with pytest.raises(ExportError) as info:
        list(iter_lerobot_episodes(ds, mapping))
    return str(info.value)


def default_mapping(tmp_path: Path) -> ImportMapping:
    return load_mapping(mapping_file(tmp_path))


def test_missing_column_is_named(tmp_path):
    msg = error_of(write_foreign(tmp_path / "ds", drop_column="action"), default_mapping(tmp_path))
    assert "lacks columns ['action']" in msg and "data/chunk-000/file-000.parquet" in msg


def test_rows_of_another_width_than_info_says(tmp_path):
    msg = error_of(write_foreign(tmp_path / "ds", state_width=14), default_mapping(tmp_path))
    assert "episode 0: column observation.state has [14] values per row, info.json says 16" in msg


def test_joints_the_dataset_does_not_name(tmp_path):
    msg = error_of(write_foreign(tmp_path / "ds"), ImportMapping())  # default G1 names vs j00..j15
    assert (
        "observation.state has 16 values named ['j00'" in msg and "16 mapped joints are not among them" in msg
    )
    assert "left_arm_joint1 -> 'left_arm_joint1'" in msg


def test_vector_without_names_of_the_wrong_size(tmp_path):
    msg = error_of(
        write_foreign(tmp_path / "ds", state_width=14, info_state_shape=14, names=None),
        default_mapping(tmp_path),
    )
    assert "observation.state has 14 values per frame and no names; lwd needs 16" in msg


def test_unknown_dataset_camera(tmp_path):
    mapping = load_mapping(mapping_file(tmp_path, cameras={"head": "observation.images.front"}))
    msg = error_of(write_foreign(tmp_path / "ds"), mapping)
    assert "unknown cameras" in msg and "head -> 'observation.images.front'" in msg
    assert "its cameras: ['observation.images.top']" in msg


def test_mapping_errors_are_readable(tmp_path):
    with pytest.raises(ExportError, match=r"unknown lwd cameras \['belly'\]; lwd's cameras are \['head'"):
        mapping_from_dict({"cameras": {"belly": "observation.images.top"}})
    with pytest.raises(ExportError, match=r"must map all 16 lwd joints; missing \['left_arm_joint2'"):
        mapping_from_dict({"joints": {"left_arm_joint1": "j00"}})
    with pytest.raises(ExportError, match=r"unknown lwd joints \['elbow'\]"):
        mapping_from_dict({"joints": {"elbow": "j00"}})
    with pytest.raises(ExportError, match=r"unknown keys \['camera'\]"):
        mapping_from_dict({"camera": {}})
    with pytest.raises(ExportError, match="'maybe' is not a valid Label"):
        mapping_from_dict({"label": "maybe"})
    with pytest.raises(ExportError, match="does not exist"):
        load_mapping(tmp_path / "nope.yaml")


def test_not_a_v3_dataset(tmp_path, capsys):
    msg = error_of(write_foreign(tmp_path / "old", version="v2.1"))
    assert "is a LeRobot v2.1 dataset; this importer reads v3.x" in msg
    (tmp_path / "empty").mkdir()
    assert "meta/info.json is missing" in error_of(tmp_path / "empty")
    # Through the CLI: exit status 2, one error line, and no store created for a dataset that failed.
    assert main(["import", str(tmp_path / "empty"), str(tmp_path / "store")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "store").exists()


def test_unknown_episode_index(tmp_path):
    ds = write_foreign(tmp_path / "ds")
    with pytest.raises(ExportError, match=r"episode indices not in the dataset: \[7\] \(it has 2 episodes\)"):
        list(iter_lerobot_episodes(ds, default_mapping(tmp_path), episodes=[7]))


def test_default_cameras_are_the_lwd_names_the_dataset_has(tmp_path, episode_builder):
    """Without `cameras` in the mapping: lwd's camera names the dataset has, or an error listing its cameras."""
    raw = yaml.safe_load(mapping_file(tmp_path).read_text())
    del raw["cameras"]
    msg = error_of(write_foreign(tmp_path / "ds"), mapping_from_dict(raw))
    assert "unknown cameras" in msg and "its cameras: ['observation.images.top']" in msg
    # An lwd store whose episodes have the head camera only exports and imports with the defaults.
    ep = episode_builder("g1a-head-only", 4, Label.SUCCESS, [ActionSource.POLICY] * 4, "look")
    ep.meta.cameras = ("head",)
    ep.images = {"head": ep.images["head"]}
    store = EpisodeStore(tmp_path / "store")
    store.put(ep)
    store.commit_snapshot()
    assert main(["lerobot", str(store.root), str(tmp_path / "lr"), "-q"]) == 0
    (back,) = iter_lerobot_episodes(tmp_path / "lr")
    assert back.meta.cameras == ("head",) and back.images["head"] == ep.images["head"]
