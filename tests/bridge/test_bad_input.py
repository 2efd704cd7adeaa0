"""Hostile or broken peers: refused with a clear error, nothing stored, the bridge keeps serving."""

import msgpack
import pytest
import zmq
from bridgeutil import make_meta, make_steps, outcome, stored_hashes
from conftest import start_bridge

from lwd_common.episode import Episode, content_hash
from lwd_common.transport import BridgeClient, BridgeError, ClientConfig, protocol
from lwd_learner_bridge.keys import generate
from rosutil import wait_for

MAX_FRAME = 200_000


def _hello() -> bytes:
    return protocol.encode(
        "hello",
        robot_id="evil0",
        policy_version="",
        config_hash=protocol.config_hash(),
        role="stream",
        open_episodes=[],
    )


def _begin() -> bytes:
    from lwd_common.episode import meta_to_dict

    meta = make_meta("evil0", 0)
    return protocol.encode("ep_begin", episode_id=meta.episode_id, seq=0, meta=meta_to_dict(meta))


BAD_FRAMES = {
    "truncated msgpack": (lambda: _begin()[:-7], "malformed"),
    "not msgpack at all": (lambda: b"\xc1\xc1\xc1garbage", "malformed"),
    "wrong field types": (
        lambda: msgpack.packb({"v": 1, "t": "ep_begin", "episode_id": ["x"], "seq": "0", "meta": {}}),
        "bad_field",
    ),
    "unknown message type": (lambda: msgpack.packb({"v": 1, "t": "format_disk"}), "unknown_type"),
    "wrong schema version": (lambda: msgpack.packb({"v": 2, "t": "hello"}), "schema_version"),
    "oversized frame": (
        lambda: protocol.encode("policy_query", current_version="x" * (MAX_FRAME + 10)),
        "frame_too_large",
    ),
    "bad episode meta": (
        lambda: protocol.encode(
            "ep_begin", episode_id="evil0-ep0000", seq=0, meta={"schema_version": 1, "nonsense": True}
        ),
        "bad_meta",
    ),
    "path traversal id": (
        lambda: protocol.encode("ep_begin", episode_id="../../etc/passwd", seq=0, meta={}),
        "bad_field",
    ),
}


@pytest.fixture
def bridge(procs, tmp_path, endpoint):
    root = tmp_path / "bridge"
    start_bridge(procs, root, endpoint, "--max-frame-bytes", str(MAX_FRAME))
    return root


def raw_socket(endpoint: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def ask(sock: zmq.Socket, frame: bytes) -> dict:
    sock.send(frame)
    assert sock.poll(5000), "bridge did not answer"
    return protocol.decode(sock.recv())


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_frame_gets_a_clear_error_and_nothing_is_stored(bridge, endpoint, case):
    make, code = BAD_FRAMES[case]
    sock = raw_socket(endpoint)
    try:
        assert ask(sock, _hello())["t"] == "welcome"
        reply = ask(sock, make())
        assert (reply["t"], reply["code"]) == ("error", code), reply
        assert len(reply["message"]) > 10
        assert ask(sock, protocol.encode("status_query"))["t"] == "status"  # still serving
    finally:
        sock.close(0)
    assert stored_hashes(bridge) == {}


def test_bridge_keeps_serving_a_good_robot_while_another_sends_garbage(bridge, endpoint, tmp_path):
    evil = raw_socket(endpoint)
    good = BridgeClient(
        ClientConfig(
            endpoint=endpoint,
            robot_id="robot0",
            spool_dir=str(tmp_path / "spool"),
            steps_per_chunk=10,
            ack_timeout_s=0.3,
        )
    )
    try:
        evil.send(_hello())
        meta, steps = make_meta("robot0", 1), make_steps(30, seed=1)
        good.begin(meta)
        for i, s in enumerate(steps):
            good.add_step(s)
            for make, _ in BAD_FRAMES.values():
                if i % 5 == 0:
                    evil.send(make())
        good.end(outcome(30, 1))
        assert good.wait_idle(20), good.stats()
    finally:
        good.close()
        evil.close(0)
    assert stored_hashes(bridge) == {
        meta.episode_id: content_hash(Episode.from_steps(meta, steps, outcome(30, 1)))
    }


@pytest.fixture
def curve_bridge(procs, tmp_path, endpoint):
    keys, allow = tmp_path / "keys", tmp_path / "allow"
    for name in ("bridge", "robot0", "robot1"):
        generate(keys, name)
    allow.mkdir()
    (allow / "robot0.key").write_bytes((keys / "robot0.key").read_bytes())  # robot1 is not allowed
    root = tmp_path / "bridge"
    start_bridge(
        procs,
        root,
        endpoint,
        "--curve-secret-key",
        str(keys / "bridge.key_secret"),
        "--allow-keys",
        str(allow),
    )
    return root, keys


def curve_client(tmp_path, endpoint, keys, key_name: str, robot_id: str) -> BridgeClient:
    return BridgeClient(
        ClientConfig(
            endpoint=endpoint,
            robot_id=robot_id,
            spool_dir=str(tmp_path / f"spool-{key_name}-{robot_id}"),
            steps_per_chunk=10,
            curve_secret_key_file=str(keys / f"{key_name}.key_secret"),
            server_public_key_file=str(keys / "bridge.key"),
        )
    )


def test_allowlisted_curve_robot_streams_encrypted(curve_bridge, tmp_path, endpoint):
    root, keys = curve_bridge
    client = curve_client(tmp_path, endpoint, keys, "robot0", "robot0")
    try:
        meta, steps = make_meta("robot0", 0), make_steps(20, seed=0)
        client.begin(meta)
        for s in steps:
            client.add_step(s)
        client.end(outcome(20, 0))
        assert client.wait_idle(20), client.stats()
    finally:
        client.close()
    assert list(stored_hashes(root)) == [meta.episode_id]


def test_unknown_curve_key_is_refused_and_logged(curve_bridge, tmp_path, endpoint, procs):
    root, keys = curve_bridge
    client = curve_client(tmp_path, endpoint, keys, "robot1", "robot1")
    try:
        client.begin(make_meta("robot1", 0))
        with pytest.raises(BridgeError, match="refused our CURVE key"):
            client.wait_connected(10)
    finally:
        client.close()
    assert wait_for(lambda: "refused connection with unknown CURVE key" in procs.log("bridge"), 5)
    assert stored_hashes(root) == {}


def test_no_curve_at_all_is_refused_by_a_curve_bridge(curve_bridge, endpoint):
    sock = raw_socket(endpoint)
    try:
        sock.send(_hello())
        assert not sock.poll(1500)
    finally:
        sock.close(0)


def test_allowed_key_cannot_claim_another_robot_id(curve_bridge, tmp_path, endpoint):
    _, keys = curve_bridge
    client = curve_client(tmp_path, endpoint, keys, "robot0", "robot7")
    try:
        with pytest.raises(BridgeError, match="belongs to 'robot0', not 'robot7'"):
            client.wait_connected(10)
    finally:
        client.close()
