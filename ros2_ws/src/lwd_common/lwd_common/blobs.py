"""Where the episode store keeps its bytes: a local directory or an S3 bucket (its one job).

`EpisodeStore` (lwd_common/store.py) needs five operations on named byte blobs, and both
backends give each the same guarantee:

| operation | local directory | S3 (obstore) |
|---|---|---|
| `create(key, data)`: write once, False if the key exists | temp file, fsync, `link` (fails if present) | PUT with `If-None-Match: *` |
| `replace(key, data)`: readers see the old or the new bytes whole | temp file, fsync, `rename` | PUT (atomic per object) |
| `read(key)` | read the file | GET |
| `exists(key)` | stat | HEAD |
| `keys(folder)`: the blobs directly in it | directory listing | LIST with a `/` delimiter |

A location names the backend: a path is a directory; `s3://bucket/prefix` is a bucket, configured
the way every S3 tool is, from the environment: `AWS_ENDPOINT_URL` (e.g. a SeaweedFS or MinIO
server), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`; an `http://` endpoint is
allowed (a loopback test server). Why obstore: its puts carry the create-only precondition that
makes a write idempotent without a read first (boto3 needs a second request, and its botocore
pins python-dateutil below the version this venv runs), requests retry with back-off, and it has
no Python dependencies. It is imported only when an `s3://` location is opened, so a robot that
stores to a directory never needs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

S3_SCHEME = "s3://"


class Blobs(Protocol):
    """Named immutable-or-atomically-replaced byte blobs (see the module table)."""

    location: str

    def create(self, key: str, data: bytes) -> bool: ...
    def replace(self, key: str, data: bytes) -> None: ...
    def read(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def keys(self, folder: str) -> list[str]: ...


class BlobMissing(FileNotFoundError):
    """No blob under that key (a FileNotFoundError, as a missing file always was)."""


class BlobStoreError(OSError):
    """The object store failed a request (unreachable, refused, timed out): try again later."""


def open_blobs(location: str | os.PathLike) -> Blobs:
    """The backend a location names: `s3://bucket/prefix` or a directory path."""
    text = os.fspath(location)
    if text.startswith(S3_SCHEME):
        return S3Blobs(text)
    if "://" in text:
        raise ValueError(f"unsupported store location {text!r}: a directory path or s3://bucket/prefix")
    if text.startswith("s3:/"):  # pathlib turned an s3:// URL into a path: never a local folder "s3:"
        raise ValueError(
            f"store location {text!r} is an s3:// URL mangled by a path join; pass it as a string"
        )
    return DirectoryBlobs(Path(text))


def is_remote(location: str | os.PathLike) -> bool:
    return os.fspath(location).startswith(S3_SCHEME)


def fsync_dir(path: Path) -> None:
    """Make a rename or link in `path` durable (the directory entry, not only the file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable_temp(path: Path, data: bytes) -> Path:
    """`data` in a fsynced temporary file beside `path` (the caller links or renames it into place)."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


class DirectoryBlobs:
    """Blobs as files under a root directory; keys are relative paths with `/`."""

    def __init__(self, root: Path):
        self.root = root
        self.location = str(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def create(self, key: str, data: bytes) -> bool:
        path = self.path(key)
        if path.exists():
            return False
        tmp = _durable_temp(path, data)
        try:
            os.link(tmp, path)  # atomic, and refuses an existing name: exactly one creator wins
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
        return True

    def replace(self, key: str, data: bytes) -> None:
        path = self.path(key)
        tmp = _durable_temp(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)

    def read(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(key) from None

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def keys(self, prefix: str) -> list[str]:
        folder = self.path(prefix)
        if not folder.is_dir():
            return []
        return sorted(
            f"{prefix.rstrip('/')}/{p.name}"
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".")
        )


class S3Blobs:
    """Blobs as objects in an S3 bucket under a prefix (obstore; see the module doc for configuration)."""

    def __init__(self, url: str):
        from obstore.store import S3Store

        parsed = urlparse(url)
        if not parsed.netloc:
            raise ValueError(f"store location {url!r} names no bucket: s3://bucket/prefix")
        self.location = url
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        self._store = S3Store.from_url(
            url,
            client_options={
                "allow_http": endpoint.startswith("http://"),
                "connect_timeout": "5s",
                "timeout": "60s",
            },
            retry_config={"max_retries": 5, "retry_timeout": timedelta(seconds=60)},
        )

    def create(self, key: str, data: bytes) -> bool:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        with _s3_errors("PUT", key):
            try:
                obstore.put(self._store, key, data, mode="create")
            except (AlreadyExistsError, PreconditionError):
                return False
        return True

    def replace(self, key: str, data: bytes) -> None:
        import obstore

        with _s3_errors("PUT", key):
            obstore.put(self._store, key, data, mode="overwrite")

    def read(self, key: str) -> bytes:
        import obstore

        with _s3_errors("GET", key):
            return bytes(obstore.get(self._store, key).bytes())

    def exists(self, key: str) -> bool:
        import obstore

        try:
            with _s3_errors("HEAD", key):
                obstore.head(self._store, key)
        except BlobMissing:
            return False
        return True

    def keys(self, prefix: str) -> list[str]:
        import obstore

        with _s3_errors("LIST", prefix):
            listing = obstore.list_with_delimiter(self._store, prefix.rstrip("/") + "/")
        return sorted(str(meta["path"]) for meta in listing["objects"])


@contextmanager
def _s3_errors(request: str, key: str) -> Iterator[None]:
    """obstore's errors as ours: a missing object is BlobMissing, any other failure BlobStoreError (an
    OSError, like a disk that fails: callers retry), with the first line of obstore's long message."""
    from obstore.exceptions import BaseError, NotFoundError

    try:
        yield
    except (NotFoundError, FileNotFoundError):
        raise BlobMissing(key) from None
    except BaseError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BlobStoreError(f"S3 {request} {key}: {first[:300]}") from None
