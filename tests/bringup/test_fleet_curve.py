"""CURVE in the fleet bring-up: on whenever the bridge is reachable from elsewhere, keys made once."""

from __future__ import annotations

import pytest

from lwd_actor.bringup.description import FleetConfigError, expand_fleet
from lwd_actor.bringup.fleet_keys import ensure_fleet_keys


def fleet(tmp_path, **bridge):
    return expand_fleet(
        {"mode": "real", "num_robots": 2, "run_dir": str(tmp_path), "bridge": {"enabled": True, **bridge}}
    )


def test_a_loopback_bridge_stays_plain_tcp(tmp_path):
    f = fleet(tmp_path, bind="tcp://127.0.0.1:5555")
    assert f.curve_keys_dir is None
    assert "--curve-secret-key" not in f.by_name("bridge").args
    assert "curve_secret_key_file" not in f.by_name("robot0.actor").parameters
    assert ensure_fleet_keys(f) is None


def test_a_reachable_bridge_turns_curve_on_for_the_bridge_and_every_actor(tmp_path):
    f = fleet(tmp_path, bind="tcp://0.0.0.0:5555")
    keys = tmp_path / "keys"
    args = f.by_name("bridge").args
    assert args[args.index("--curve-secret-key") + 1] == str(keys / "bridge.key_secret")
    assert args[args.index("--allow-keys") + 1] == str(keys / "allow")
    actor = f.by_name("robot1.actor").parameters
    assert actor["curve_secret_key_file"] == str(keys / "robot1.key_secret")
    assert actor["bridge_public_key_file"] == str(keys / "bridge.key")


def test_keys_are_made_once_and_every_robot_is_in_the_allowlist(tmp_path):
    f = fleet(tmp_path, bind="tcp://0.0.0.0:5555")
    assert "made keys for bridge, robot0, robot1" in ensure_fleet_keys(f)
    keys = tmp_path / "keys"
    assert sorted(p.name for p in (keys / "allow").iterdir()) == ["robot0.key", "robot1.key"]
    assert (keys / "robot0.key").read_bytes() == (keys / "allow" / "robot0.key").read_bytes()
    assert (keys / "bridge.key_secret").stat().st_mode & 0o077 == 0
    before = (keys / "bridge.key_secret").read_bytes()
    assert "keys present" in ensure_fleet_keys(f)
    assert (keys / "bridge.key_secret").read_bytes() == before


def test_curve_can_be_forced_on_for_a_loopback_bridge_or_off(tmp_path):
    assert fleet(tmp_path, bind="tcp://127.0.0.1:5555", curve=True).curve_keys_dir == tmp_path / "keys"
    assert fleet(tmp_path, bind="tcp://0.0.0.0:5555", curve=False).curve_keys_dir is None
    with pytest.raises(FleetConfigError, match="bridge.curve"):
        fleet(tmp_path, curve="maybe")


def test_robots_of_a_bridge_elsewhere_need_its_public_key(tmp_path):
    f = expand_fleet(
        {
            "mode": "real",
            "num_robots": 1,
            "run_dir": str(tmp_path),
            "actor_params": {"sink": "bridge", "bridge_endpoint": "tcp://10.0.0.5:5555"},
            "bridge": {"enabled": False, "endpoint": "tcp://10.0.0.5:5555"},
        }
    )
    assert f.by_name("robot0.actor").parameters["bridge_public_key_file"] == str(
        tmp_path / "keys" / "bridge.key"
    )
    with pytest.raises(FleetConfigError, match="copy its public key"):
        ensure_fleet_keys(f)
