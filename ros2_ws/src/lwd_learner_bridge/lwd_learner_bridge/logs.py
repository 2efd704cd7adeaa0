"""Logging that a peer cannot flood: every line rate-limited and every peer-chosen text escaped and clipped.

A refused frame used to log its full message (a peer chooses what goes into it,
e.g. a 1 MB robot id) once per frame, with no limit: 40 frames made 41.9 MB of
log. Here each category (refusal code, auth, internal error, ...) has a token
bucket and all categories share a global one; lines over the budget are counted
and summed up in the next line that gets through ("... 812 similar lines
suppressed"). Arguments are escaped (no newlines or terminal codes from a peer)
and clipped before formatting.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

MAX_ARG_CHARS = 160  # one peer-supplied argument in a log line
MAX_LINE_CHARS = 600  # a whole line


def safe(value: object, limit: int = MAX_ARG_CHARS) -> str:
    """`value` as printable text without control characters, clipped to `limit` characters."""
    text = value if isinstance(value, str) else repr(value)
    if isinstance(value, bytes):
        text = value[:limit].hex() + ("..." if len(value) > limit else "")
    if not text.isprintable():
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii", "replace")
    return text if len(text) <= limit else f"{text[:limit]}...[{len(text) - limit} more]"


@dataclass
class _Bucket:
    tokens: float
    updated: float
    suppressed: int = 0


class LogLimiter:
    """Token buckets per category and overall; `log` returns False when a line was suppressed."""

    def __init__(
        self,
        logger: logging.Logger,
        per_category_per_s: float = 2.0,
        per_category_burst: float = 20,
        total_per_s: float = 10.0,
        total_burst: float = 60,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.logger = logger
        self.rate, self.burst = per_category_per_s, per_category_burst
        self.total_rate, self.total_burst = total_per_s, total_burst
        self.clock = clock
        self.special: dict[str, tuple[float, float]] = {"traceback": (0.1, 3)}  # category -> (per s, burst)
        self._buckets: dict[str, _Bucket] = {}
        self._total = _Bucket(total_burst, clock())
        self.suppressed = 0  # lines not written, all categories

    def _take(self, bucket: _Bucket, rate: float, burst: float, now: float) -> bool:
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def allow(self, category: str) -> int | None:
        """None if a line of `category` must be dropped now, else how many of its lines were dropped before."""
        now = self.clock()
        if len(self._buckets) > 256 and category not in self._buckets:
            category = "other"  # categories come from our own code names, but never let them grow
        rate, burst = self.special.get(category, (self.rate, self.burst))
        bucket = self._buckets.setdefault(category, _Bucket(burst, now))
        if not (
            self._take(bucket, rate, burst, now)
            and self._take(self._total, self.total_rate, self.total_burst, now)
        ):
            bucket.suppressed += 1
            self.suppressed += 1
            return None
        dropped, bucket.suppressed = bucket.suppressed, 0
        return dropped

    def log(self, level: int, category: str, fmt: str, *args: object, exc_info: bool = False) -> bool:
        """Log `fmt % args` (args escaped and clipped) unless `category` is over its budget."""
        if not self.logger.isEnabledFor(level):
            return False
        dropped = self.allow(category)
        if dropped is None:
            return False
        line = fmt % tuple(safe(a) for a in args)
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + "..."
        if dropped:
            line += f" ({dropped} similar lines suppressed)"
        self.logger.log(level, "%s", line, exc_info=exc_info)
        return True


def short_traceback(exc: BaseException, max_lines: int = 30, max_line_chars: int = 200) -> str:
    """The traceback of `exc`, each line clipped and escaped (its message may quote a peer's data)."""
    lines = "".join(traceback.format_exception(exc)).splitlines()
    if len(lines) > max_lines:
        lines = lines[:5] + [f"  ... {len(lines) - max_lines} lines ..."] + lines[-(max_lines - 6) :]
    return "\n".join(safe(line, max_line_chars) for line in lines)
