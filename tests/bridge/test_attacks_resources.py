"""The bridge under attack (issue 15), resources: one regression test per finding, small frames, fast,
memory-capped.

Findings 1-7: a huge seq in ep_end, a nested meta.extra that killed the episode writers, one robot
filling the buffer (decoded memory, replays keeping partials alive), frames of empty arrays, memory
held by the transport, unbounded state, log flooding. Integrity and access (8-10) and the connection
caps are in test_attacks_access.py; shared helpers in attackutil.py.

Most talk to `BridgeCore` directly; the transport findings (5) and the CURVE log
flood (7) need the server process, started with its address space capped.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
import tracemalloc

import msgpack
import numpy as np
import pytest
import zmq
from attackutil import PEER, bridge_counter, codes, first, new_core, send_all, stored_ids, wait_committed
from attackutil import ep_end as _end
from bridgeutil import episode_frames, hello_frame, make_meta, proc_memory
from conftest import start_bridge

from lwd_common import codec
from lwd_common.episode import meta_to_dict
from lwd_common.policy_store import PolicyStore
from lwd_common.transport import protocol
from lwd_description.robot import CAMERA_NAMES, NUM_JOINTS
from lwd_learner_bridge.core import BridgeCore
from lwd_learner_bridge.status import ERROR, fleet_health
from rosutil import wait_for

# --- 1. a huge seq in ep_end ---------------------------------------------------------------------------------


def test_ep_end_with_a_huge_seq_is_refused_at_once(core):
    for seq in (2_000_000, 2**64 - 1):  # the first stalled the loop 2.5 s, the second froze it
        t0 = time.monotonic()
        msg = first(core.handle(PEER, _end(seq)))
        assert (msg["t"], msg["code"]) == ("error", "bad_field") and time.monotonic() - t0 < 0.5
    t0 = time.monotonic()  # the largest legal seq: `missing` comes without walking every seq
    msg = first(core.handle(PEER, _end(protocol.MAX_SEQ, "robot0-ep0010")))
    assert msg["t"] == "missing" and msg["seqs"][:3] == [0, 1, 2] and len(msg["seqs"]) == 1000
    assert time.monotonic() - t0 < 0.5


# --- 2. a nested meta.extra killed the episode writers -------------------------------------------------------


def _nested(depth: int) -> dict:
    d: dict = {}
    for _ in range(depth):
        d = {"x": d}
    return d


def _evil_episode(index: int) -> list[bytes]:
    """An episode whose meta.extra is nested 505 deep (built by hand: asdict itself would recurse too far)."""
    frames, _ = episode_frames(index=index, n=5)
    meta = meta_to_dict(make_meta("robot0", index))
    meta["extra"] = _nested(505)
    begin = msgpack.packb({"v": 1, "t": "ep_begin", "episode_id": meta["episode_id"], "seq": 0, "meta": meta})
    return [begin, *frames[1:]]


def test_deeply_nested_meta_is_refused_and_the_writers_keep_committing(tmp_path):
    core = new_core(tmp_path, background=True, writer_threads=2)
    try:
        for index in (7, 8):  # one per writer thread: each of these used to kill one
            replies = send_all(core, _evil_episode(index))
            assert codes(replies)[0] == "bad_meta", codes(replies)
        frames, digest = episode_frames(index=1)
        send_all(core, frames)
        wait_committed(core, "robot0-ep0001")
        assert stored_ids(core) == ["robot0-ep0001"] and core.health()["level"] == "ok"
    finally:
        core.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_writer_is_restarted_its_episode_retried_and_health_turns_red(tmp_path, monkeypatch):
    import lwd_learner_bridge.episode_writer as episode_writer

    real, died = episode_writer.write_safely, []

    def dies_once(*args):
        if not died:
            died.append(True)
            raise SystemExit("simulated writer death")  # ends the thread, like an uncaught error did
        return real(*args)

    monkeypatch.setattr(episode_writer, "write_safely", dies_once)
    core = new_core(tmp_path, background=True, writer_threads=1)
    try:
        frames, digest = episode_frames(index=2)
        send_all(core, frames)
        assert wait_for(lambda: not core.writer._threads[0].is_alive(), 10)
        core.supervise()
        replies = [protocol.decode(r) for _, r in core.flush()]
        assert [(m["t"], m["code"]) for m in replies] == [("error", "internal")]  # robot retries, not rejects
        status = core.status()
        assert status["health"]["level"] == "error" and "died" in status["health"]["problems"][0]
        assert status["counters"]["writer_restarts"] == 1 and fleet_health(status)[0][0] == ERROR
        assert (
            first(core.handle(PEER, frames[-1]))["t"] == "missing"
        )  # the robot resends; the new writer works
        send_all(core, frames)
        committed = [m for m in wait_committed(core, "robot0-ep0002") if m["t"] == "committed"]
        assert committed[0]["content_hash"] == digest
    finally:
        core.close()


# --- 3. one robot filling the buffer; decoded memory; replays keeping partials alive ---------------------------


def _hog(core: BridgeCore, episodes: int = 4, n: int = 150) -> list[str | None]:
    assert first(core.handle(b"hog", hello_frame("hog")))["t"] == "welcome"
    out = []
    for i in range(episodes):
        frames, _ = episode_frames("hog", i, n=n)
        out += codes(send_all(core, frames[:-1], peer=b"hog"))  # never ends them
    return out


def test_one_robot_cannot_take_more_than_its_share_and_the_others_still_commit(tmp_path):
    core = new_core(
        tmp_path, max_episode_bytes=600_000, max_robot_buffered_bytes=700_000, max_buffered_bytes=1_200_000
    )
    assert "busy" in _hog(core)
    assert core.assembly._robot_bytes["hog"] <= 700_000
    frames, digest = episode_frames(index=3)
    assert "busy" not in codes(send_all(core, frames))
    assert [protocol.decode(r)["t"] for _, r in core.flush()] == ["committed"]


def test_a_robot_under_its_fair_share_evicts_the_hog(tmp_path):
    core = new_core(tmp_path, max_episode_bytes=600_000, max_buffered_bytes=1_200_000)
    _hog(core)  # may fill the whole buffer: its own cap (1 GiB) is more than the buffer
    frames, digest = episode_frames(index=4)
    assert "busy" not in codes(send_all(core, frames))
    assert [protocol.decode(r)["content_hash"] for _, r in core.flush()] == [digest]
    assert core.stats.counters["partials_evicted"] >= 1 and core.assembly.buffered <= 1_200_000


def _tiny_steps_chunk(n: int) -> dict:
    return {
        "step": np.arange(n, dtype=np.int64),
        "stamp": np.zeros(n),
        "source": np.zeros(n, np.int8),
        "joint_pos": np.zeros((n, NUM_JOINTS), np.float32),
        "action": np.zeros((n, NUM_JOINTS), np.float32),
        "chunk_id": np.zeros(n, np.int64),
        "policy_version": [f"v{i % 7}" for i in range(n)],
        "images": {c: [b"\xff"] * n for c in CAMERA_NAMES},
    }


def test_buffer_limits_count_decoded_memory_not_wire_bytes(core):
    frame = protocol.encode("ep_chunk", episode_id="robot0-ep0005", seq=1, steps=_tiny_steps_chunk(4000))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert codes(core.handle(PEER, frame)) == ["ack"]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 4000 tiny steps: ~4x their wire size once decoded into per-step objects; the count must cover it
    assert core.assembly.buffered >= 0.9 * held, (core.assembly.buffered, held, len(frame))


def test_replayed_duplicates_do_not_keep_a_partial_alive(core):
    frames, _ = episode_frames(index=6)
    core.handle(PEER, frames[0])
    p = core.assembly.partials["robot0-ep0006"]
    p.last_update -= core.config.partial_timeout_s - 5
    quiet_since = p.last_update
    assert codes(core.handle(PEER, frames[0])) == ["ack"] and p.last_update == quiet_since
    core.expire(now=time.time() + 10)
    assert core.assembly.partials == {} and core.assembly.buffered == 0


# --- 4. a frame of empty arrays -------------------------------------------------------------------------------


def test_frames_of_empty_arrays_or_lists_are_refused_fast_and_small(core):
    empty = msgpack.ExtType(codec.NDARRAY_EXT, msgpack.packb(("<f4", [0])))
    bombs = [[empty] * 150_000, [[[]] * 100] * 15_000, [[empty] * 50] * 3000]
    for bomb in bombs:
        frame = msgpack.packb(
            {"v": 1, "t": "ep_chunk", "episode_id": "robot0-ep0001", "seq": 1, "steps": {"step": bomb}}
        )
        t0 = time.monotonic()
        msg = first(core.handle(PEER, frame))
        assert (msg["t"], msg["code"]) == ("error", "malformed") and time.monotonic() - t0 < 1.0
        tracemalloc.start()
        try:
            core.handle(PEER, frame)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 24 << 20, peak


# --- 5. memory held by the transport ---------------------------------------------------------------------------


def _zmtp_connect(endpoint: str) -> socket.socket:
    """A raw ZMTP 3.0 NULL-mechanism DEALER: what libzmq would never send, we can."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.sendall(b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32)
    greeting = b""
    while len(greeting) < 64:
        greeting += s.recv(64 - len(greeting))
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    s.sendall(b"\x04" + bytes([len(body)]) + body)
    return s


