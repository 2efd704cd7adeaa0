import numpy as np
import pytest

from lwd_common import codec


def test_arrays_round_trip_with_dtype_and_shape():
    data = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([True, False]), "s": "x"}
    out = codec.unpackb(codec.packb(data))
    assert out["a"].dtype == np.float32 and out["a"].shape == (3, 4)
    np.testing.assert_array_equal(out["a"], data["a"])
    np.testing.assert_array_equal(out["b"], data["b"])
    assert out["s"] == "x"


def test_numpy_scalars_become_python_numbers():
    assert codec.unpackb(codec.packb({"x": np.float64(1.5), "n": np.int32(3)})) == {"x": 1.5, "n": 3}


def test_object_arrays_are_refused():
    with pytest.raises(codec.CodecError):
        codec.packb(np.array([{"a": 1}], dtype=object))


def test_arbitrary_objects_are_refused():
    with pytest.raises(codec.CodecError):
        codec.packb({"x": object()})


def test_truncated_input_is_a_codec_error():
    data = codec.packb({"a": np.zeros(100)})
    with pytest.raises(codec.CodecError):
        codec.unpackb(data[:-7])


def test_array_whose_payload_disagrees_with_shape_is_refused():
    import msgpack

    header = msgpack.packb(("<f4", [10]))
    bad = msgpack.packb(msgpack.ExtType(codec.NDARRAY_EXT, header + b"\x00" * 8))
    with pytest.raises(codec.CodecError, match="size"):
        codec.unpackb(bad)


def test_unknown_extension_type_is_refused():
    import msgpack

    with pytest.raises(codec.CodecError, match="extension"):
        codec.unpackb(msgpack.packb(msgpack.ExtType(7, b"xx")))


def test_size_limit_is_enforced():
    with pytest.raises(codec.CodecError, match="exceeds"):
        codec.unpackb(codec.packb(b"x" * 100), max_size=50)


# --- decoding what a hostile peer sends: bounded memory and time -------------------------------------------


def _empty_array():
    import msgpack

    return msgpack.ExtType(codec.NDARRAY_EXT, msgpack.packb(("<f4", [0])))


@pytest.mark.parametrize(
    "bomb",
    [
        lambda: [_empty_array()] * 300_000,  # one container longer than any frame holds
        lambda: [[_empty_array()] * 40] * 5_000,  # many arrays
        lambda: [[[]] * 100] * 20_000,  # many small containers
        lambda: [["ab"] * 10_000] * 200,  # many small strings
    ],
)
def test_wire_limits_refuse_decoding_bombs_quickly(bomb):
    import time

    import msgpack

    data = msgpack.packb(bomb())
    t0 = time.monotonic()
    with pytest.raises(codec.CodecError):
        codec.unpackb(data, limits=codec.WIRE_LIMITS)
    assert time.monotonic() - t0 < 1.0


def test_wire_limits_let_ordinary_messages_through():
    msg = {
        "steps": {"a": np.zeros((15, 16), np.float32), "images": {"head": [b"x" * 9000] * 15}},
        "open_episodes": [f"robot0-{i}" for i in range(20_000)],
    }
    out = codec.unpackb(codec.packb(msg), limits=codec.WIRE_LIMITS)
    assert out["open_episodes"][-1] == "robot0-19999" and out["steps"]["a"].shape == (15, 16)


@pytest.mark.parametrize(
    "header",
    [
        ("<f4", [-1, -4]),
        ("<f4", [2**62, 4]),
        ("(4,)f4", [1]),
        ("i4,i4", [1]),
        (7, [1]),
        ("<f4", "4"),
        ("<f4", [True]),
    ],
)
def test_malformed_array_headers_are_codec_errors(header):
    import msgpack

    data = msgpack.packb(msgpack.ExtType(codec.NDARRAY_EXT, msgpack.packb(header) + b"\x00" * 16))
    with pytest.raises(codec.CodecError):
        codec.unpackb(data)
