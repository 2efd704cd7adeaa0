"""Helpers for the bridge-under-attack tests (issue 15): a welcomed `BridgeCore`, replies, frames.

Used by test_attacks_resources.py and test_attacks_access.py; their `core` fixture is in conftest.py.
"""

from __future__ import annotations

import json
import time

import msgpack
from bridgeutil import hello_frame

from lwd_common.store import EpisodeStore
from lwd_common.transport import protocol
from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.core import BridgeCore

PEER = b"peer-1"


def first(replies: list[bytes]) -> dict:
    return protocol.decode(replies[0]) if replies else {"t": None, "code": None}


def codes(replies: list[bytes]) -> list[str | None]:
    return [protocol.decode(r).get("code", protocol.decode(r)["t"]) for r in replies]


def new_core(tmp_path, background: bool = False, **limits) -> BridgeCore:
    core = BridgeCore(BridgeConfig(root=str(tmp_path / "bridge"), **limits), background_writes=background)
    assert first(core.handle(PEER, hello_frame()))["t"] == "welcome"
    return core


def stored_ids(core: BridgeCore) -> list[str]:
    return EpisodeStore(core.root / "store").ids()


def wait_committed(core: BridgeCore, episode_id: str, timeout: float = 20.0) -> list[dict]:
    """Flush until `episode_id` is answered committed (background writers); returns every reply seen."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += [protocol.decode(r) for _, r in core.flush()]
        if any(m["t"] == "committed" and m["episode_id"] == episode_id for m in seen):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"{episode_id} not committed in {timeout} s; replies {seen}")


def send_all(core: BridgeCore, frames: list[bytes], peer: bytes = PEER, **kw) -> list[bytes]:
    return [r for f in frames for r in core.handle(peer, f, **kw)]


def bridge_counter(root, name: str) -> int:
    """A counter from the bridge's status.json; 0 until the bridge first writes it (once a second,
    atomically: under load the first write can come after a test's first look)."""
    path = root / "status.json"
    return json.loads(path.read_text())["counters"][name] if path.exists() else 0


def ep_end(seq: int, eid: str = "robot0-ep0009") -> bytes:
    """An ep_end frame packed by hand, so that any seq can be sent."""
    return msgpack.packb(
        {
            "v": 1,
            "t": "ep_end",
            "episode_id": eid,
            "seq": seq,
            "num_steps": 1,
            "outcome": {"label": "success", "num_steps": 1},
            "content_hash": "0" * 64,
            "ended_at": 1.0,
        }
    )
