"""Versioned ONNX policy checkpoints: the learner publishes, the bridge serves.

Layout under `root`:
    <version>.onnx    the exported policy (see policy_io.py), written atomically
    <version>.json    its PolicyInfo; written after the .onnx, so a version exists
                      for readers only once both files are complete
    pin.json          the operator's pin (`PinState`), written atomically; absent: serve the newest
    pin_log.jsonl     every pin/unpin/revert with who, when and why; append-only

Versions are "v000001", "v000002", ... and increase monotonically; a lock file
serialises concurrent publishers (and pin changes). The sha256 in the metadata
is what robots verify after downloading, so a corrupted or half-copied file is
never loaded.

Pinning: robots only ever move to a numerically newer version (`is_newer`), so
an older policy cannot reach them under its own name. Each pin change that goes
*back* starts a new pin epoch, and the bridge serves the published version
`vN` as `served_version(vN, epoch)` = epoch * 10^9 + N: above every name served
before, the same bytes and sha256. `published_version` maps a served name back.
Epoch 0 (never pinned back) serves every version under its own name.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lwd_common.store import atomic_write

# ASCII digits only, nothing after them: "v000001\n" and other scripts' digits are not versions.
_VERSION = re.compile(r"v([0-9]{6,})", re.ASCII)
EPOCH_STRIDE = 10**9  # served number = epoch * EPOCH_STRIDE + published number
PIN_FILE = "pin.json"
PIN_LOG = "pin_log.jsonl"


def format_version(number: int) -> str:
    return f"v{number:06d}"


def version_number(version: str) -> int:
    """The integer behind "v000042"; ValueError for anything else."""
    m = _VERSION.fullmatch(version) if isinstance(version, str) else None
    if not m:
        raise ValueError(f"invalid policy version {version!r} (want e.g. 'v000042')")
    return int(m.group(1))


def is_newer(candidate: str, current: str | None) -> bool:
    """True if `candidate` is a later version than `current` (None or "" or non-versions are oldest)."""
    try:
        cur = version_number(current) if current else -1
    except ValueError:
        cur = -1
    return version_number(candidate) > cur


def served_version(version: str, epoch: int) -> str:
    """The name robots get for published `version` in pin epoch `epoch` (epoch 0: `version` itself)."""
    number = version_number(version)
    if number >= EPOCH_STRIDE or epoch < 0:
        raise ValueError(f"cannot serve {version} in pin epoch {epoch}")
    return format_version(epoch * EPOCH_STRIDE + number)


def published_version(served: str) -> str:
    """The published version behind a served name ("v1000000003" -> "v000003"); ValueError for non-versions."""
    return format_version(version_number(served) % EPOCH_STRIDE)


def served_epoch(served: str) -> int:
    """The pin epoch a served name belongs to (0 for a published version's own name)."""
    return version_number(served) // EPOCH_STRIDE


@dataclass(frozen=True)
class PolicyInfo:
    version: str
    sha256: str
    created_at: float
    training_step: int
    size: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        """The `<version>.json` file's bytes: the one encoding every store and the feed write."""
        return json.dumps(self.to_dict(), sort_keys=True).encode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicyInfo:
        try:
            info = cls(
                version=str(d["version"]),
                sha256=str(d["sha256"]),
                created_at=float(d["created_at"]),
                training_step=int(d["training_step"]),
                size=int(d["size"]),
                extra=dict(d.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad policy info {d!r}: {exc}") from exc
        version_number(info.version)
        if not re.fullmatch(r"[0-9a-f]{64}", info.sha256):
            raise ValueError(f"bad sha256 {info.sha256!r}")
        return info


@dataclass(frozen=True)
class PinState:
    """The operator's pin: which published version the fleet is held at (None: the newest).

    `epoch` grows by one whenever a change makes robots go back to an older
    version (see the module doc); `epoch_at` is when the current epoch began.
    """

    pinned: str | None = None
    epoch: int = 0
    epoch_at: float = 0.0
    action: str = ""  # the change that wrote this state: pin, unpin or revert
    by: str = ""
    at: float = 0.0
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PinState:
        try:
            state = cls(
                pinned=None if d["pinned"] is None else str(d["pinned"]),
                epoch=int(d["epoch"]),
                epoch_at=float(d["epoch_at"]),
                action=str(d["action"]),
                by=str(d["by"]),
                at=float(d["at"]),
                why=str(d["why"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad pin state {d!r}: {exc}") from exc
        if state.pinned is not None:
            version_number(state.pinned)
        if state.epoch < 0:
            raise ValueError(f"bad pin epoch {state.epoch}")
        return state


class PolicyStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time: version numbers and pin epochs are read-modify-write."""
        with open(self.root / ".publish.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def path_of(self, version: str) -> Path:
        version_number(version)
        return self.root / f"{version}.onnx"

    def _info_path(self, version: str) -> Path:
        version_number(version)
        return self.root / f"{version}.json"

    def versions(self) -> list[str]:
        """Published versions, oldest first."""
        found = [p.stem for p in self.root.glob("v*.json") if _VERSION.match(p.stem)]
        return sorted(found, key=version_number)

    def get(self, version: str) -> PolicyInfo:
        path = self._info_path(version)
        if not path.exists():
            raise KeyError(f"no policy version {version} in {self.root}")
        return PolicyInfo.from_dict(json.loads(path.read_text()))

    def latest(self) -> PolicyInfo | None:
        versions = self.versions()
        return self.get(versions[-1]) if versions else None

    def publish(
        self, onnx: bytes | Callable[[str], bytes], training_step: int, extra: dict | None = None
    ) -> PolicyInfo:
        """Store a new version (next number) and return its info; atomic for readers.

        `onnx` is the graph's bytes, or a function of the version name that builds them (the
        learner writes the version into the graph's metadata): the store is the one owner of
        version numbers, and it names the version under its lock."""
        extra = dict(extra or {})
        json.dumps(extra)  # must be JSON-serialisable; raises TypeError early
        with self._locked():
            versions = self.versions()
            number = version_number(versions[-1]) + 1 if versions else 1
            if number >= EPOCH_STRIDE:
                raise ValueError(f"version number {number} reached the pin epoch stride {EPOCH_STRIDE}")
            version = format_version(number)
            onnx_bytes = onnx(version) if callable(onnx) else onnx
            if not isinstance(onnx_bytes, bytes | bytearray) or not onnx_bytes:
                raise ValueError("onnx_bytes must be non-empty bytes")
            info = PolicyInfo(
                version=version,
                sha256=hashlib.sha256(onnx_bytes).hexdigest(),
                created_at=time.time(),
                training_step=int(training_step),
                size=len(onnx_bytes),
                extra=extra,
            )
            atomic_write(self.path_of(version), bytes(onnx_bytes))
            atomic_write(self._info_path(version), info.to_json())
        return info

    def mirror(self, info: PolicyInfo, onnx_bytes: bytes) -> bool:
        """Store a version published elsewhere under its own name (a bridge following the learner's
        policy feed); True if it was new. The bytes must hash to `info.sha256`, and a version this
        store already holds must be the same bytes: ValueError otherwise, and nothing is written."""
        digest = hashlib.sha256(onnx_bytes).hexdigest()
        if digest != info.sha256 or len(onnx_bytes) != info.size:
            raise ValueError(f"policy {info.version}: bytes hash to {digest[:12]}, not {info.sha256[:12]}")
        with self._locked():
            if self._info_path(info.version).exists():
                held = self.get(info.version)
                if held.sha256 != info.sha256:
                    raise ValueError(f"policy {info.version} is already held here with other bytes")
                return False
            atomic_write(self.path_of(info.version), bytes(onnx_bytes))
            atomic_write(self._info_path(info.version), info.to_json())
        return True

    # --- pinning: the version the fleet runs, set by an operator ---------------------------------------

    def pin_state(self) -> PinState:
        """The current pin (a default, unpinned state if nobody ever pinned); ValueError if unreadable."""
        path = self.root / PIN_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return PinState()
        try:
            return PinState.from_dict(json.loads(raw))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not JSON: {exc}") from exc

    def serving(self) -> tuple[PolicyInfo, PinState] | None:
        """The published policy robots should run (the pin, else the newest) with the pin; None if none."""
        state = self.pin_state()
        if state.pinned is not None:
            return self.get(state.pinned), state
        latest = self.latest()
        return (latest, state) if latest is not None else None

    def pin_log(self) -> list[dict[str, Any]]:
        """Every pin change, oldest first."""
        path = self.root / PIN_LOG
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def pin(self, version: str, by: str, why: str) -> PinState:
        """Hold the fleet at published `version` (KeyError if it is not in the store)."""
        return self._change_pin("pin", lambda state, versions: version, by, why)

    def unpin(self, by: str, why: str) -> PinState:
        """Serve the newest version again."""
        return self._change_pin("unpin", lambda state, versions: None, by, why)

    def revert(self, by: str, why: str) -> PinState:
        """Pin the version published just before the one served now (the newest, or the current pin)."""

        def previous(state: PinState, versions: list[str]) -> str:
            current = state.pinned or (versions[-1] if versions else None)
            if current is None or current not in versions:
                raise KeyError(f"nothing to revert: no policy {current or 'published'} in {self.root}")
            index = versions.index(current)
            if index == 0:
                raise KeyError(f"nothing to revert to: {current} is the first version")
            return versions[index - 1]

        return self._change_pin("revert", previous, by, why)

    def _change_pin(
        self, action: str, target: Callable[[PinState, list[str]], str | None], by: str, why: str
    ) -> PinState:
        with self._locked():
            old = self.pin_state()
            versions = self.versions()
            pinned = target(old, versions)
            if pinned is not None:
                info = self.get(pinned)
                if not self.path_of(pinned).exists():
                    raise KeyError(f"policy {pinned} has metadata but no {self.path_of(pinned).name}")
                pinned = info.version
            before = old.pinned or (versions[-1] if versions else None)
            after = pinned or (versions[-1] if versions else None)
            now = time.time()
            epoch, epoch_at = old.epoch, old.epoch_at
            if before and after and version_number(after) < version_number(before):
                epoch, epoch_at = epoch + 1, now  # going back: names above everything served so far
            state = PinState(
                pinned=pinned, epoch=epoch, epoch_at=epoch_at, action=action, by=by, at=now, why=why
            )
            atomic_write(self.root / PIN_FILE, json.dumps(state.to_dict(), sort_keys=True).encode())
            entry = {
                **state.to_dict(),
                "previous": old.pinned,
                "newest": versions[-1] if versions else None,
                "serving": after,
                "served_as": served_version(after, epoch) if after else None,
            }
            with open(self.root / PIN_LOG, "a") as log:
                log.write(json.dumps(entry, sort_keys=True) + "\n")
                log.flush()
                os.fsync(log.fileno())
        return state
