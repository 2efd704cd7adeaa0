"""What the bridge's parts hand back for a frame: a frame to send, or a `Refusal` still to answer.

A part that refuses a frame (admission, assembly, policy serving, the core itself) only says so:
it returns a `Refusal` naming the code, the reason, and the episode and robot it concerns.
`BridgeCore._answer` turns every reply into bytes in one place: a refusal is counted and logged
there (`FleetStats.refused`: the stats' job) and answered with the `error` frame that tells the
robot why (`error_frame`: the protocol's job), so no refused frame goes uncounted and none can
flood the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from lwd_common.transport import protocol

MAX_REPLY_MESSAGE = 512  # characters of an error message sent back to a robot


@dataclass(frozen=True)
class Refusal:
    """A refused frame: the `error` reply's fields, and the robot to count it against."""

    code: str
    message: str  # logged (escaped, clipped by the log limiter) and sent back clipped
    episode_id: str | None = None
    fatal: bool = False  # the robot must not retry as it is (bad hello, schema version)
    robot_id: str | None = None  # counted in this robot's `rejected` (if known to the stats) and logged


Reply: TypeAlias = bytes | Refusal  # an encoded frame, or a refusal the core still counts and encodes


def error_frame(refusal: Refusal) -> bytes:
    """The `error` frame that answers `refusal` (message clipped to MAX_REPLY_MESSAGE)."""
    return protocol.encode(
        "error",
        code=refusal.code,
        message=protocol.clip(refusal.message, MAX_REPLY_MESSAGE),
        episode_id=refusal.episode_id,
        fatal=refusal.fatal,
    )
