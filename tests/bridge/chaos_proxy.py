"""A real ZeroMQ proxy that drops, duplicates and reorders frames in both directions.

    python chaos_proxy.py --front tcp://127.0.0.1:A --back tcp://127.0.0.1:B --drop 0.1 --dup 0.1 --reorder 0.1

Robots connect to --front; for each robot connection the proxy opens its own
DEALER to the bridge at --back, so the bridge still sees one peer per robot.
"""

from __future__ import annotations

import argparse
import random
import time

import zmq


class Faults:
    def __init__(self, rng: random.Random, drop: float, dup: float, reorder: float):
        self.rng, self.drop, self.dup, self.reorder = rng, drop, dup, reorder
        self.held: dict[tuple, tuple[float, object]] = {}
        self.counts = {"dropped": 0, "duplicated": 0, "reordered": 0, "forwarded": 0}

    def send(self, key: tuple, msg, send) -> None:
        r = self.rng.random()
        if r < self.drop:
            self.counts["dropped"] += 1
            return
        if r < self.drop + self.reorder and key not in self.held:
            self.held[key] = (time.monotonic(), msg)  # goes out after the next frame on this path
            self.counts["reordered"] += 1
            return
        send(msg)
        self.counts["forwarded"] += 1
        if r < self.drop + self.reorder + self.dup:
            send(msg)
            self.counts["duplicated"] += 1
        if key in self.held:
            send(self.held.pop(key)[1])

    def release_old(self, key: tuple, send, age: float = 0.05) -> None:
        if key in self.held and time.monotonic() - self.held[key][0] > age:
            send(self.held.pop(key)[1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--front", required=True)
    p.add_argument("--back", required=True)
    p.add_argument("--drop", type=float, default=0.0)
    p.add_argument("--dup", type=float, default=0.0)
    p.add_argument("--reorder", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    ctx = zmq.Context()
    front = ctx.socket(zmq.ROUTER)
    front.setsockopt(zmq.LINGER, 0)
    front.bind(args.front)
    faults = Faults(random.Random(args.seed), args.drop, args.dup, args.reorder)
    backs: dict[bytes, zmq.Socket] = {}
    owner: dict[zmq.Socket, bytes] = {}
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    print("proxy up", flush=True)
    last_report = time.monotonic()
    while True:
        for sock, _ in poller.poll(20):
            if sock is front:
                ident, payload = front.recv_multipart()
                back = backs.get(ident)
                if back is None:
                    back = backs[ident] = ctx.socket(zmq.DEALER)
                    back.setsockopt(zmq.LINGER, 0)
                    back.connect(args.back)
                    owner[back] = ident
                    poller.register(back, zmq.POLLIN)
                faults.send(("up", ident), payload, lambda m, b=back: b.send(m))
            else:
                ident = owner[sock]
                payload = sock.recv()
                faults.send(("down", ident), payload, lambda m, i=ident: front.send_multipart([i, m]))
        for ident, back in backs.items():
            faults.release_old(("up", ident), lambda m, b=back: b.send(m))
            faults.release_old(("down", ident), lambda m, i=ident: front.send_multipart([i, m]))
        if time.monotonic() - last_report > 1.0:
            print(f"faults {faults.counts}", flush=True)
            last_report = time.monotonic()


if __name__ == "__main__":
    main()