def test_unterminated_multipart_message_is_cut_and_logged(procs, tmp_path, endpoint):
    root = tmp_path / "bridge"
    bridge = start_bridge(procs, root, endpoint, "--max-frame-bytes", str(1 << 20), mem_limit_mb=2000)
    base = proc_memory(bridge.pid)["VmRSS"]
    part = b"\x03" + struct.pack(">Q", 1 << 20) + b"x" * (1 << 20)  # MORE | LONG, 1 MiB, never a last part
    sent = 0
    s = _zmtp_connect(endpoint)
    s.settimeout(10)
    try:
        for _ in range(160):
            s.sendall(part)
            sent += 1
    except OSError:
        pass  # the bridge shut the connection down
    finally:
        s.close()
    growth = proc_memory(bridge.pid)["VmHWM"] - base
    assert sent < 160 and growth < 80 << 20, (sent, growth)
    assert wait_for(lambda: "closing connection" in procs.log("bridge"), 10)
    assert wait_for(lambda: bridge_counter(root, "connections_cut") >= 1, 5)


def test_unread_policy_replies_do_not_pile_up_in_the_bridge(procs, tmp_path, endpoint):
    root = tmp_path / "bridge"
    bridge = start_bridge(procs, root, endpoint, mem_limit_mb=2000)
    info = PolicyStore(root / "policies").publish(np.random.default_rng(0).bytes(4 << 20), training_step=1)
    base = proc_memory(bridge.pid)["VmRSS"]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1)  # this side stops reading too: replies back up into the bridge
    sock.setsockopt(zmq.RCVBUF, 1 << 16)
    sock.connect(endpoint)
    try:
        sock.send(hello_frame("greedy", role="policy"))
        time.sleep(0.3)
        for _ in range(60):  # 240 MB of replies if they were all queued
            sock.send(protocol.encode("policy_fetch", version=info.version, offset=0, length=4 << 20))
        time.sleep(2.0)
        growth = proc_memory(bridge.pid)["VmHWM"] - base
        assert growth < 64 << 20, growth
    finally:
        sock.close(0)
    assert wait_for(lambda: bridge_counter(root, "replies_dropped") > 0, 5)


