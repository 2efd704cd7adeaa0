"""The bridge under attack (issue 15), integrity and access: one regression test per finding, small
frames, fast.

Findings 8-10: who may write episodes and drop a robot's partials (roles, origins, CURVE keys,
episode ids of another robot), forged first copies of a frame, ids with a newline and versions that
only compare equal to 1; then an ordinary robot still served, monitor keys, and the connection caps.
Resources (findings 1-7) are in test_attacks_resources.py; shared helpers in attackutil.py.
"""

from __future__ import annotations

import socket
import time

import msgpack
import numpy as np
import pytest
import zmq
from attackutil import PEER, bridge_counter, codes, first, send_all, stored_ids
from attackutil import ep_end as _end
from bridgeutil import episode_frames, hello_frame, make_meta, make_steps
from conftest import start_bridge

from lwd_common import codec
from lwd_common.episode import meta_to_dict
from lwd_common.store import EpisodeStore, check_episode_id
from lwd_common.transport import protocol
from lwd_description.robot import CAMERA_NAMES
from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.core import BridgeCore
from rosutil import wait_for

# --- 8. integrity and access ---------------------------------------------------------------------------------


def test_a_monitor_session_cannot_write_episodes(tmp_path):
    core = BridgeCore(BridgeConfig(root=str(tmp_path / "bridge")))
    assert first(core.handle(b"m", hello_frame("robot0", role="monitor")))["t"] == "welcome"
    frames, _ = episode_frames(index=0)
    assert set(codes(send_all(core, frames, peer=b"m"))) == {"forbidden"}
    assert first(core.handle(b"m", protocol.encode("status_query")))["t"] == "status"
    assert core.assembly.partials == {} and stored_ids(core) == []


def test_plain_tcp_bridge_refuses_a_reachable_address_unless_told(tmp_path):
    from lwd_learner_bridge.server import BridgeServer, InsecureBind, is_loopback, main

    assert (
        is_loopback("tcp://127.0.0.1:5555") and is_loopback("tcp://[::1]:5") and is_loopback("ipc:///tmp/x")
    )
    assert not is_loopback("tcp://0.0.0.0:5555") and not is_loopback("tcp://*:5555")
    config = BridgeConfig(root=str(tmp_path / "bridge"))
    with pytest.raises(InsecureBind, match="--allow-insecure"):
        BridgeServer(config, "tcp://0.0.0.0:0")
    with pytest.raises(SystemExit, match="without CURVE"):
        main(["--root", str(tmp_path / "bridge"), "--bind", "tcp://*:0"])
    server = BridgeServer(config, "tcp://0.0.0.0:0", allow_insecure=True)
    server.close()


def test_another_origin_claiming_a_robot_id_cannot_drop_its_partials(tmp_path):
    core = BridgeCore(BridgeConfig(root=str(tmp_path / "bridge")))
    frames, digest = episode_frames(index=0)
    core.handle(b"robot", hello_frame("robot0"), address="10.0.0.5")
    core.handle(b"robot", frames[0], address="10.0.0.5")
    core.handle(b"liar", hello_frame("robot0"), address="10.6.6.6")  # claims robot0, spool "empty"
    assert list(core.assembly.partials) == ["robot0-ep0000"]
    core.handle(b"restarted", hello_frame("robot0"), address="10.0.0.5")  # the robot itself, restarted
    assert core.assembly.partials == {}


def test_with_curve_only_the_same_key_drops_a_robots_partials(tmp_path):
    core = BridgeCore(
        BridgeConfig(root=str(tmp_path / "bridge")), key_names={"KEY0": "robot0", "KEY1": "robot1"}
    )
    frames, _ = episode_frames(index=0)
    core.handle(b"robot", hello_frame("robot0"), user_id="KEY0")
    core.handle(b"robot", frames[0], user_id="KEY0")
    assert first(core.handle(b"other", hello_frame("robot0"), user_id="KEY1"))["code"] == "key_mismatch"
    assert list(core.assembly.partials) == ["robot0-ep0000"]
    core.handle(b"restarted", hello_frame("robot0"), user_id="KEY0")
    assert core.assembly.partials == {}


def test_a_robot_cannot_claim_episode_ids_of_another(core):
    core.handle(b"evil", hello_frame("evil0"))
    meta = make_meta("evil0", 0)
    meta.episode_id = "robot0-ep0001"  # robot0's next episode
    msg = first(
        core.handle(
            b"evil", protocol.encode("ep_begin", episode_id=meta.episode_id, seq=0, meta=meta_to_dict(meta))
        )
    )
    assert (msg["t"], msg["code"]) == ("error", "not_owner") and core.assembly.partials == {}
    frames, digest = episode_frames(index=1)
    send_all(core, frames)
    assert [protocol.decode(r)["content_hash"] for _, r in core.flush()] == [digest]


# --- 9. a forged first copy of a frame ----------------------------------------------------------------------


