"""The hand-written protobuf encoder decodes, with the generated classes, to exactly what it was given."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from highlight_logging._core.convert import severity_number
from highlight_logging._devtools.receiver import any_value_to_python
from highlight_logging._export import encode as _encode

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)


def _normal(v: Any) -> Any:
    return v


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(values)
def test_any_value_round_trips(value: Any) -> None:
    """Every value the snapshot can hold encodes to the AnyValue the generated classes decode."""
    decoded = AnyValue.FromString(_encode.any_value(value))
    assert any_value_to_python(decoded) == value


def test_special_numbers_and_text() -> None:
    """NaN, infinities, ints beyond 64 bits and lone surrogates encode without error."""
    assert math.isnan(AnyValue.FromString(_encode.any_value(math.nan)).double_value)
    assert AnyValue.FromString(_encode.any_value(-math.inf)).double_value == -math.inf
    assert AnyValue.FromString(_encode.any_value(2**64)).string_value == str(2**64)
    assert AnyValue.FromString(_encode.any_value("a\ud800b")).string_value == "a\\ud800b"


def test_severity_mapping() -> None:
    """stdlib levels map to OTLP severities; custom levels fall in proportion between them."""
    assert [severity_number(n) for n in (10, 20, 30, 40, 50)] == [5, 9, 13, 17, 21]
    assert severity_number(5) == 1  # TRACE
    assert severity_number(25) == 10  # SUCCESS -> INFO2
    assert severity_number(35) == 14
    assert all(1 <= severity_number(n) <= 24 for n in range(-5, 200))
    levels = [severity_number(n) for n in range(0, 60)]
    assert levels == sorted(levels)
