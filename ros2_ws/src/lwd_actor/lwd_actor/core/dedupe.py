"""One message, once, from two subscriptions (ROS-free): how the actor hears publishers of any QoS.

A reliable subscription never matches a best-effort publisher (DDS drops the pair
silently: an operator's pedal simply does nothing), and a best-effort one loses the
retransmissions a reliable publisher offers. So the node subscribes to its command
inputs (pedal, teleop targets, e-stop) twice, reliable and best-effort. A reliable
publisher's messages then arrive on both, and in either order; `PublisherDedupe`
passes each one on once and never an older one after a newer one of the same
publisher (a stale "pedal pressed" after "released" would start a takeover).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable


class PublisherDedupe:
    """Accepts a message if it is newer than the last one accepted from its publisher."""

    def __init__(self, max_publishers: int = 256):
        self.max_publishers = max_publishers
        self._last: dict[Hashable, int] = {}
        self._lock = threading.Lock()
        self.duplicates = 0  # messages dropped as already seen (or older)

    def accept(self, publisher: Hashable | None, sequence: int | None) -> bool:
        """`publisher`: its gid; `sequence`: its publication sequence number, or the source
        timestamp where the middleware gives none. Unknown publisher or order: always accepted."""
        if publisher is None or sequence is None:
            return True
        with self._lock:
            last = self._last.get(publisher)
            if last is not None and sequence <= last:
                self.duplicates += 1
                return False
            if last is None and len(self._last) >= self.max_publishers:
                self._last.clear()  # publishers come and go; forgetting old ones only risks one duplicate
            self._last[publisher] = sequence
            return True
