"""Instructions the running policy was not trained on.

A policy knows the instructions listed in its metadata (`policy_io.PolicySignature.instructions`);
any other one is fed to it as index 0, the learner's `<unknown>` slot, an embedding no training
step ever updated (`policy_io.PolicySignature.task_id` falls back silently). The episode is still
worth recording: the learner adds its instruction to the vocabulary and learns it. So by default
(`unknown_instruction: warn`) such an episode runs, each new instruction is logged once, loudly,
and every such episode is counted for diagnostics; `refuse` turns the start down instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WARN = "warn"
REFUSE = "refuse"
MODES = (WARN, REFUSE)


@dataclass(frozen=True)
class InstructionVerdict:
    known: bool
    refuse: bool  # turn the episode start down
    first_time: bool  # an unknown instruction not seen before with this policy version: log it
    message: str  # why, for the log or the refused start ("" when known)
    key: tuple[str, str] = ("", "")  # (policy version, instruction)


class UnknownInstructions:
    """Checks each episode start's instruction against the running policy's; counts the unknown ones.

    `check` before the start (a refusal is counted there), `started` once the episode really runs."""

    def __init__(self, mode: str = WARN):
        if mode not in MODES:
            raise ValueError(f"unknown_instruction must be one of {list(MODES)}, not {mode!r}")
        self.mode = mode
        self.episodes = 0  # episodes started with an instruction their policy did not know
        self.refused = 0  # starts refused for it
        self.last = ""  # the last such instruction
        self._seen: set[tuple[str, str]] = set()  # (policy version, instruction) already logged

    @property
    def distinct(self) -> int:
        """Distinct (policy version, instruction) pairs met so far."""
        return len(self._seen)

    def check(self, instruction: str, known: Sequence[str], policy_version: str) -> InstructionVerdict:
        """The verdict for a start with `instruction` under a policy that knows `known` (in its index
        order: index 0 is the fallback)."""
        key = (policy_version, instruction)
        if instruction in known:
            return InstructionVerdict(True, False, False, "", key)
        fallback = f" {known[0]!r}" if known else ""
        unknown = (
            f"instruction {instruction!r} is not one policy {policy_version} was trained on "
            f"(it knows {list(known)})"
        )
        first = key not in self._seen
        if self.mode == REFUSE:
            self._seen.add(key)
            self.last = instruction
            self.refused += 1
            return InstructionVerdict(
                False,
                True,
                first,
                f"cannot start: {unknown}; it would get the untrained fallback embedding (index 0"
                f"{fallback}) and unknown_instruction is 'refuse'",
                key,
            )
        return InstructionVerdict(
            False,
            False,
            first,
            f"{unknown}: the episode runs with its untrained fallback embedding (index 0{fallback})",
            key,
        )

    def started(self, verdict: InstructionVerdict) -> None:
        """An episode with this verdict started (only now is its instruction counted as seen)."""
        if not verdict.known:
            self.episodes += 1
            self._seen.add(verdict.key)
            self.last = verdict.key[1]