# --- 6. unbounded state --------------------------------------------------------------------------------------


def test_status_query_needs_a_session_and_the_robot_table_is_bounded(tmp_path):
    core = new_core(tmp_path, max_robots=20)
    msg = first(core.handle(b"anon", protocol.encode("status_query")))
    assert (msg["t"], msg["code"]) == ("error", "no_session")
    big = first(core.handle(b"p-big", hello_frame("robot9", policy_version="x" * 1_000_000)))
    assert (big["t"], big["code"]) == ("error", "bad_field")
    for i in range(300):
        core.handle(f"p{i}".encode(), hello_frame(f"robot{i}", policy_version="v000001"))
    status = core.status()
    assert len(status["robots"]) <= 20 and len(json.dumps(status)) < 64_000
    assert core.stats.counters["robots_forgotten"] >= 280


class _CountingDict(dict):
    """Counts how many entries anyone walks (a per-frame walk over every partial is what slowed probes)."""

    walked = 0

    def values(self):
        _CountingDict.walked += len(self)
        return super().values()

    def items(self):
        _CountingDict.walked += len(self)
        return super().items()

    def __iter__(self):
        _CountingDict.walked += len(self)
        return super().__iter__()


def test_frames_do_not_walk_every_partial_episode(tmp_path):
    core = new_core(tmp_path)
    for r in range(250):  # 1000 partial episodes of 250 robots
        peer = f"p{r}".encode()
        core.handle(peer, hello_frame(f"bot{r}"))
        for i in range(4):
            meta = make_meta(f"bot{r}", i)
            core.handle(
                peer, protocol.encode("ep_begin", episode_id=meta.episode_id, seq=0, meta=meta_to_dict(meta))
            )
    assert len(core.assembly.partials) == 1000
    core.assembly.partials = _CountingDict(core.assembly.partials)
    _CountingDict.walked = 0
    frames, _ = episode_frames(index=11)
    send_all(core, frames)
    core.flush()
    assert _CountingDict.walked < 100 and stored_ids(core) == ["robot0-ep0011"]


