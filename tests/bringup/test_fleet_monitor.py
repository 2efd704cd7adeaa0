"""The fleet monitor reads progress from the bridge's store: per task, per robot and per policy version."""

import numpy as np

from lwd_actor.bringup.monitor import FleetMonitor
from lwd_common.episode import (
    ActionSource,
    Episode,
    EpisodeKind,
    EpisodeMeta,
    EpisodeOutcome,
    Label,
    StepRecord,
)
from lwd_common.preprocessing import encode_jpeg
from lwd_common.store import EpisodeStore
from lwd_description.robot import CAMERA_NAMES, NUM_JOINTS


def episode(eid: str, robot: str, version: str, success: bool, teleop_steps: int, n: int = 10) -> Episode:
    img = encode_jpeg(np.zeros((8, 8, 3), np.uint8))
    steps = [
        StepRecord(
            i,
            i / 30,
            {c: img for c in CAMERA_NAMES},
            np.zeros(NUM_JOINTS, np.float32),
            np.zeros(NUM_JOINTS, np.float32),
            ActionSource.TELEOP if i >= n - teleop_steps else ActionSource.POLICY,
            0,
            "teleop" if i >= n - teleop_steps else version,
        )
        for i in range(n)
    ]
    meta = EpisodeMeta(eid, robot, "can_to_bin", "put the red can in the left bin", EpisodeKind.ROLLOUT)
    return Episode.from_steps(meta, steps, EpisodeOutcome(Label.SUCCESS if success else Label.FAILURE, n))


def make_monitor(tmp_path) -> FleetMonitor:
    store = EpisodeStore(tmp_path / "bridge" / "store")
    for k, (robot, version, success, teleop) in enumerate(
        [
            ("robot0", "v000001", False, 5),
            ("robot1", "v000001", False, 5),
            ("robot0", "v000002", True, 2),
            ("robot1", "v000002", True, 0),
        ]
    ):
        store.put(episode(f"{robot}-ep{k}", robot, version, success, teleop))
    store.commit_snapshot()
    return FleetMonitor(tmp_path / "bridge", tmp_path / "learner", ("robot0", "robot1"))


def test_report_shows_success_and_teleop_share_per_policy_version(tmp_path):
    text = make_monitor(tmp_path).report()
    assert "4 episodes" in text
    assert "v000001 0% 0% 50% (n=2)" in text and "v000002 100% 50% 10% (n=2)" in text
    assert "learner: starting" in text  # no metrics yet


def test_only_a_success_without_any_teleoperated_step_counts_as_the_policys_own(tmp_path):
    monitor = make_monitor(tmp_path)
    monitor.refresh()
    alone = sorted((e.episode_id, e.succeeded_alone) for e in monitor.episodes.values())
    assert alone == [
        ("robot0-ep0", False),
        ("robot0-ep2", False),
        ("robot1-ep1", False),
        ("robot1-ep3", True),
    ]


def test_many_policy_versions_are_pooled_into_consecutive_bands():
    from lwd_actor.bringup.monitor import _version_bands

    by_version = {f"v{i:06d}": [i] for i in range(1, 26)}  # 25 versions, one "episode" each
    bands = _version_bands(by_version, max_bars=12)
    assert list(bands)[:2] == ["v1-3", "v4-6"] and list(bands)[-1] == "v25"
    assert [e for v in bands.values() for e in v] == list(range(1, 26))
    assert list(_version_bands({"v000001": [], "v000002": []}, max_bars=12)) == ["v1", "v2"]


def test_plots_are_written_without_a_learner_checkpoint(tmp_path):
    written = make_monitor(tmp_path).write_plots(tmp_path / "plots")
    assert [p.name for p in written] == ["success_rate.png"] and written[0].stat().st_size > 0


def test_episodes_run_under_a_pin_count_for_the_published_version():
    from lwd_actor.bringup.monitor import _published

    assert _published("v1000000003") == "v000003"
    assert _published("v000007") == "v000007"
    assert _published("ros-v1") == "ros-v1"


def test_no_value_plot_is_attempted_before_the_learner_has_checkpointed(tmp_path, capfd):
    monitor = make_monitor(tmp_path)
    (tmp_path / "learner" / "checkpoints").mkdir(parents=True)  # a learner stopped before its first save
    written = monitor.write_plots(tmp_path / "plots")
    assert [p.name for p in written] == ["success_rate.png"]
    assert "error" not in capfd.readouterr().err
