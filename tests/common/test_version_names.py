"""Policy version names parse strictly: the exact ASCII form, nothing around it."""

import pytest

from lwd_common.policy_store import version_number


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
