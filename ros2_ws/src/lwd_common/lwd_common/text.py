"""Text from peers made safe for an operator's terminal and logs.

Robot ids, policy versions, task names and messages arrive from robots and clients; printed raw, an
escape sequence or a carriage return in them could clear an operator's screen and print "ALL ROBOTS
OK" in its place. Every operator-facing text output goes through `printable` before it is shown.
"""

from __future__ import annotations


def printable(text: str, keep: str = "\n") -> str:
    """`text` with every character a terminal would act on or hide (control characters, ESC, CR, DEL,
    C1 controls, bidirectional overrides, other invisible format characters) written as its Python
    escape (`\\x1b`, `\\r`, `\\u202e`); the characters in `keep` stay as they are."""
    return "".join(
        c if c.isprintable() or c in keep else c.encode("unicode_escape").decode("ascii") for c in text
    )
