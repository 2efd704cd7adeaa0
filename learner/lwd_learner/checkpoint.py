"""Orbax checkpoints of the agent state plus a JSON side record (config, vocab, stats, phase),
so a crashed learner resumes from the last one and a checkpoint is self-describing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, directory: str | Path, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        self.mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False),
        )

    def latest_step(self) -> int | None:
        return self.mngr.latest_step()

    def save(self, step: int, state, meta: dict) -> None:
        """Write `state` (a dataclass pytree) without its None fields, and `meta` as JSON."""
        self.mngr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_present_fields(state)), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self.mngr.wait_until_finished()

    def read_meta(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return self.mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore_state(self, abstract_state, step: int | None = None):
        """The state in the layout of `abstract_state` (a dataclass pytree). Its fields that are None
        (optional parts, e.g. the "bc_ema" reference's flow) are not read, so a checkpoint written
        before such a field existed still restores."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        present = _present_fields(abstract_state)
        restored = self.mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(present)))
        return abstract_state.replace(**restored["state"])

    def close(self) -> None:
        self.mngr.close()


def _present_fields(state) -> dict:
    """The fields of a dataclass state that are not None (what a checkpoint holds of it)."""
    return {
        f.name: getattr(state, f.name)
        for f in dataclasses.fields(state)
        if getattr(state, f.name) is not None
    }
