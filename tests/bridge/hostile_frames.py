"""Hostile frames for the bridge fuzzing (`fuzzing.py`): a seeded stream of messages from hostile peers.

Hostile peers say hello under their own robot ids (evil0, evil1, ...), never as
the good robot: with CURVE they could not, and without CURVE nothing can stop
that (docs: threat model). They do try everything else: random bytes, mutated
valid frames, and structured attacks (huge seqs, nested metas, array bombs, type
confusion, squatting on the good robot's episode ids, forged copies, never-ended
episodes, floods of policy and status requests they never read, multipart
messages). The connection churn and the unterminated raw multipart sender are
in `fuzzing.py`.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import msgpack
import numpy as np
from bridgeutil import make_meta, make_steps, outcome

from lwd_common import codec
from lwd_common.episode import Episode, content_hash, meta_to_dict, outcome_to_dict
from lwd_common.transport import protocol
from lwd_description.robot import CAMERA_NAMES, NUM_JOINTS


def raw_hello(robot_id: str, role: str = "stream", **over: Any) -> bytes:
    """A hello packed by hand: `over` may set any field to anything."""
    fields = {
        "robot_id": robot_id,
        "policy_version": "",
        "config_hash": protocol.config_hash(),
        "role": role,
        "open_episodes": [],
        **over,
    }
    return msgpack.packb({"v": 1, "t": "hello", **fields})


def _nested(depth: int) -> dict:
    d: dict = {}
    for _ in range(depth):
        d = {"x": d}
    return d


class HostileFrames:
    """A seeded stream of hostile messages (lists of parts) for robot ids `evil_ids`."""

    def __init__(self, seed: int, evil_ids: list[str], good_ids: list[str], max_frame: int):
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.evil_ids = evil_ids
        self.good_ids = good_ids  # episode ids the good robot will use: squatting targets
        self.max_frame = max_frame
        self.counter = 0
        self.templates = self._templates()
        empty = msgpack.ExtType(codec.NDARRAY_EXT, msgpack.packb(("<f4", [0])))
        n_bomb = max(1000, min(120_000, max_frame // 12))
        self.bombs = [  # built once: they are big
            msgpack.packb(
                {
                    "v": 1,
                    "t": "ep_chunk",
                    "episode_id": f"{evil_ids[0]}-bomb",
                    "seq": 1,
                    "steps": {"step": [empty] * n_bomb},
                }
            ),
            msgpack.packb(
                {
                    "v": 1,
                    "t": "ep_chunk",
                    "episode_id": f"{evil_ids[0]}-bomb",
                    "seq": 1,
                    "steps": {"step": [[[]] * 50] * (n_bomb // 5)},
                }
            ),
            msgpack.packb(
                {
                    "v": 1,
                    "t": "hello",
                    "robot_id": evil_ids[0],
                    "policy_version": "",
                    "config_hash": protocol.config_hash(),
                    "role": "stream",
                    "open_episodes": [f"{evil_ids[0]}-{i:06d}" for i in range(max_frame // 20)],
                }
            ),
        ]

    def _episode(self, rid: str, index: int, n: int, bad_hash: bool = True) -> list[bytes]:
        meta, steps, out = make_meta(rid, 1000 + index), make_steps(n, seed=index), outcome(n, index)
        meta.episode_id = f"{rid}-x{self.counter:06d}"
        self.counter += 1
        frames = [protocol.encode("ep_begin", episode_id=meta.episode_id, seq=0, meta=meta_to_dict(meta))]
        for i in range(0, n, 10):
            frames.append(
                protocol.encode(
                    "ep_chunk",
                    episode_id=meta.episode_id,
                    seq=len(frames),
                    steps=protocol.steps_to_chunk(steps[i : i + 10], CAMERA_NAMES),
                )
            )
        digest = content_hash(Episode.from_steps(meta, steps, out))
        if bad_hash:  # never a complete valid episode: nothing hostile may end up in the store
            digest = hashlib.sha256(digest.encode()).hexdigest()
        frames.append(
            protocol.encode(
                "ep_end",
                episode_id=meta.episode_id,
                seq=len(frames),
                outcome=outcome_to_dict(out),
                num_steps=n,
                content_hash=digest,
                ended_at=1.0,
            )
        )
        return frames

    def _templates(self) -> list[bytes]:
        rid = self.evil_ids[0]
        return [
            raw_hello(rid),
            *self._episode(rid, 0, 25),
            protocol.encode("status_query"),
            protocol.encode("policy_query", current_version=""),
            protocol.encode("robot_stats", counters={"retries": 3}, spooled_episodes=1),
            protocol.encode("policy_fetch", version="v000001", offset=0, length=1 << 20),
        ]

    # each returns a list of message parts
    def random_bytes(self) -> list[bytes]:
        return [self.rng.randbytes(self.rng.choice([0, 1, 7, 64, 500, 4000]))]

    def mutated(self) -> list[bytes]:
        data = bytearray(self.rng.choice(self.templates))
        for _ in range(self.rng.randint(1, 6)):
            op, i = self.rng.random(), self.rng.randrange(max(1, len(data)))
            if op < 0.5 and data:
                data[i] = self.rng.randrange(256)
            elif op < 0.7:
                del data[i : i + self.rng.randint(1, 20)]
            elif op < 0.9:
                data[i:i] = self.rng.randbytes(self.rng.randint(1, 20))
            else:
                data = data[: self.rng.randrange(len(data) + 1)]
        return [bytes(data)]

    def structured(self) -> list[list[bytes]]:
        rng, rid = self.rng, self.rng.choice(self.evil_ids)
        eid = f"{rid}-s{self.counter:06d}"
        self.counter += 1
        choice = rng.randrange(22)
        end = {
            "v": 1,
            "t": "ep_end",
            "episode_id": eid,
            "num_steps": 1,
            "content_hash": "0" * 64,
            "ended_at": 1.0,
            "outcome": {"label": "success", "num_steps": 1},
        }
        if choice == 0:
            return [
                [
                    msgpack.packb(
                        {
                            **end,
                            "seq": rng.choice(
                                [2**64 - 1, 2**63, 2**31, protocol.MAX_SEQ, protocol.MAX_SEQ + 1, 2_000_000]
                            ),
                        }
                    )
                ]
            ]
        if choice == 1:
            meta = meta_to_dict(make_meta(rid, 0))
            meta.update(episode_id=eid, extra=_nested(rng.choice([17, 100, 505])))
            return [[msgpack.packb({"v": 1, "t": "ep_begin", "episode_id": eid, "seq": 0, "meta": meta})]]
        if choice == 2:
            return [[rng.choice(self.bombs)]]
        if choice == 3:  # type confusion in t / v
            v, t = rng.choice(
                [
                    (1, [1]),
                    (1, {"a": 1}),
                    (1.0, "status_query"),
                    (True, "hello"),
                    ([1], "hello"),
                    (np.array([1]), "status_query"),
                    (1, None),
                    (None, None),
                    (1, "x" * 5000),
                ]
            )
            return [[codec.packb({"v": v, "t": t})]]
        if choice == 4:  # hellos: long fields, unknown roles, other config, the monitor role
            return [
                [
                    rng.choice(
                        [
                            raw_hello(rid, policy_version="p" * 200_000),
                            raw_hello(rid, role="admin"),
                            raw_hello("x" * 300),
                            raw_hello(rid, config_hash="0" * 16),
                            raw_hello(rid, role="monitor"),
                            raw_hello(rid + "\n"),
                            raw_hello(rid, open_episodes=[1, None, {"a": 2}]),
                        ]
                    )
                ]
            ]
        if choice == 5:  # squat on the good robot's next episode ids
            meta = make_meta(rid, 0)
            meta.episode_id = rng.choice(self.good_ids)
            return [[protocol.encode("ep_begin", episode_id=meta.episode_id, seq=0, meta=meta_to_dict(meta))]]
        if choice == 6:  # forged copies: the same seq with other content
            frames = self._episode(rid, rng.randrange(100), 20)
            other = self._episode(rid, rng.randrange(100), 20)
            other_chunk = codec.unpackb(other[1])
            other_chunk["episode_id"] = codec.unpackb(frames[1])["episode_id"]
            return [[frames[0]], [frames[1]], [codec.packb(other_chunk)], [frames[2]], [frames[-1]]]
        if choice == 7:  # a complete episode with a wrong hash
            return [[f] for f in self._episode(rid, rng.randrange(100), rng.choice([5, 30]))]
        if choice == 8:  # never ended: buffer pressure
            return [[f] for f in self._episode(rid, rng.randrange(100), rng.choice([40, 80]))[:-1]]
        if choice == 9:
            return [
                [
                    protocol.encode(
                        "robot_stats",
                        counters={f"c{i}" * rng.randint(1, 40): i for i in range(500)},
                        spooled_episodes=2**62,
                    )
                ]
            ]
        if choice == 10:
            return [
                [
                    protocol.encode(
                        "policy_fetch",
                        version=rng.choice(["v000001", "v999999", "../x", ""]),
                        offset=rng.choice([0, -5, 2**40]),
                        length=rng.choice([1 << 22, 0, -1, 1]),
                    )
                ]
            ]
        if choice == 11:
            return [[protocol.encode("status_query")] for _ in range(5)]
        if choice == 12:  # multipart messages
            return [[b"a" * rng.randint(0, 100) for _ in range(rng.randint(2, 5))]]
        if choice == 13:  # many tiny steps in one chunk
            n = rng.choice([1000, 5000])
            chunk = {
                "step": np.arange(n, dtype=np.int64),
                "stamp": np.zeros(n),
                "source": np.zeros(n, np.int8),
                "joint_pos": np.zeros((n, NUM_JOINTS), np.float32),
                "action": np.zeros((n, NUM_JOINTS), np.float32),
                "chunk_id": np.zeros(n, np.int64),
                "policy_version": ["v"] * n,
                "images": {c: [b""] * n for c in CAMERA_NAMES},
            }
            return [[protocol.encode("ep_chunk", episode_id=eid, seq=1, steps=chunk)]]
        if choice == 14:  # bad shapes and dtypes
            chunk = codec.unpackb(self.templates[2])["steps"]
            key = rng.choice(list(chunk))
            chunk[key] = rng.choice(
                [
                    np.zeros((), np.int64),
                    np.zeros((3, 2, 2), ">f4"),
                    np.zeros(3, np.uint64),
                    [1, 2, 3],
                    {"a": b"x"},
                    "x" * 1000,
                    None,
                ]
            )
            return [[protocol.encode("ep_chunk", episode_id=eid, seq=1, steps=chunk)]]
        if choice == 15:  # replays of the same frame
            frames = self._episode(rid, rng.randrange(100), 15)
            return [[frames[rng.randrange(len(frames))]] for _ in range(10)]
        if choice == 16:  # the wrong role for the frame
            return [
                [raw_hello(rid, role="monitor")],
                [self.templates[1]],
                [raw_hello(rid, role="policy")],
                [self.templates[2]],
                [raw_hello(rid)],
            ]
        if choice == 17:  # ids that are no file names
            bad_id = rng.choice(
                ["../../etc/passwd", "a/b", "", ".hidden", rid + "-\n", "x" * 300, rid + "-ok\x00"]
            )
            return [[msgpack.packb({**end, "episode_id": bad_id, "seq": 1})]]
        if choice == 18:  # chunk out of range / end before chunks
            frames = self._episode(rid, rng.randrange(100), 30)
            return [[frames[-1]], [frames[1]], [frames[0]]]
        if choice == 19:  # wrong-typed fields
            return [
                [msgpack.packb({"v": 1, "t": "ep_chunk", "episode_id": eid, "seq": "1", "steps": []})],
                [
                    msgpack.packb(
                        {
                            "v": 1,
                            "t": "policy_loaded",
                            "version": 7,
                            "ok": 1,
                            "loaded_at": "now",
                            "message": b"x",
                        }
                    )
                ],
            ]
        if choice == 20:  # non-finite numbers
            return [
                [msgpack.packb({**end, "seq": 1, "ended_at": float("nan")})],
                [
                    msgpack.packb(
                        {
                            "v": 1,
                            "t": "policy_loaded",
                            "version": "v1",
                            "ok": True,
                            "loaded_at": float("inf"),
                            "message": "m" * 70_000,
                        }
                    )
                ],
            ]
        return [[raw_hello(rid)]]  # 21: re-hello (drops its own partials)

    def next(self) -> tuple[str, list[list[bytes]]]:
        r = self.rng.random()
        if r < 0.25:
            return "random", [self.random_bytes()]
        if r < 0.55:
            return "mutated", [self.mutated()]
        return "structured", self.structured()
