"""Both exports on a store the simulator's offline generator wrote (real recorder output, ~1 s to make)."""

from __future__ import annotations

import pytest
from rosbags.highlevel import AnyReader

from lwd_common.episode import content_hash
from lwd_common.export.__main__ import main
from lwd_common.store import EpisodeStore


@pytest.fixture(scope="module")
def sim_store(tmp_path_factory):
    generate_offline = pytest.importorskip("lwd_sim.generate_offline")
    root = tmp_path_factory.mktemp("sim") / "store"
    assert (
        generate_offline.main(["--out", str(root), "--episodes", "2", "--image-size", "16", "--no-progress"])
        == 0
    )
    return EpisodeStore(root)


def test_sim_store_exports_to_mcap_and_lerobot_and_back(sim_store, tmp_path):
    ids = list(sim_store.latest_snapshot().episode_ids)
    assert main(["mcap", str(sim_store.root), str(tmp_path / "mcap"), "-q"]) == 0
    for eid in ids:
        ep = sim_store.get(eid)
        with AnyReader([tmp_path / "mcap" / f"{eid}.mcap"]) as reader:
            counts = {c.topic: c.msgcount for c in reader.connections}
        r = ep.meta.robot_id
        assert (
            counts[f"/{r}/joint_states"] == counts[f"/{r}/camera/head/image_raw/compressed"] == ep.num_steps
        )
    assert main(["lerobot", str(sim_store.root), str(tmp_path / "lr"), "-q"]) == 0
    assert main(["import", str(tmp_path / "lr"), str(tmp_path / "back"), "-q"]) == 0
    back = EpisodeStore(tmp_path / "back")
    assert [content_hash(back.get(e)) for e in ids] == [content_hash(sim_store.get(e)) for e in ids]
