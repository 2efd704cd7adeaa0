"""Versioned ONNX policy checkpoints: the learner publishes, the bridge serves.

Layout under `root`:
    <version>.onnx    the exported policy (see policy_io.py), written atomically
    <version>.json    its PolicyInfo; written after the .onnx, so a version exists
                      for readers only once both files are complete

Versions are "v000001", "v000002", ... and increase monotonically; a lock file
serialises concurrent publishers. The sha256 in the metadata is what robots
verify after downloading, so a corrupted or half-copied file is never loaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lwd_common.store import atomic_write

_VERSION = re.compile(r"^v(\d{6,})$")


def format_version(number: int) -> str:
    return f"v{number:06d}"


def version_number(version: str) -> int:
    """The integer behind "v000042"; ValueError for anything else."""
    m = _VERSION.match(version) if isinstance(version, str) else None
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


class PolicyStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

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

    def publish(self, onnx_bytes: bytes, training_step: int, extra: dict | None = None) -> PolicyInfo:
        """Store a new version (next number) and return its info; atomic for readers."""
        if not isinstance(onnx_bytes, bytes | bytearray) or not onnx_bytes:
            raise ValueError("onnx_bytes must be non-empty bytes")
        extra = dict(extra or {})
        json.dumps(extra)  # must be JSON-serialisable; raises TypeError early
        with open(self.root / ".publish.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            versions = self.versions()
            number = version_number(versions[-1]) + 1 if versions else 1
            version = format_version(number)
            info = PolicyInfo(
                version=version,
                sha256=hashlib.sha256(onnx_bytes).hexdigest(),
                created_at=time.time(),
                training_step=int(training_step),
                size=len(onnx_bytes),
                extra=extra,
            )
            atomic_write(self.path_of(version), bytes(onnx_bytes))
            atomic_write(self._info_path(version), json.dumps(info.to_dict(), sort_keys=True).encode())
        return info
