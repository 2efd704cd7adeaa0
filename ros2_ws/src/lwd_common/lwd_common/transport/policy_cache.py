"""The robot's local policy directory: verified downloads, the previous version kept for rollback.

Layout under `root`:
    <version>.onnx + <version>.json   verified policies (sha256 checked before the rename)
    bad_versions.json                 versions that failed to load here; never fetched again
    .download.tmp                     an in-progress download (never loaded)

Only the newest `keep` verified versions stay on disk: the one the actor runs and
the one before it, so `rollback` always has somewhere to go.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from lwd_common.policy_store import PolicyInfo, version_number
from lwd_common.store import atomic_write


@dataclass(frozen=True)
class LocalPolicy:
    """A policy file on the robot whose sha256 matched its published metadata."""

    path: Path
    info: PolicyInfo

    @property
    def version(self) -> str:
        return self.info.version


class PolicyHashMismatch(ValueError):
    """Downloaded bytes do not hash to the published sha256."""


class PolicyCache:
    def __init__(self, root: str | os.PathLike, keep: int = 2):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = max(2, keep)

    @property
    def tmp_path(self) -> Path:
        return self.root / ".download.tmp"

    def bad_versions(self) -> set[str]:
        path = self.root / "bad_versions.json"
        return set(json.loads(path.read_text())) if path.exists() else set()

    def mark_bad(self, version: str) -> None:
        bad = self.bad_versions() | {version}
        atomic_write(self.root / "bad_versions.json", json.dumps(sorted(bad)).encode())

    def local(self) -> list[LocalPolicy]:
        """Verified local policies, oldest first (bad versions excluded)."""
        bad = self.bad_versions()
        out = []
        for meta in self.root.glob("v*.json"):
            try:
                info = PolicyInfo.from_dict(json.loads(meta.read_text()))
            except (ValueError, json.JSONDecodeError):
                continue
            onnx = self.root / f"{info.version}.onnx"
            if info.version not in bad and onnx.exists():
                out.append(LocalPolicy(onnx, info))
        return sorted(out, key=lambda p: version_number(p.version))

    def get(self, version: str) -> LocalPolicy | None:
        return next((p for p in self.local() if p.version == version), None)

    def install(self, info: PolicyInfo, downloaded: Path) -> LocalPolicy:
        """Verify `downloaded` against `info.sha256` and move it in; PolicyHashMismatch if it differs."""
        digest = hashlib.sha256()
        with open(downloaded, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != info.sha256:
            downloaded.unlink(missing_ok=True)
            raise PolicyHashMismatch(
                f"policy {info.version}: sha256 {digest.hexdigest()[:12]}.. != published {info.sha256[:12]}.."
            )
        target = self.root / f"{info.version}.onnx"
        os.replace(downloaded, target)
        atomic_write(self.root / f"{info.version}.json", info.to_json())
        self._prune()
        return LocalPolicy(target, info)

    def rollback(self, bad_version: str) -> LocalPolicy | None:
        """Mark `bad_version` unusable, delete it, and return the newest remaining policy."""
        self.mark_bad(bad_version)
        for suffix in ("onnx", "json"):
            (self.root / f"{bad_version}.{suffix}").unlink(missing_ok=True)
        remaining = self.local()
        return remaining[-1] if remaining else None

    def _prune(self) -> None:
        for old in self.local()[: -self.keep]:
            old.path.unlink(missing_ok=True)
            old.path.with_suffix(".json").unlink(missing_ok=True)
