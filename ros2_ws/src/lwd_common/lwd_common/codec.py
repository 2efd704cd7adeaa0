"""msgpack with numpy arrays, and nothing that can execute code on load.

Arrays travel as a msgpack extension (dtype, shape, raw bytes). Object arrays
and unknown types are refused on both ends, so a hostile peer cannot make us
unpickle anything.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

NDARRAY_EXT = 42
_ALLOWED_KINDS = frozenset("biuf")  # bool, signed, unsigned, float


class CodecError(ValueError):
    """Raised for data that is not valid lwd msgpack."""


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise CodecError(f"refusing to encode array of dtype {obj.dtype}")
        arr = np.ascontiguousarray(obj)
        header = msgpack.packb((arr.dtype.str, list(arr.shape)))
        return msgpack.ExtType(NDARRAY_EXT, header + arr.tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    raise CodecError(f"cannot encode object of type {type(obj).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != NDARRAY_EXT:
        raise CodecError(f"unknown msgpack extension type {code}")
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(data))
    unpacker.feed(data)
    try:
        dtype_str, shape = unpacker.unpack()
    except Exception as exc:  # noqa: BLE001 - any malformed header is a codec error
        raise CodecError(f"bad ndarray header: {exc}") from exc
    offset = unpacker.tell()
    dtype = np.dtype(dtype_str)
    if dtype.kind not in _ALLOWED_KINDS:
        raise CodecError(f"refusing to decode array of dtype {dtype}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count * dtype.itemsize != len(data) - offset:
        raise CodecError("ndarray payload size does not match its shape")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def packb(obj: Any) -> bytes:
    """Serialise `obj` (dicts, lists, scalars, str, bytes, numpy arrays)."""
    try:
        return msgpack.packb(obj, default=_default, use_bin_type=True)
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(str(exc)) from exc


def unpackb(data: bytes, max_size: int | None = None) -> Any:
    """Deserialise bytes made by `packb`; arrays come back read-only views."""
    if max_size is not None and len(data) > max_size:
        raise CodecError(f"message of {len(data)} bytes exceeds limit {max_size}")
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except CodecError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types on bad input
        raise CodecError(f"malformed msgpack: {exc}") from exc