def test_a_forged_first_copy_is_refused_and_the_owner_still_gets_its_episode_stored(core):
    frames, digest = episode_frames(index=3, n=30)
    forged = protocol.encode(
        "ep_chunk",
        episode_id="robot0-ep0003",
        seq=1,
        steps=protocol.steps_to_chunk(make_steps(10, seed=99), CAMERA_NAMES),
    )
    assert codes(core.handle(b"forger", hello_frame("robot0"))) == ["welcome"]
    assert codes(core.handle(b"forger", forged)) == ["ack"]  # it arrives first
    assert codes(send_all(core, frames[:2])) == ["ack", "conflicting_frame"]
    assert codes(core.handle(PEER, frames[1])) == ["conflicting_frame"]  # deterministic: the first copy stays
    assert core.stats.counters["conflicting_frames"] == 2
    send_all(core, frames[2:])
    out = [protocol.decode(r) for _, r in core.flush()]
    assert [(m["t"], m["code"]) for m in out] == [("error", "conflicting_frame")]  # dropped, not rejected
    assert core.assembly.partials == {} and stored_ids(core) == []
    msg = first(core.handle(PEER, frames[-1]))  # the robot resends its end; the bridge asks for the rest
    assert msg["t"] == "missing"
    send_all(core, frames)
    assert [protocol.decode(r)["content_hash"] for _, r in core.flush()] == [digest]


def test_identical_copies_are_plain_duplicates(core):
    frames, digest = episode_frames(index=4)
    send_all(core, frames[:2] + frames[:2])
    assert core.stats.counters["conflicting_frames"] == 0 and core.stats.counters["duplicates_dropped"] == 2


# --- 10. ids with a newline, versions that only compare equal to 1 ------------------------------------------


def test_episode_id_with_a_trailing_newline_is_refused(core, tmp_path):
    with pytest.raises(ValueError):
        check_episode_id("evil\n")
    with pytest.raises(ValueError):
        EpisodeStore(tmp_path / "s").path_of("robot0-x\n")
    meta = make_meta("robot0", 0)
    meta.episode_id = "robot0-evil\n"
    msg = first(
        core.handle(
            PEER, protocol.encode("ep_begin", episode_id=meta.episode_id, seq=0, meta=meta_to_dict(meta))
        )
    )
    assert (msg["t"], msg["code"]) == ("error", "bad_field")


@pytest.mark.parametrize("v", [1.0, True, np.array([1]), "1", [1]])
def test_only_the_integer_1_is_schema_version_1(v):
    frame = codec.packb({"v": v, "t": "status_query"})
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode(frame)
    assert err.value.code == "schema_version"


def test_a_good_robot_meanwhile_is_served(core):
    """Sanity: after all of the above kinds of refusals, an ordinary episode still goes through."""
    for bad in (_end(2**64 - 1), msgpack.packb({"v": 1.0, "t": "hello"}), b"\xc1" * 10):
        core.handle(PEER, bad)
    frames, digest = episode_frames(index=9)
    send_all(core, frames)
    assert [protocol.decode(r)["content_hash"] for _, r in core.flush()] == [digest]


def test_a_monitor_key_reads_the_status_and_nothing_else(tmp_path):
    core = BridgeCore(
        BridgeConfig(root=str(tmp_path / "bridge")),
        key_names={"KEY0": "robot0"},
        monitor_keys={"MKEY": "ops"},
    )
    assert first(core.handle(b"m", hello_frame("ops", role="monitor"), user_id="MKEY"))["t"] == "welcome"
    assert first(core.handle(b"m", protocol.encode("status_query")))["t"] == "status"
    frames, _ = episode_frames("ops", 0)
    assert set(codes(send_all(core, frames, peer=b"m"))) == {"forbidden"}
    assert first(core.handle(b"m2", hello_frame("ops"), user_id="MKEY"))["code"] == "key_mismatch"
    assert (
        first(core.handle(b"m3", hello_frame("robot0", role="monitor"), user_id="MKEY"))["code"]
        == "key_mismatch"
    )
    assert first(core.handle(b"r", hello_frame("robot0", role="monitor"), user_id="KEY0"))["t"] == "welcome"


def test_connections_over_the_cap_are_closed(procs, tmp_path, endpoint):
    root = tmp_path / "bridge"
    start_bridge(procs, root, endpoint, "--max-connections", "5", mem_limit_mb=2000)
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    conns = [socket.create_connection((host, int(port))) for _ in range(12)]
    try:

        def closed_by_bridge(s: socket.socket) -> bool:
            s.settimeout(3)
            try:
                return s.recv(1 << 16) == b"" or closed_by_bridge(s)
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                return False

        assert sum(closed_by_bridge(s) for s in conns[5:]) >= 6
    finally:
        for s in conns:
            s.close()
    assert wait_for(lambda: bridge_counter(root, "connections_refused") >= 6, 5)


def test_one_remote_address_cannot_take_every_connection(tmp_path, monkeypatch):
    import lwd_learner_bridge.connections as connections
    from lwd_learner_bridge.stats import FleetStats

    monkeypatch.setattr(connections, "_peer_address", lambda fd: "10.1.2.3")
    stats = FleetStats(time.time())
    router = zmq.Context.instance().socket(zmq.ROUTER)
    guard = connections.ConnectionGuard(
        router, BridgeConfig(root=str(tmp_path), max_connections_per_address=5), stats
    )
    pairs = [socket.socketpair() for _ in range(7)]
    try:
        for ours, _ in pairs:
            guard._accepted(ours.fileno())
        assert stats.counters["connections_refused"] == 2
        for _, theirs in pairs[5:]:
            theirs.settimeout(2)
            assert theirs.recv(10) == b""  # shut down
        assert connections._is_loopback("127.0.0.1") and connections._is_loopback("::ffff:127.0.0.1")
    finally:
        guard.close()
        router.close(0)
        for a, b in pairs:
            a.close()
            b.close()