# --- 7. log flooding ------------------------------------------------------------------------------------------


def test_refusals_are_logged_clipped_and_rate_limited(core, caplog):
    caplog.set_level(logging.INFO, logger="lwd.bridge")
    for i in range(100):
        core.handle(PEER, msgpack.packb({"v": 1, "t": f"{i}" + "y" * 100_000}))  # unknown type, 100 kB of it
    text = "".join(r.getMessage() for r in caplog.records)
    assert len(caplog.records) <= 40 and len(text) < 40_000, (len(caplog.records), len(text))
    assert core.stats.counters["log_suppressed"] >= 60 and core.stats.counters["rejected"] == 100


@pytest.mark.parametrize(
    "v, t",
    [
        (1, [1]),
        (1, {"a": 1}),
        (1, None),
        (1, 1.5),
        (1.0, "status_query"),
        (True, "status_query"),
        ([1], "status_query"),
        ("1", "status_query"),
        (np.array([1]), "status_query"),
    ],
)
def test_malformed_t_and_v_are_refused_without_an_internal_error(core, caplog, v, t):
    caplog.set_level(logging.INFO, logger="lwd.bridge")
    msg = first(core.handle(PEER, codec.packb({"v": v, "t": t})))
    assert msg["t"] == "error" and msg["code"] in ("schema_version", "unknown_type"), msg
    assert core.stats.counters.get("internal_errors", 0) == 0 and "Traceback" not in caplog.text


def test_internal_errors_log_a_few_short_tracebacks(core, caplog, monkeypatch):
    def bug(*args, **kwargs):
        raise KeyError("k" * 100_000)  # a bug whose message quotes a peer's data

    monkeypatch.setattr(core.assembly, "frame", bug)
    caplog.set_level(logging.INFO, logger="lwd.bridge")
    frames, _ = episode_frames(index=0)
    assert set(codes(send_all(core, frames * 10))) == {"internal"}
    assert caplog.text.count("Traceback") <= 3 and len(caplog.text) < 40_000, len(caplog.text)
    assert core.stats.counters["internal_errors"] == len(frames) * 10


def test_unknown_curve_keys_do_not_flood_the_log(procs, tmp_path, endpoint):
    from lwd_learner_bridge.keys import generate

    keys, allow = tmp_path / "keys", tmp_path / "allow"
    generate(keys, "bridge")
    generate(keys, "stranger")
    allow.mkdir()
    root = tmp_path / "bridge"
    start_bridge(
        procs,
        root,
        endpoint,
        "--curve-secret-key",
        str(keys / "bridge.key_secret"),
        "--allow-keys",
        str(allow),
        mem_limit_mb=2000,
    )
    public, secret = zmq.auth.load_certificate(keys / "stranger.key_secret")
    server_public = zmq.auth.load_certificate(keys / "bridge.key")[0]
    ctx = zmq.Context.instance()
    for _ in range(80):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_public
        sock.connect(endpoint)
        try:  # the handshake is what is refused; a send that cannot be queued must not hang the test
            sock.send(hello_frame("stranger"), zmq.NOBLOCK)
        except zmq.Again:
            pass
        sock.poll(50)
        sock.close(0)

    def denied() -> int:
        return bridge_counter(root, "auth_denied")

    assert wait_for(lambda: denied() >= 60, 20)
    lines = [
        line
        for line in procs.log("bridge").splitlines()
        if "refused connection with unknown CURVE key" in line
    ]
    assert 1 <= len(lines) <= 40, len(lines)
