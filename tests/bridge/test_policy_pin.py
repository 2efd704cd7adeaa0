"""Operators pin and revert the fleet's policy: real store files, a real bridge process, the real client.

The robot client only ever moves to a numerically newer version, so a pin that
goes back is served under a name of a new pin epoch (same bytes and sha256);
these tests drive `python -m lwd_learner_bridge.policy_admin` and check what an
unchanged `BridgeClient` ends up running.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import start_bridge

from lwd_common.policy_store import PolicyStore
from lwd_common.transport import BridgeClient, ClientConfig
from rosutil import wait_for

BLOBS = [b"policy one" * 300, b"policy two" * 300, b"policy three" * 300]


def admin(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lwd_learner_bridge.policy_admin", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def publish_three(root: Path) -> PolicyStore:
    store = PolicyStore(root / "policies")
    for step, blob in enumerate(BLOBS):
        store.publish(blob, training_step=step)
    return store


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "bridge" / "policies").mkdir(parents=True)
    return tmp_path / "bridge"


@pytest.fixture
def bridge(procs, root, endpoint) -> Path:
    start_bridge(procs, root, endpoint)
    return root


@pytest.fixture
def robot(tmp_path, endpoint):
    client = BridgeClient(
        ClientConfig(endpoint=endpoint, robot_id="robot0", spool_dir=str(tmp_path / "spool"))
    )
    yield client
    client.close()


# --- the pin in the store ----------------------------------------------------------------------------------


def test_pin_writes_the_pin_file_with_who_when_and_why(root):
    publish_three(root)
    before = time.time()
    out = admin(root, "pin", "v000002", "--why", "v000003 drops cubes", "--by", "alice")
    assert out.returncode == 0, out.stderr
    pin = json.loads((root / "policies" / "pin.json").read_text())
    assert (pin["pinned"], pin["action"], pin["by"], pin["why"]) == (
        "v000002",
        "pin",
        "alice",
        "v000003 drops cubes",
    )
    assert before <= pin["at"] <= time.time()


def test_every_pin_change_is_appended_to_the_log_and_earlier_lines_stay(root):
    publish_three(root)
    assert admin(root, "pin", "v000001", "-m", "first", "--by", "alice").returncode == 0
    first_line = (root / "policies" / "pin_log.jsonl").read_text()
    assert admin(root, "unpin", "-m", "fixed", "--by", "bob").returncode == 0
    assert admin(root, "revert", "-m", "again", "--by", "carol").returncode == 0
    text = (root / "policies" / "pin_log.jsonl").read_text()
    assert text.startswith(first_line)
    entries = [json.loads(line) for line in text.splitlines()]
    assert [(e["action"], e["by"], e["why"], e["pinned"]) for e in entries] == [
        ("pin", "alice", "first", "v000001"),
        ("unpin", "bob", "fixed", None),
        ("revert", "carol", "again", "v000002"),
    ]


def test_pin_of_an_unpublished_version_is_refused_and_changes_nothing(root):
    publish_three(root)
    out = admin(root, "pin", "v000009", "-m", "typo")
    assert out.returncode == 1 and "no policy version v000009" in out.stderr
    assert (
        not (root / "policies" / "pin.json").exists() and not (root / "policies" / "pin_log.jsonl").exists()
    )


def test_pin_needs_a_reason(root):
    publish_three(root)
    out = admin(root, "pin", "v000001")
    assert out.returncode == 2 and "--why" in out.stderr
    assert not (root / "policies" / "pin.json").exists()


def test_revert_pins_the_version_before_the_newest(root):
    store = publish_three(root)
    assert admin(root, "revert", "-m", "v000003 is worse").returncode == 0
    assert store.pin_state().pinned == "v000002"


def test_revert_while_pinned_steps_back_one_more_version(root):
    store = publish_three(root)
    admin(root, "revert", "-m", "v000003 is worse")
    assert admin(root, "revert", "-m", "v000002 too").returncode == 0
    assert store.pin_state().pinned == "v000001"


def test_revert_from_the_first_version_is_refused(root):
    store = PolicyStore(root / "policies")
    store.publish(BLOBS[0], training_step=0)
    out = admin(root, "revert", "-m", "nowhere to go")
    assert out.returncode == 1 and "first version" in out.stderr
    assert store.pin_state().pinned is None


def test_pinning_leaves_the_learners_versions_untouched(root):
    store = publish_three(root)
    admin(root, "pin", "v000001", "-m", "hold")
    assert store.versions() == ["v000001", "v000002", "v000003"] and store.latest().version == "v000003"
    assert store.publish(b"policy four", training_step=4).version == "v000004"


def test_served_names_only_ever_increase_across_pins_unpins_and_publishes(root):
    store = publish_three(root)
    served = [store_served(root)]
    for args in (("revert",), ("revert",), ("unpin",), ("pin", "v000003"), ("pin", "v000001")):
        assert admin(root, *args, "-m", "step").returncode == 0
        served.append(store_served(root))
    store.publish(b"policy four", training_step=4)
    admin(root, "unpin", "-m", "done")
    served.append(store_served(root))
    numbers = [int(v[1:]) for v in served]
    assert (
        numbers == sorted(numbers) and len(set(numbers)) == len(numbers) - 1
    )  # pin v000003 == unpinned v000003
    assert [v[-6:] for v in served] == ["000003", "000002", "000001", "000003", "000003", "000001", "000004"]


def store_served(root: Path) -> str:
    out = admin(root, "status", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["serving_as"]


# --- what the bridge serves to an unchanged robot client -------------------------------------------------


def test_never_pinned_bridge_serves_published_versions_under_their_own_names(bridge, robot):
    store = publish_three(bridge)
    got = robot.fetch_policy_if_newer("")
    assert got.version == "v000003" and got.info == store.get("v000003")


def test_robot_on_the_newest_version_gets_the_pinned_older_one(bridge, robot):
    publish_three(bridge)
    assert robot.fetch_policy_if_newer("").version == "v000003"
    assert admin(bridge, "pin", "v000001", "-m", "v000002 and v000003 regressed").returncode == 0
    got = robot.fetch_policy_if_newer("v000003")
    assert got is not None and got.path.read_bytes() == BLOBS[0]
    assert got.info.extra["published_version"] == "v000001" and got.info.extra["pinned"] is True


def test_learner_publishing_while_pinned_does_not_reach_robots(bridge, robot):
    store = publish_three(bridge)
    admin(bridge, "pin", "v000001", "-m", "hold")
    pinned = robot.fetch_policy_if_newer("v000003")
    store.publish(b"policy four" * 300, training_step=4)
    assert robot.fetch_policy_if_newer(pinned.version) is None


def test_unpin_moves_robots_on_the_pinned_version_to_the_newest(bridge, robot):
    store = publish_three(bridge)
    admin(bridge, "revert", "-m", "hold")
    pinned = robot.fetch_policy_if_newer("v000003")
    store.publish(b"policy four" * 300, training_step=4)
    assert admin(bridge, "unpin", "-m", "v000004 fixes it").returncode == 0
    got = robot.fetch_policy_if_newer(pinned.version)
    assert got is not None and got.path.read_bytes() == b"policy four" * 300


def test_status_shows_newest_pinned_and_the_version_each_robot_loaded(bridge, robot):
    publish_three(bridge)
    admin(bridge, "pin", "v000002", "-m", "hold", "--by", "alice")
    robot.wait_connected(10)
    got = robot.fetch_policy_if_newer("v000003")
    robot.report_policy_loaded(got.version)

    def robot0_loaded() -> str:
        robots = json.loads((bridge / "status.json").read_text())["robots"]
        return robots.get("robot0", {}).get("policy_version", "")

    assert wait_for(lambda: robot0_loaded() == "v000002", 10)
    view = json.loads(admin(bridge, "status", "--json").stdout)
    assert (view["newest"], view["pinned"], view["serving"]) == ("v000003", "v000002", "v000002")
    assert view["robots"]["robot0"] == {
        **view["robots"]["robot0"],
        "loaded": "v000002",
        "served_as": got.version,
        "on_target": True,
    }
    text = admin(bridge, "status").stdout
    assert "pinned   v000002" in text and "alice" in text
    assert next(line for line in text.splitlines() if line.startswith("robot0")).split()[1:4] == [
        "v000002",
        got.version,
        "yes",
    ]
