"""A slow, stalled or flooding peer never holds up the bridge for the other robots."""

import socket

import zmq
from bridgeutil import make_meta, make_steps, outcome, stored_hashes
from conftest import start_bridge

from lwd_common.episode import meta_to_dict
from lwd_common.transport import BridgeClient, ClientConfig, protocol


def test_stalled_and_flooding_peers_do_not_block_a_good_robot(procs, tmp_path, endpoint):
    root = tmp_path / "bridge"
    start_bridge(procs, root, endpoint, "--max-open-episodes", "2")
    host, port = endpoint.removeprefix("tcp://").split(":")
    # 1) raw TCP connections that send half a ZMTP greeting and then stall
    stalled = [socket.create_connection((host, int(port))) for _ in range(20)]
    for s in stalled:
        s.sendall(b"\xff\x00\x00")
    # 2) a robot that opens episodes and goes silent, 3) a peer that floods and never reads replies
    ctx = zmq.Context.instance()
    silent, flood = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    for sock in (silent, flood):
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.connect(endpoint)
    hello = protocol.encode(
        "hello",
        robot_id="ghost",
        policy_version="",
        config_hash=protocol.config_hash(),
        role="stream",
        open_episodes=[],
    )
    silent.send(hello)
    for i in range(3):  # the third is refused: too_many_open
        meta = make_meta("ghost", i)
        silent.send(protocol.encode("ep_begin", episode_id=meta.episode_id, seq=0, meta=meta_to_dict(meta)))
    flood.send(hello.replace(b"ghost", b"flood"))
    for _ in range(6000):
        flood.send(protocol.encode("policy_query", current_version=""))
    good = BridgeClient(
        ClientConfig(
            endpoint=endpoint,
            robot_id="robot0",
            spool_dir=str(tmp_path / "spool"),
            steps_per_chunk=10,
            ack_timeout_s=0.5,
        )
    )
    try:
        meta, steps = make_meta("robot0", 0), make_steps(40, seed=0)
        good.begin(meta)
        for s in steps:
            good.add_step(s)
        good.end(outcome(40, 0))
        assert good.wait_idle(30), good.stats()
    finally:
        good.close()
        silent.close(0)
        flood.close(0)
        for s in stalled:
            s.close()
    assert list(stored_hashes(root)) == [meta.episode_id]
