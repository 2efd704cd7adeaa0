"""msgpack with numpy arrays, and nothing that can execute code on load.

Arrays travel as a msgpack extension (dtype, shape, raw bytes). Object arrays
and unknown types are refused on both ends, so a hostile peer cannot make us
unpickle anything.

Decoding a frame from the network also bounds the *decoded* memory, not just
the frame's size: msgpack turns a 1-byte empty array into a 56-byte list and a
10-byte empty ndarray into a Python object with a header parse, so one 16 MiB
frame could otherwise cost a gigabyte and a minute. `DecodeLimits` caps the
length of each container, the number of elements of all containers together and
the number of arrays; the checks run while msgpack builds the objects (hooks),
so a hostile frame is abandoned as soon as it crosses a limit. Episode files
from our own store decode without limits (they can be long).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

NDARRAY_EXT = 42
_ALLOWED_KINDS = frozenset("biuf")  # bool, signed, unsigned, float
_MAX_NDIM = 8
_CONTAINER_COST = 8  # an empty list or dict costs as much memory as ~8 entries: count it so


class CodecError(ValueError):
    """Raised for data that is not valid lwd msgpack."""


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on what one decoded message may hold (None: msgpack's defaults, i.e. the input's length)."""

    max_container_len: int = 200_000  # entries of one array or map
    max_elements: int = 400_000  # entries of all arrays and maps together
    max_arrays: int = 64  # numpy arrays (the ndarray extension)
    max_str_len: int = 1 << 20  # bytes of one str


# What a frame from the network may hold: a chunk carries six arrays and a few
# short lists; `missing` holds at most 1000 seqs; hello's open_episodes is the
# longest list a well-behaved robot sends (its spooled episodes).
WIRE_LIMITS = DecodeLimits()


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
    unpacker = msgpack.Unpacker(
        raw=False,
        max_buffer_size=len(data),
        max_array_len=_MAX_NDIM + 2,
        max_str_len=64,
        max_map_len=0,
        max_bin_len=0,
        max_ext_len=0,
    )
    unpacker.feed(data)
    try:
        dtype_str, shape = unpacker.unpack()
    except Exception as exc:  # noqa: BLE001 - any malformed header is a codec error
        raise CodecError(f"bad ndarray header: {exc}") from exc
    offset = unpacker.tell()
    if (
        not isinstance(dtype_str, str)
        or not isinstance(shape, list)
        or len(shape) > _MAX_NDIM
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise CodecError("bad ndarray header: want (dtype str, list of non-negative ints)")
    try:
        dtype = np.dtype(dtype_str)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"bad ndarray dtype {dtype_str!r}") from exc
    if dtype.kind not in _ALLOWED_KINDS or dtype.subdtype is not None:
        raise CodecError(f"refusing to decode array of dtype {dtype}")
    if math.prod(shape) * dtype.itemsize != len(data) - offset:
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


class _Budget:
    """Counts containers' entries and arrays while msgpack decodes; raises once a limit is crossed."""

    def __init__(self, limits: DecodeLimits):
        self.limits = limits
        self.elements = 0
        self.arrays = 0

    def _count(self, n: int) -> None:
        self.elements += n
        if self.elements > self.limits.max_elements:
            raise CodecError(f"message holds more than {self.limits.max_elements} elements")

    def list_hook(self, value: list) -> list:
        self._count(len(value) + _CONTAINER_COST)
        return value

    def object_hook(self, value: dict) -> dict:
        self._count(2 * len(value) + _CONTAINER_COST)
        return value

    def ext_hook(self, code: int, data: bytes) -> Any:
        self.arrays += 1
        self._count(_CONTAINER_COST)
        if self.arrays > self.limits.max_arrays:
            raise CodecError(f"message holds more than {self.limits.max_arrays} arrays")
        return _ext_hook(code, data)


def unpackb(data: bytes, max_size: int | None = None, limits: DecodeLimits | None = None) -> Any:
    """Deserialise bytes made by `packb`; arrays come back read-only views.

    `limits` bounds the decoded memory (use `WIRE_LIMITS` for anything from the network).
    """
    if max_size is not None and len(data) > max_size:
        raise CodecError(f"message of {len(data)} bytes exceeds limit {max_size}")
    try:
        if limits is None:
            return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
        budget = _Budget(limits)
        n = limits.max_container_len
        return msgpack.unpackb(
            data,
            ext_hook=budget.ext_hook,
            list_hook=budget.list_hook,
            object_hook=budget.object_hook,
            raw=False,
            strict_map_key=False,
            max_array_len=n,
            max_map_len=n,
            max_str_len=limits.max_str_len,
        )
    except CodecError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types on bad input
        raise CodecError(f"malformed msgpack: {exc}") from exc
