"""tqmon.boundedjson: hostile JSON from Redis is a bad value, never a crash; json is the
reference for what it accepts."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tqmon import boundedjson
from tqmon.boundedjson import BadJSON

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=20,
)


@given(JSON)
def test_same_as_json_for_what_real_programs_write(value) -> None:
    raw = json.dumps(value)
    assert boundedjson.loads(raw) == json.loads(raw)
    assert boundedjson.loads(raw.encode()) == json.loads(raw)


@pytest.mark.parametrize("raw", ["[" * 100_000 + "]" * 100_000,  # json itself: RecursionError
                                 "[" * 65 + "]" * 65,  # parses, but past the bound
                                 '{"a":' * 70 + "1" + "}" * 70])
def test_too_deep_is_a_bad_value(raw: str) -> None:
    with pytest.raises(BadJSON, match="deeper"):
        boundedjson.loads(raw)
    with pytest.raises(BadJSON):
        boundedjson.loads(raw.encode())


def test_the_bound_itself_is_accepted_and_many_shallow_brackets_are_fine() -> None:
    assert boundedjson.loads("[" * 64 + "]" * 64) is not None
    wide = json.dumps([[i] for i in range(10_000)])
    assert len(boundedjson.loads(wide)) == 10_000


def test_too_large_and_not_json() -> None:
    with pytest.raises(BadJSON, match="longer"):
        boundedjson.loads(b" " * (boundedjson.MAX_BYTES + 1))
    for raw in (b"{", b"\xff\xfe", "nan-ish", ""):
        with pytest.raises(BadJSON):
            boundedjson.loads(raw)
    assert isinstance(BadJSON("x"), ValueError)  # callers that catch ValueError still do
