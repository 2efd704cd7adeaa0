"""Policy version names parse strictly (the exact ASCII form, nothing around it), and the policy store
is the one that numbers them."""

import pytest

from lwd_common.policy_store import PolicyStore, version_number


@pytest.mark.parametrize("name, number", [("v000001", 1), ("v000042", 42), ("v1000000003", 1_000_000_003)])
def test_a_version_name_is_v_and_at_least_six_ascii_digits(name, number):
    assert version_number(name) == number


@pytest.mark.parametrize(
    "name",
    [
        "v000001\n",
        " v000001",
        "v00001",
        "V000001",
        "v\u0660\u0660\u0660\u0660\u0660\u0661",
        "v000001\x1b[2J",
        "",
    ],
)
def test_anything_else_is_not_a_version(name):
    with pytest.raises(ValueError, match="invalid policy version"):
        version_number(name)


def test_the_store_names_the_version_a_builder_writes_into_its_graph(tmp_path):
    """The learner writes the version into the ONNX graph; the store is the one that numbers it."""
    store = PolicyStore(tmp_path)
    store.publish(b"first", training_step=0)
    asked: list[str] = []

    def build(version: str) -> bytes:
        asked.append(version)
        return f"graph of {version}".encode()

    info = store.publish(build, training_step=50)
    assert asked == [info.version] == ["v000002"]
    assert store.path_of(info.version).read_bytes() == b"graph of v000002"


def test_a_builder_that_returns_nothing_publishes_nothing(tmp_path):
    store = PolicyStore(tmp_path)
    with pytest.raises(ValueError, match="non-empty"):
        store.publish(lambda version: b"", training_step=0)
    assert store.latest() is None
