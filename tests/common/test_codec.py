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
