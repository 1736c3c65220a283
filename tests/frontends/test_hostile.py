"""Hostile input, through all three front ends: never raised into the caller, never costs its neighbours."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger as loguru_logger

import highlight_logging
from highlight_logging import HighlightHandler, LoguruSink, StructlogProcessor
from highlight_logging._devtools.receiver import Receiver


class Evil:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class EvilError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


def cyclic_dict() -> dict[str, Any]:
    d: dict[str, Any] = {"a": 1}
    d["self"] = d
    return d


def cyclic_list() -> list[Any]:
    items: list[Any] = [1]
    items.append(items)
    return items


def deep_chain(depth: int) -> BaseException:
    exc: BaseException | None = None
    for i in range(depth):
        try:
            raise ValueError(f"level {i}") from exc
        except ValueError as e:
            exc = e
    assert exc is not None
    return exc


HOSTILE_EXTRAS: dict[str, Any] = {
    "evil": Evil(),
    "cyclic": cyclic_dict(),
    "cyclic_list": cyclic_list(),
    "a_set": {1, 2, 3},
    "a_tuple": (1, (2, (3,))),
    "huge_int": 2**200,
    "negative_huge": -(2**100),
    "nan": math.nan,
    "inf": math.inf,
    "raw": b"\xff\x00",
    "surrogate": "bad \ud800 text",
    "evil_key_dict": {Evil(): 1},
}


Emit = Callable[[str, dict[str, Any], BaseException | None], None]


@pytest.fixture(params=["stdlib", "structlog", "loguru"])
def emit(request: pytest.FixtureRequest, receiver: Receiver) -> Iterator[Emit]:
    """One way to log a (message, extras, exception) triple, per front end."""
    endpoint = receiver.endpoint
    if request.param == "stdlib":
        log = logging.getLogger("hostile")
        log.handlers.clear()
        log.propagate = False
        log.setLevel(logging.DEBUG)
        log.addHandler(HighlightHandler(endpoint=endpoint))

        def stdlib(msg: Any, extras: dict[str, Any], exc: BaseException | None) -> None:
            log.error(msg, extra=extras, exc_info=exc)

        yield stdlib
        log.handlers.clear()
    elif request.param == "structlog":
        structlog.configure(
            processors=[StructlogProcessor(endpoint=endpoint), structlog.processors.KeyValueRenderer()],
            logger_factory=structlog.ReturnLoggerFactory(),
            cache_logger_on_first_use=False,
        )
        slog = structlog.get_logger("hostile")

        def struct(msg: Any, extras: dict[str, Any], exc: BaseException | None) -> None:
            try:
                slog.error(msg, exc_info=exc, **extras)
            except Exception as e:  # the renderer may choke on hostile values; ours must not
                assert (
                    "no repr" in str(e) or "no str" in str(e) or isinstance(e, (RecursionError, ValueError))
                )

        yield struct
        structlog.reset_defaults()
    else:
        loguru_logger.remove()
        loguru_logger.add(LoguruSink(endpoint=endpoint), level="TRACE", catch=False)

        def loguru(msg: Any, extras: dict[str, Any], exc: BaseException | None) -> None:
            if not isinstance(msg, str):
                # loguru itself calls str(message) before any sink runs: out of our hands.
                msg = "<unprintable Evil object (str() raised in loguru)>"
            loguru_logger.opt(exception=exc).bind(**extras).error(msg)

        yield loguru
        loguru_logger.remove()


def delivered(receiver: Receiver, n: int) -> list[Any]:
    highlight_logging.flush(20)
    assert receiver.wait_for_logs(n, 10), len(receiver.log_records())
    return receiver.log_records()


def test_hostile_extras_get_readable_fallbacks(emit: Emit, receiver: Receiver) -> None:
    """Raising __str__/__repr__, cycles, sets, huge ints, NaN, bytes and surrogates: readable values, neighbours arrive."""
    emit("before", {}, None)
    emit("hostile", dict(HOSTILE_EXTRAS), None)
    emit("after", {}, None)
    records = delivered(receiver, 3)
    bodies = [r.body for r in records]
    assert bodies == ["before", "hostile", "after"]
    a = records[1].attributes
    assert str(a["evil"]).startswith("<unprintable")
    assert a["cyclic"] == {"a": 1, "self": "<cycle>"}
    assert a["cyclic_list"] == [1, "<cycle>"]
    assert sorted(a["a_set"]) == [1, 2, 3]  # type: ignore[arg-type]
    assert a["a_tuple"] == [1, [2, [3]]]
    assert a["huge_int"] == str(2**200)
    assert a["negative_huge"] == str(-(2**100))
    assert math.isnan(a["nan"])  # type: ignore[arg-type]
    assert a["inf"] == math.inf
    assert a["raw"] == b"\xff\x00"
    assert a["surrogate"] == "bad \\ud800 text"


def test_hostile_messages_and_exceptions(emit: Emit, receiver: Receiver) -> None:
    """A raising message, a surrogate message, an exception whose __str__ raises, and a deep chain."""
    emit(Evil(), {}, None)  # type: ignore[arg-type]
    emit("lone \udfff surrogate", {}, None)
    try:
        raise EvilError()
    except EvilError as e:
        emit("evil exception", {}, e)
    emit("deep", {}, deep_chain(200))
    records = delivered(receiver, 4)
    by_body = {str(r.body): r for r in records}
    assert any(b.startswith("<unprintable") for b in by_body)
    assert "lone \\udfff surrogate" in by_body
    evil = by_body["evil exception"].attributes
    assert str(evil["exception.type"]).endswith("EvilError")
    assert "str() failed" in str(evil["exception.message"])
    deep = by_body["deep"].attributes
    assert deep["exception.message"] == "level 199"
    assert "level 0" in str(deep["exception.stacktrace"])
    assert receiver.wait_for_spans(2, 10)


def test_huge_message_and_thousand_extras(emit: Emit, receiver: Receiver) -> None:
    """A 5 MB message is capped and marked; 1,000 extras are cut at the count limit; neighbours arrive."""
    emit("x" * 5_000_000, {}, None)
    emit("many", {f"k{i}": i for i in range(1000)}, None)
    emit("neighbour", {}, None)
    records = delivered(receiver, 3)
    big, many, neighbour = records
    assert len(str(big.body)) < 70_000 and str(big.body).endswith("[truncated]")
    assert big.attributes["highlight.body_truncated"] == 5_000_000
    assert len(many.attributes) <= 128
    assert many.record.dropped_attributes_count == 1000 - sum(1 for k in many.attributes if k.startswith("k"))
    assert neighbour.body == "neighbour"


def test_extras_past_the_count_limit_are_never_converted(emit: Emit, receiver: Receiver) -> None:
    """Values beyond attribute_count_limit are counted as dropped without calling their __str__."""
    calls: list[int] = []

    class Loud:
        def __str__(self) -> str:
            calls.append(1)
            return "loud"

    emit("loud", {f"k{i}": Loud() for i in range(500)}, None)
    (rec,) = delivered(receiver, 1)
    kept = sum(1 for k in rec.attributes if k.startswith("k"))
    assert kept > 0 and len(calls) <= 128
    assert rec.record.dropped_attributes_count == 500 - kept


def test_exception_group_with_members(emit: Emit, receiver: Receiver) -> None:
    """ExceptionGroups arrive whole, members included."""
    import sys

    if sys.version_info < (3, 11):
        pytest.skip("ExceptionGroup is 3.11+")
    try:
        raise ExceptionGroup("batch failed", [ValueError("v"), KeyError("k")])  # noqa: F821
    except Exception as e:
        emit("group", {}, e)
    (record,) = delivered(receiver, 1)
    stack = str(record.attributes["exception.stacktrace"])
    assert "ValueError: v" in stack and "KeyError: 'k'" in stack


# --- property-based: any nested value through any front end --------------------------------------

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(), max_size=30)  # includes lone surrogates
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
        | st.tuples(children, children)
    ),
    max_leaves=12,
)
extras_strategy = st.dictionaries(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).filter(
        lambda k: (
            k not in logging.LogRecord("", 0, "", 0, "", (), None).__dict__
            and k
            not in {"message", "asctime", "event", "level", "timestamp", "logger", "exc_info", "exception"}
        )
    ),
    values,
    max_size=5,
)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(message=st.text(max_size=50), extras=extras_strategy)
def test_any_record_is_delivered(
    emit: Emit, receiver: Receiver, message: str, extras: dict[str, Any]
) -> None:
    """For arbitrary messages and nested extras, logging never raises and the record arrives."""
    before = len(receiver.log_records())
    emit(message.replace("%", "%%").replace("{", "{{").replace("}", "}}"), extras, None)
    highlight_logging.flush(10)
    assert receiver.wait_for_logs(before + 1, 10)
    assert sum(highlight_logging.stats()["logs"]["dropped"].values()) == 0
