"""The offline generator writes a Table-IV-like buffer the learner can read from an EpisodeStore."""

import numpy as np

from lwd_common.episode import ActionSource, EpisodeKind, Label
from lwd_common.preprocessing import decode_jpeg
from lwd_common.store import EpisodeStore
from lwd_sim.generate_offline import COMPOSITION, main, pick_kind


def test_generator_writes_readable_episodes_of_every_kind(tmp_path, capsys):
    out = tmp_path / "buf"
    assert (
        main(["--out", str(out), "--episodes", "10", "--seed", "1", "--image-size", "16", "--no-progress"])
        == 0
    )
    store = EpisodeStore(out)
    snap = store.latest_snapshot()
    assert snap is not None and len(snap.episode_ids) == 10
    episodes = [store.get(i) for i in snap.episode_ids]
    kinds = {e.meta.kind for e in episodes}
    assert kinds == {EpisodeKind.DEMO, EpisodeKind.ROLLOUT, EpisodeKind.PLAY}
    for e in episodes:
        e.validate()
        assert decode_jpeg(e.images["head"][0]).shape == (16, 16, 3)
        assert np.isfinite(e.action).all() and e.outcome.subtask_score is not None
        if e.meta.kind == EpisodeKind.DEMO:
            assert e.success and (e.source == ActionSource.TELEOP).all()
        if e.meta.kind == EpisodeKind.PLAY:
            assert e.outcome.label == Label.FAILURE
        if e.meta.kind == EpisodeKind.ROLLOUT:
            assert (e.source == ActionSource.POLICY).any()
    assert "wrote 10 episodes" in capsys.readouterr().out


def test_next_kind_is_the_one_furthest_below_its_share():
    assert pick_kind(dict.fromkeys(COMPOSITION, 0.0)) == "demo"
    assert pick_kind({"demo": 100, "rollout_success": 0, "rollout_failure": 0, "play": 0}) == "play"
    assert (
        pick_kind({"demo": 52, "rollout_success": 0, "rollout_failure": 6, "play": 29}) == "rollout_success"
    )
