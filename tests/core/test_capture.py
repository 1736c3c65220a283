"""``capture_record``'s C twin (``_speedups.capture_record``) gives the Pending the Python reference
(``_core.convert.capture_record_py``) gives, raises where it raises, and hands it what it does not handle."""

from __future__ import annotations

import logging
import shutil
import sysconfig
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from highlight_logging._core import context as _context
from highlight_logging._core import convert as _convert
from highlight_logging._core.record import SITE_KEYS, THREAD_KEYS, ExceptionInfo, Pending
from highlight_logging._core.settings import Settings
from highlight_logging._export import fastpath as _plain

try:
    from highlight_logging import _speedups
except ImportError:
    _speedups = None

# Under HIGHLIGHT_LOGGING_PURE_PYTHON _core.convert does not set the twin up: nothing to compare.
needs_c = pytest.mark.skipif(
    _speedups is None or _plain.pure_python, reason="no C speedups in this install, or not in use"
)
SETTINGS = Settings()
SITE = (SITE_KEYS, "/app/views.py", "checkout", 42, 1234, "MainThread")
SKIP = frozenset({"event", "level"})


def both(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """(reference's outcome, C twin's outcome): a Pending, or the exception's type; observed times
    are checked against the clock and then left out."""
    out = []
    for impl in (_convert.capture_record_py, _speedups.capture_record if _speedups else None):
        assert impl is not None
        copied = [list(a) if isinstance(a, list) else a for a in args]  # each call its own list
        before = time.time_ns()
        try:
            p = impl(*copied, **kwargs)
        except Exception as exc:
            out.append(type(exc))
            continue
        after = time.time_ns()
        assert type(p) is Pending
        assert before - 0x100 <= p.observed_ns <= after
        assert p.observed_ns & 0xFF == 0
        info = p.exception  # ExceptionInfo has no __eq__: compare its fields
        fields = None if info is None else (info.type, info.message, info.stacktrace)
        out.append(p._replace(observed_ns=0, exception=fields))
    return out[0], out[1]


def same(*args: Any, **kwargs: Any) -> Any:
    ref, c = both(*args, **kwargs)
    assert c == ref
    return c


@needs_c
def test_front_ends_call_the_c_twin_where_it_was_built() -> None:
    """With a compiler at install time, ``capture_record`` is the C twin (unless pure Python was asked for)."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None or _plain.pure_python:
        pytest.skip("no C compiler here, or the pure-Python path was asked for")
    assert _convert.capture_record is _speedups.capture_record


@needs_c
def test_a_plain_record_is_the_reference_s() -> None:
    """A structlog-like event (dict items, a skip set) and a stdlib-like list of extras."""
    event = {"event": "user action", "user": 7, "action": "login", "level": "info", "ratio": 0.5, "ok": True}
    p = same(SETTINGS, 123, 20, "INFO", "app", "user action", {}, event.items(), site=SITE, skip=SKIP)
    assert p.extras == (("user", 7), ("action", "login"), ("ratio", 0.5), ("ok", True))
    same(SETTINGS, 123, 20, "INFO", "app", "user 7 did login", {}, [("k", 7)], None, site=SITE)
    same(SETTINGS, 123, 20, "INFO", "app", "no extras", {"code.stacktrace": "x"}, [], logged_now=False)


@needs_c
def test_every_argument_by_keyword_and_position() -> None:
    """Keywords in any order, and all fourteen positionally, read as the reference reads them."""
    same(
        logged_now=False,
        site=SITE,
        extras=[("a", 1)],
        base_attributes={},
        body="b",
        scope="s",
        level_name="WARNING",
        levelno=30,
        when=5,
        settings=SETTINGS,
        skip=frozenset(),
        span_only=False,
        exc=None,
        exception=None,
    )
    same(
        SETTINGS, 5, 30, "WARNING", "s", "b", {}, [("a", 1)], None, None, SITE, frozenset({"a"}), False, True
    )


@needs_c
def test_values_are_snapshotted_as_the_reference_does() -> None:
    """Containers and objects coerced, long strings cut, odd keys made text, tuples kept by reference."""

    class Loud:
        def __str__(self) -> str:
            raise RuntimeError("no")

    pair = ("kept", 1)
    extras: list[Any] = [
        pair,
        ["listed", 2],
        ("long", "x" * (SETTINGS.attribute_value_length_limit + 5)),
        ("nested", {"a": [1, {"b": 2}]}),
        (3, "int key"),
        (Loud(), "bad key"),
        ("bad value", Loud()),
        ("none", None),
        ("big", 2**80),
        ("bytes", b"\x00"),
    ]
    p = same(SETTINGS, 1, 20, "INFO", "s", "b", {}, extras)
    assert p.extras[0] is pair or not isinstance(p.extras[0], tuple)
    c = _speedups.capture_record(SETTINGS, 1, 20, "INFO", "s", "b", {}, extras)
    assert c.extras[0] is pair


@needs_c
def test_extras_past_the_count_limit_are_counted_not_converted() -> None:
    """Past attribute_count_limit a value is dropped (and counted) before its __str__ could run."""
    calls: list[int] = []

    class Counted:
        def __str__(self) -> str:
            calls.append(1)
            return "c"

    small = Settings(attribute_count_limit=3)
    p = same(small, 1, 20, "INFO", "s", "b", {}, [(f"k{i}", Counted()) for i in range(10)])
    assert len(p.extras) == 3 and p.dropped == 7
    assert len(calls) == 6  # three values each, in the reference and the twin
    none = Settings(attribute_count_limit=0)
    assert same(none, 1, 20, "INFO", "s", "b", {}, [("a", 1)]).dropped == 1


@needs_c
def test_any_iterable_of_pairs() -> None:
    """A generator, a dict's items, a tuple of lists: the same snapshot, each read once."""
    ref = _convert.capture_record_py(SETTINGS, 1, 20, "INFO", "s", "b", {}, (("a", i) for i in range(3)))
    c = _speedups.capture_record(SETTINGS, 1, 20, "INFO", "s", "b", {}, (("a", i) for i in range(3)))
    assert c._replace(observed_ns=0) == ref._replace(observed_ns=0)
    same(SETTINGS, 1, 20, "INFO", "s", "b", {}, (["a", 1], ["b", 2]))
    same(SETTINGS, 1, 20, "INFO", "s", "b", {}, {"a": 1}.items(), skip=frozenset({"a"}))


@needs_c
def test_bad_extras_raise_what_the_reference_raises() -> None:
    """A pair of three, a non-iterable, an unhashable key against a skip set: the same exception."""
    for extras in ([("a", 1, 2)], [5], 7, [(["unhashable"], 1)]):
        ref, c = both(SETTINGS, 1, 20, "INFO", "s", "b", {}, extras, skip=SKIP)
        assert isinstance(ref, type) and ref is c, extras


@needs_c
def test_what_the_twin_hands_to_the_reference() -> None:
    """An exception, a span-only report, a non-str or over-long body, bad arguments: the reference's result."""
    exc_info = ExceptionInfo("ValueError", "bad", "Traceback ...")
    try:
        raise KeyError("k")
    except KeyError as error:
        same(SETTINGS, 1, 40, "ERROR", "s", "b", {}, [], error)
    same(SETTINGS, 1, 40, "ERROR", "s", "b", {}, [], exception=exc_info)
    same(SETTINGS, 1, 40, "ERROR", "s", "b", {}, [], exception=exc_info, span_only=True)
    same(SETTINGS, 1, 20, "INFO", "s", {"a": 1}, {}, [])
    short = Settings(max_body_length=10)
    p = same(short, 1, 20, "INFO", "s", "x" * 50, {}, [])
    assert p.attributes == {"highlight.body_truncated": 50}
    for args, kwargs in (
        ((SETTINGS, 1, 20, "INFO", "s"), {}),
        ((SETTINGS, 1, 20, "INFO", "s", "b", {}, []), {"nope": 1}),
        ((SETTINGS, 1, 20, "INFO", "s", "b", {}, []), {"when": 1}),
        ((SETTINGS, 1, 20, "INFO", "s", "b", {}, [], *([None] * 7)), {}),
    ):
        ref, c = both(*args, **kwargs)
        assert ref is TypeError and c is TypeError


@needs_c
def test_trace_and_request_context_are_read_alike() -> None:
    """The active span's ids and highlight.io's request context, or their absence."""
    tracer = TracerProvider().get_tracer("t")
    args = (SETTINGS, 1, 20, "INFO", "s", "b", {}, [("k", 1)])
    assert same(*args).trace_id == b""
    with tracer.start_as_current_span("request") as span, _context.context("sess", "req"):
        p = same(*args)
        assert p.trace_id == span.get_span_context().trace_id.to_bytes(16, "big")
        assert p.request == ("sess", "req")
    assert same(*args).request is None


@needs_c
def test_settings_are_read_per_settings_object() -> None:
    """Limits come from the Settings passed, even when another Settings came just before."""
    long = "x" * 100
    tight, loose = Settings(attribute_value_length_limit=10), Settings(attribute_value_length_limit=1000)
    for s in (tight, loose, tight, SETTINGS, loose):
        p = same(s, 1, 20, "INFO", "s", "b", {}, [("v", long)])
        assert p.extras[0][1].count("x") == min(100, s.attribute_value_length_limit)


keys = st.one_of(st.text(max_size=10), st.integers(), st.none())
values = st.recursive(
    st.one_of(
        st.integers(), st.floats(), st.booleans(), st.text(max_size=40), st.none(), st.binary(max_size=8)
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@needs_c
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    body=st.text(max_size=60),
    extras=st.lists(st.tuples(keys, values), max_size=10),
    skip=st.frozensets(st.text(max_size=3), max_size=3),
    count=st.integers(min_value=-1, max_value=12),
    length=st.integers(min_value=0, max_value=30),
    as_items=st.booleans(),
)
def test_any_record_is_the_reference_s(
    body: str,
    extras: list[tuple[Any, Any]],
    skip: frozenset[str],
    count: int,
    length: int,
    as_items: bool,
) -> None:
    """For generated extras, limits and skip sets, the twin's Pending is the reference's."""
    s = Settings(attribute_count_limit=count, attribute_value_length_limit=length)
    given_extras: Any = extras
    if as_items:
        given_extras = {k: v for k, v in extras if isinstance(k, str)}.items()
    ref, c = both(s, 1, 20, "INFO", "s", body, {}, given_extras, site=(THREAD_KEYS, 1, "T"), skip=skip)
    assert _eq(ref, c)


def _eq(a: Any, b: Any) -> bool:
    # NaN != NaN: compare the reprs, which also tell 1 from 1.0 and True.
    return repr(a) == repr(b)


@pytest.fixture
def _fresh_setup() -> Iterator[None]:
    yield
    _convert._setup_c_twin(_speedups)  # as _core.convert does at import


@needs_c
@pytest.mark.usefixtures("_fresh_setup")
def test_without_the_context_var_the_twin_asks_current_span() -> None:
    """Under another OTEL_PYTHON_CONTEXT runtime (no ContextVar to read) it calls current_span()."""
    calls: list[int] = []
    ids = (b"\x01" * 16, b"\x02" * 8, 1)

    def spy() -> tuple[bytes, bytes, int]:
        calls.append(1)
        return ids

    _convert._setup_c_twin(_speedups, spy, None)
    p = _speedups.capture_record(SETTINGS, 1, 20, "INFO", "s", "b", {}, [])
    assert calls == [1] and (p.trace_id, p.span_id, p.flags) == ids


@needs_c
def test_the_setup_checks_its_arguments() -> None:
    """A wrong argument to capture_setup() is a TypeError, not a crash later."""
    with pytest.raises(TypeError):
        _speedups.capture_setup(*([None] * 11))
    with pytest.raises(TypeError):
        _speedups.capture_setup(1, 2)


def test_the_reference_is_what_front_ends_get_without_c() -> None:
    """The reference alone builds a whole Pending (the pure-Python install's path)."""
    p = _convert.capture_record_py(SETTINGS, 1, 20, "INFO", "s", "b", {}, [("k", 1)], site=SITE)
    assert p.extras == (("k", 1),) and p.site == SITE and p.size > 0


@needs_c
def test_a_plain_record_is_left_out_of_the_cycle_collector() -> None:
    """A Pending of plain values is untracked (a long queue costs the collector nothing); one
    holding a container (a list value) stays tracked."""
    import gc

    site = (THREAD_KEYS, 1, "T")
    plain = _speedups.capture_record(
        SETTINGS, 1, 20, "INFO", "s", "b", {}, {"k": 1, "v": "x"}.items(), site=site
    )
    assert not gc.is_tracked(plain) and not gc.is_tracked(plain.extras)
    held = _speedups.capture_record(SETTINGS, 1, 20, "INFO", "s", "b", {}, [("k", [1, 2])], site=site)
    assert gc.is_tracked(held)

    class Stamp(datetime):  # loguru's time: a datetime subclass whose instances have a __dict__
        pass

    when = Stamp(2026, 12, 7, tzinfo=timezone.utc)
    tracked = _speedups.capture_record(SETTINGS, when, 20, "INFO", "s", "b", {}, {"k": 1}.items(), site=site)
    assert gc.is_tracked(tracked) and gc.is_tracked(when)
    assert not gc.is_tracked(tracked.extras) and not gc.is_tracked(tracked.site)  # still left out


@needs_c
def test_a_bad_pair_fails_as_unpacking_it_does() -> None:
    """``key, value = pair``: the same exception and message, and at most three items read."""
    read: list[int] = []

    class Endless:
        def __iter__(self) -> Iterator[str]:
            while True:
                read.append(1)
                yield "k"

    for pair in (("a", 1, 2), ("a",), 5, ["a", 1, 2], Endless()):
        outcome = []
        for impl in (_convert.capture_record_py, _speedups.capture_record):
            read.clear()
            try:
                impl(SETTINGS, 1, 20, "INFO", "s", "b", {}, [pair])
            except Exception as exc:
                outcome.append((type(exc), str(exc), len(read)))
        assert len(outcome) == 2 and outcome[0] == outcome[1], pair


@needs_c
def test_a_patched_clock_is_read_as_the_reference_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test's patched ``time.time_ns`` (as freezegun does) gives the observed time in both."""
    monkeypatch.setattr(time, "time_ns", lambda: 1_000_000_000_123)
    for impl in (_convert.capture_record_py, _speedups.capture_record):
        assert impl(SETTINGS, 1, 20, "INFO", "s", "b", {}, []).observed_ns == 1_000_000_000_000


# --- structlog_event: StructlogProcessor._export's common case in C ------------------------------

_ABSENT = object()
_EVENT_VALUES = {
    "level": st.sampled_from([_ABSENT, "info", "warning", "exception", "INFO", "nope", None, 20]),
    "logger": st.sampled_from([_ABSENT, None, "app.views", "highlight_logging.x", "grpc._channel", 3]),
    "timestamp": st.one_of(
        st.sampled_from([_ABSENT, -1.0, 1.8e10, float("nan"), "2026-11-27T08:00:00Z", 1_700_000_000, None]),
        st.floats(min_value=0, max_value=1.8e10, exclude_max=True),
    ),
    "event": st.sampled_from([_ABSENT, "user action", "", None, 42, "x" * 300]),
}
_RARE = st.sampled_from(
    ["exc_info", "exception", "stack_info", "positional_args", "_record", "lineno", "pathname"]
)
_EXTRA = st.dictionaries(
    st.text("abcdefghij_", min_size=1, max_size=6),
    st.one_of(
        st.integers(),
        st.text(max_size=20),
        st.floats(allow_nan=False),
        st.none(),
        st.lists(st.integers(), max_size=3),
    ),
    max_size=6,
)


def _exported(processor: Any, logger: Any, event: dict[str, Any]) -> list[Any]:
    """What the processor submits for ``event`` (observed times left out)."""
    got: list[Any] = []
    pipeline = processor._binding.get()
    pipeline.submit = got.append
    processor(logger, "info", dict(event))
    return [p._replace(observed_ns=0) for p in got]


@needs_c
@settings(max_examples=400, deadline=None)
@given(
    fixed=st.fixed_dictionaries({}, optional=_EVENT_VALUES),
    extra=_EXTRA,
    rare=st.lists(_RARE, max_size=2),
)
def test_structlog_events_are_read_in_c_as_the_python_path_reads_them(
    fixed: dict[str, Any], extra: dict[str, Any], rare: list[str]
) -> None:
    """Generated events (some plain, most not): the C reading submits the very Pending the Python
    path submits, or declines and the Python path does it."""
    from highlight_logging import StructlogProcessor
    from highlight_logging._frontends import structlog as _structlog

    event = {**extra, **{k: v for k, v in fixed.items() if v is not _ABSENT}, **dict.fromkeys(rare, None)}
    processor = StructlogProcessor(endpoint="http://127.0.0.1:9")
    c_path = _structlog._plain_event
    assert c_path is not None
    try:
        with mock.patch("time.time_ns", return_value=1_800_000_000_000_000_000):  # events without a stamp
            with_c = _exported(processor, None, event)
            _structlog._plain_event = None
            reference = _exported(processor, None, event)
    finally:
        _structlog._plain_event = c_path
    assert with_c == reference


@needs_c
@settings(max_examples=200, deadline=None)
@given(
    level=st.sampled_from(["info", "warning", "debug", "critical"]),
    logger=st.sampled_from([_ABSENT, None, "app.views", "a" * 50]),
    stamp=st.floats(min_value=0, max_value=1.8e10, exclude_max=True),
    body=st.one_of(st.text(max_size=40), st.just("x" * 5000)),
    extra=_EXTRA,
)
def test_plain_structlog_events_are_read_in_c_as_the_python_path_reads_them(
    level: str, logger: Any, stamp: float, body: str, extra: dict[str, Any]
) -> None:
    """Plain events only (each one the C path's): the same Pending as the Python path's."""
    from highlight_logging import StructlogProcessor
    from highlight_logging._frontends import structlog as _structlog

    event = {**extra, "event": body, "level": level, "timestamp": stamp}
    if logger is not _ABSENT:
        event["logger"] = logger
    processor = StructlogProcessor(endpoint="http://127.0.0.1:9")
    settings_ = processor._binding.get().settings
    c_path = _structlog._plain_event
    assert c_path is not None and c_path(settings_, dict(event), SITE) is not None
    try:
        with_c = _exported(processor, None, event)
        _structlog._plain_event = None
        reference = _exported(processor, None, event)
    finally:
        _structlog._plain_event = c_path
    assert with_c == reference and len(with_c) == 1


@needs_c
def test_a_plain_structlog_event_is_read_in_c() -> None:
    """The common event (add_log_level, TimeStamper) is the C path's; a stdlib logger's is not."""
    import logging

    from highlight_logging import StructlogProcessor
    from highlight_logging._frontends import structlog as _structlog

    processor = StructlogProcessor(endpoint="http://127.0.0.1:9")
    settings_ = processor._binding.get().settings
    event = {"event": "user action", "user": 1, "level": "info", "timestamp": 1_700_000_000.25}
    pending = _structlog._plain_event(settings_, event, SITE)
    assert type(pending) is Pending and pending.when == int(1_700_000_000.25 * 1_000_000_000)
    assert pending.extras == (("user", 1),) and pending.scope == _structlog.DEFAULT_SCOPE
    assert _structlog._plain_event(settings_, {**event, "exc_info": True}, SITE) is None
    calls: list[Any] = []
    original = _structlog._plain_event
    _structlog._plain_event = lambda *a: calls.append(a) or original(*a)
    try:
        _exported(processor, logging.getLogger("app"), event)  # stdlib-backed: the Python path
        assert not calls
        _exported(processor, None, event)
        assert len(calls) == 1
    finally:
        _structlog._plain_event = original


@needs_c
def test_structlog_event_checks_its_arguments() -> None:
    """Wrong arguments to the setup or the call are a TypeError, not a crash."""
    with pytest.raises(TypeError):
        _speedups.structlog_setup(frozenset(), {}, "s", (), frozenset())  # type: ignore[union-attr,arg-type]
    with pytest.raises(TypeError):
        _speedups.structlog_event(SETTINGS, {})  # type: ignore[union-attr,call-arg]


@needs_c
def test_an_event_with_keys_that_run_code_is_left_to_the_python_path() -> None:
    """A non-str key whose __eq__ changes the dict (met by any lookup of a key with its hash): the
    C reading declines before looking anything up, so both paths see the same dict."""
    from highlight_logging import StructlogProcessor
    from highlight_logging._frontends import structlog as _structlog

    class Meddler:
        armed = False

        def __hash__(self) -> int:
            return hash("timestamp")

        def __eq__(self, other: object) -> bool:
            if Meddler.armed:
                Meddler.armed = False
                event.clear()
            return False

    event: dict[Any, Any] = {
        Meddler(): "k",
        "event": "e",
        "level": "info",
        "timestamp": 1.7e9,
        "logger": "app",
    }
    Meddler.armed = True
    processor = StructlogProcessor(endpoint="http://127.0.0.1:9")
    assert _structlog._plain_event(processor._binding.get().settings, event, SITE) is None
    assert Meddler.armed and len(event) == 5  # nothing was looked up


@needs_c
def test_a_logger_whose_class_raises_goes_the_python_path_s_way() -> None:
    """An odd logger object whose __class__ raises: the event is still exported (by the Python
    path, which only checks the logger after submitting), as without the C reading."""
    from highlight_logging import StructlogProcessor
    from highlight_logging._frontends import structlog as _structlog

    class Odd:
        @property  # type: ignore[misc]
        def __class__(self) -> type:
            raise RuntimeError("no class")

    processor = StructlogProcessor(endpoint="http://127.0.0.1:9")
    event = {"event": "e", "level": "info", "timestamp": 1.7e9, "logger": "app"}
    with_c = _exported(processor, Odd(), event)
    c_path, _structlog._plain_event = _structlog._plain_event, None
    try:
        reference = _exported(processor, Odd(), event)
    finally:
        _structlog._plain_event = c_path
    assert len(with_c) == 1 and with_c == reference


# --- logrecord_event: HighlightHandler.emit's common case in C -------------------------------------


class _Shouty:
    def __str__(self) -> str:
        return "shouty %s"


class _BadStr:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


_MSGS = st.sampled_from(
    [
        "plain",
        "user %s did %s",
        "%d items",
        "%(who)s left",
        "100%",
        "%s",
        _Shouty(),
        _BadStr(),
        42,
        None,
        "x" * 300,
    ]
)
_ARGS = st.sampled_from([(), (1, "login"), ("x",), (3,), ({"who": "ann"},), (None,), ([1, 2],), (_BadStr(),)])
_RECORD_EXTRA = st.dictionaries(
    st.sampled_from(
        ["k", "user", "message", "asctime", "taskName", "otelSpanID", "color_message", "a.b", "z"]
    ),
    st.one_of(
        st.integers(),
        st.text(max_size=12),
        st.none(),
        st.lists(st.integers(), max_size=2),
        st.just(_BadStr()),
    ),
    max_size=4,
)


def _handler_exports(handler: Any, record: Any) -> list[Any]:
    """What ``handler`` submits for ``record`` (observed times left out, exceptions as strings)."""
    got: list[Any] = []
    handler._binding.get().submit = got.append
    handler.handle(record)
    out = []
    for p in got:
        info = p.exception
        fields = None if info is None else (info.type, info.message, info.stacktrace)
        out.append(p._replace(observed_ns=0, exception=fields))
    return out


def _both_paths(handler: Any, make: Any) -> tuple[list[Any], list[Any]]:
    """(C path's, Python path's) exports of a fresh record from ``make()`` each."""
    from highlight_logging._frontends import handler as _handler

    c_path = _handler._logrecord_event
    assert c_path is not None
    try:
        with mock.patch("time.time_ns", return_value=1_800_000_000_000_000_000):
            with_c = _handler_exports(handler, make())
            _handler._logrecord_event = None
            reference = _handler_exports(handler, make())
    finally:
        _handler._logrecord_event = c_path
    return with_c, reference


# What makeRecord refuses as an extra: "message", "asctime" and LogRecord's own attributes
# (taskName is one from 3.12 on).
_REFUSED = {"message", "asctime", *vars(logging.LogRecord("", 0, "", 0, "", (), None))}


def _own_message() -> str:
    return "mine"


def _fail() -> None:
    try:
        {}["k"]
    except KeyError as exc:
        raise ValueError("no such user") from exc


@needs_c
@settings(max_examples=400, deadline=None)
@given(
    msg=_MSGS,
    args=_ARGS,
    extra=_RECORD_EXTRA,
    stack=st.sampled_from([None, "Stack (most recent call last):\n  x"]),
    with_exc=st.booleans(),
    level=st.sampled_from([10, 20, 25, 40]),
    mutate=st.sampled_from(["none", "add", "delete", "readd", "created", "getMessage", "nonstr"]),
)
def test_log_records_are_read_in_c_as_the_python_path_reads_them(
    msg: Any,
    args: tuple[Any, ...],
    extra: dict[str, Any],
    stack: Any,
    with_exc: bool,
    level: int,
    mutate: str,
) -> None:
    """Generated LogRecords (odd messages, failing formats, extras named like LogRecord's own
    attributes, filters that add, delete or re-set attributes): the C reading submits the very
    Pending the Python path submits, or declines and the Python path does it."""
    import logging

    from highlight_logging import HighlightHandler

    try:
        _fail()
    except ValueError as e:
        error = e
    handler = HighlightHandler(endpoint="http://127.0.0.1:9")

    def make() -> logging.LogRecord:
        clean = {k: v for k, v in extra.items() if k not in _REFUSED}
        record = logging.getLogger("app.views").makeRecord(
            "app.views",
            level,
            "/app/views.py",
            7,
            msg,
            args,
            (type(error), error, error.__traceback__) if with_exc else None,
            "checkout",
            clean or None,
            sinfo=stack,
        )
        record.created = 1_700_000_000.25  # the same record twice, as far as the two paths read it
        if mutate == "add":
            record.tenant = "acme"
        elif mutate == "delete":
            del record.lineno
        elif mutate == "readd":
            funcname = record.funcName
            del record.funcName
            record.funcName = funcname
        elif mutate == "created":
            record.created = 1_700_000_000  # an int
        elif mutate == "getMessage":
            record.getMessage = _own_message  # type: ignore[method-assign]  # one object: its repr is an extra
        elif mutate == "nonstr":
            vars(record)[7] = "seven"
        return record

    with_c, reference = _both_paths(handler, make)
    assert with_c == reference
    from highlight_logging._frontends import handler as _handler

    try:
        answered = _handler._logrecord_event(handler._binding.get().settings, make())  # type: ignore[misc]
    except AttributeError:  # no lineno: the reference's own error, which emit hands to handleError
        assert mutate == "delete"
    else:
        assert (answered is None) == (mutate in ("getMessage", "nonstr"))  # declined only there


def _runs(make: Any, use_c: bool) -> tuple[list[Any], list[Any]]:
    """(what a handler submits for ``make()``, what it met: handleError's exceptions or one that
    propagated) on one path."""
    import logging
    import sys

    from highlight_logging import HighlightHandler
    from highlight_logging._frontends import handler as _handler

    handler = HighlightHandler(endpoint="http://127.0.0.1:9")
    errors: list[Any] = []
    handler.handleError = lambda record: errors.append(repr(sys.exc_info()[1]))  # type: ignore[method-assign]
    c_path = _handler._logrecord_event
    if not use_c:
        _handler._logrecord_event = None
    try:
        try:
            got = _handler_exports(handler, make())
        except BaseException as exc:
            got, errors = [], [*errors, repr(exc)]
    finally:
        _handler._logrecord_event = c_path
    assert isinstance(logging.getLogger(), logging.Logger)
    return got, errors


def _same_both_ways(factory: Any) -> list[Any]:
    """Runs ``factory(calls)()`` on each path; both give the same exports, the same errors and the
    same calls into the user's code.  Returns the C path's calls."""
    with mock.patch("time.time_ns", return_value=1_800_000_000_000_000_000):
        c_calls: list[Any] = []
        with_c = _runs(factory(c_calls), True)
        py_calls: list[Any] = []
        reference = _runs(factory(py_calls), False)
    assert with_c == reference and c_calls == py_calls
    return c_calls


def _record(msg: Any, args: Any = ()) -> Any:
    import logging

    record = logging.LogRecord("app", 20, "/app/a.py", 3, msg, args, None)
    record.created = 1_700_000_000.25
    return record


@needs_c
def test_a_record_its_own_formatting_changes_is_read_as_getmessage_reads_it() -> None:
    """The user's __str__ or __bool__ changes the record while its message is formatted: args read
    after str(msg), and twice; a record whose dict is replaced, or gains a key that runs code, or
    loses args: the same export and the same calls into the user's code both ways (second
    reviewer's cases)."""

    def resets_args(calls: list[Any]) -> Any:
        def make() -> Any:
            record = _record(None, ("old",))

            class Msg:
                def __str__(self) -> str:
                    calls.append("str")
                    record.args = ("new",)
                    return "v=%s"

            record.msg = Msg()
            return record

        return make

    def deletes_args(calls: list[Any]) -> Any:
        def make() -> Any:
            record = _record(None, ("old",))

            class Msg:
                def __str__(self) -> str:
                    calls.append("str")
                    del record.args
                    return "v=%s"

            record.msg = Msg()
            return record

        return make

    def replaces_dict(calls: list[Any]) -> Any:
        def make() -> Any:
            record = _record(None)

            class Msg:
                def __str__(self) -> str:
                    calls.append("str")
                    record.__dict__ = dict(record.__dict__, levelname="SWAPPED", tenant="acme")
                    return "hi"

            record.msg = Msg()
            return record

        return make

    def adds_a_key_that_runs_code(calls: list[Any]) -> Any:
        def make() -> Any:
            record = _record(None)

            class Key:
                def __hash__(self) -> int:
                    return hash("exc_info")

                def __eq__(self, other: object) -> bool:
                    calls.append(("eq", other))
                    return other == "exc_info"

            class Msg:
                def __str__(self) -> str:
                    fields = vars(record)
                    fields[Key()] = fields.pop("exc_info")
                    return "m"

            record.msg = Msg()
            return record

        return make

    def swaps_args_in_bool(calls: list[Any]) -> Any:
        def make() -> Any:
            record = _record("a=%(a)s")

            class Args(dict[str, int]):
                def __bool__(self) -> bool:
                    calls.append("bool")
                    record.args = {"a": 2}
                    return True

            record.args = Args(a=1)
            return record

        return make

    def failed_format_seen_from_repr(calls: list[Any]) -> Any:
        import sys

        class Arg:
            def __repr__(self) -> str:
                calls.append(("repr while handling", repr(sys.exc_info()[0])))
                return "Arg"

        return lambda: _record("%d %d", (Arg(),))

    for factory in (
        resets_args,
        deletes_args,
        replaces_dict,
        adds_a_key_that_runs_code,
        swaps_args_in_bool,
        failed_format_seen_from_repr,
    ):
        _same_both_ways(factory)
    assert _same_both_ways(failed_format_seen_from_repr) == [("repr while handling", "<class 'TypeError'>")]


@needs_c
def test_values_stay_held_while_a_collection_changes_the_record() -> None:
    """An allocation in the C reading may run a collection whose callback replaces the record's
    values (on 3.10 and 3.11 in the allocating call): the values read stay alive (this crashed the
    process before) and the record is exported as read."""
    import gc
    import logging

    from highlight_logging import HighlightHandler
    from highlight_logging._frontends import handler as _handler

    state: dict[str, Any] = {"armed": False, "fired": 0}

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and state["armed"]:
            state["armed"] = False
            state["fired"] += 1
            fields = vars(state["record"])
            fields["levelname"] = "REPLACED"  # frees the only reference to the old, unique values
            fields["pathname"] = "REPLACED_PATH"

    class Msg:
        def __str__(self) -> str:
            # Past the tuple free list: the next tuple allocates.
            state["keep"] = [(i, i) for i in range(5000)]
            state["armed"] = True
            return "m"

    class Value(str):  # says when it is freed: never while the C reading still uses it
        def __del__(self) -> None:
            state["freed"] = state.get("freed", 0) + 1

    record = logging.LogRecord("app", 20, "/a.py", 3, Msg(), (), None)
    record.levelname = Value("LEVEL")
    record.pathname = Value("/p/")
    for i in range(20):
        setattr(record, f"x{i}", i)
    state["record"] = record
    settings_ = HighlightHandler(endpoint="http://127.0.0.1:9")._binding.get().settings
    gc.callbacks.append(callback)
    threshold = gc.get_threshold()
    gc.set_threshold(1)
    try:
        pending = _handler._logrecord_event(settings_, record)  # type: ignore[misc]
        gc.collect()  # 3.12+ collect at the next check of the eval loop, not inside an allocation
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(callback)
    assert state["fired"] == 1 and not state.get("freed")  # replaced in the record, held by the reading
    assert pending is not None and pending.level_name == "LEVEL" and pending.site[1] == "/p/"
    del pending
    assert state.get("freed") == 2


@needs_c
def test_a_patched_getmessage_code_is_the_python_path_s() -> None:
    """getMessage's code swapped in place (the class itself unchanged): the patched text, as the
    Python path gives it; the C path again once it is put back."""
    import logging

    from highlight_logging import HighlightHandler
    from highlight_logging._frontends import handler as _handler

    def patched(self: Any) -> str:
        return "PATCHED"

    settings_ = HighlightHandler(endpoint="http://127.0.0.1:9")._binding.get().settings
    original = logging.LogRecord.getMessage.__code__
    logging.LogRecord.getMessage.__code__ = patched.__code__
    try:
        assert _handler._logrecord_event(settings_, _record("m")) is None  # type: ignore[misc]
        _same_both_ways(lambda calls: lambda: _record("m"))
    finally:
        logging.LogRecord.getMessage.__code__ = original
    assert _handler._logrecord_event(settings_, _record("m")) is not None  # type: ignore[misc]


@needs_c
def test_a_plain_log_record_is_read_in_c() -> None:
    """The common record is the C path's; a subclass, a patched class and a record with a formatter
    are the Python path's."""
    import logging

    from highlight_logging import HighlightHandler
    from highlight_logging._frontends import handler as _handler

    handler = HighlightHandler(endpoint="http://127.0.0.1:9")
    settings_ = handler._binding.get().settings
    logger = logging.getLogger("app")
    record = logger.makeRecord("app", 20, "/app/a.py", 3, "user %s did %s", (1, "login"), None, "f", {"k": 1})
    pending = _handler._logrecord_event(settings_, record)  # type: ignore[misc]
    assert type(pending) is Pending and pending.body == "user 1 did login" and pending.extras == (("k", 1),)
    assert pending.when == int(record.created * 1e9) and pending.site == (
        SITE_KEYS,
        "/app/a.py",
        "f",
        3,
        record.thread,
        record.threadName,
    )

    class Mine(logging.LogRecord):
        pass

    assert _handler._logrecord_event(settings_, Mine("app", 20, "/a.py", 3, "m", (), None)) is None  # type: ignore[misc]
    original = logging.LogRecord.getMessage
    logging.LogRecord.getMessage = lambda self: "patched"  # type: ignore[method-assign]
    try:
        assert _handler._logrecord_event(settings_, record) is None  # type: ignore[misc]
        assert _handler._logrecord_event(settings_, record) is None  # type: ignore[misc]  # remembered
        assert _handler_exports(handler, record)[0].body == "patched"
    finally:
        logging.LogRecord.getMessage = original  # type: ignore[method-assign]
    # The class put back as it was (a new version tag): checked once more, and read in C again.
    assert _handler._logrecord_event(settings_, record) is not None  # type: ignore[misc]
    calls: list[Any] = []
    c_path = _handler._logrecord_event
    _handler._logrecord_event = lambda *a: calls.append(a) or c_path(*a)  # type: ignore[misc,assignment]
    try:
        _handler_exports(handler, record)
        assert len(calls) == 1
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        assert _handler_exports(handler, record)[0].body == "INFO user 1 did login"
        assert len(calls) == 1
    finally:
        _handler._logrecord_event = c_path


@needs_c
def test_a_log_record_with_keys_that_run_code_is_left_to_the_python_path() -> None:
    """A non-str key whose __eq__ changes the record (met by any lookup of a key with its hash):
    the C reading declines before looking anything up."""
    import logging

    from highlight_logging import HighlightHandler
    from highlight_logging._frontends import handler as _handler

    record = logging.LogRecord("app", 20, "/a.py", 3, "m", (), None)
    fields = vars(record)

    class Meddler:
        armed = False

        def __hash__(self) -> int:
            return hash("msg")

        def __eq__(self, other: object) -> bool:
            if Meddler.armed:
                Meddler.armed = False
                fields.clear()
            return False

    fields[Meddler()] = "k"
    Meddler.armed = True
    handler = HighlightHandler(endpoint="http://127.0.0.1:9")
    assert _handler._logrecord_event(handler._binding.get().settings, record) is None  # type: ignore[misc]
    assert Meddler.armed and "msg" in fields


@needs_c
def test_logrecord_event_checks_its_arguments() -> None:
    """Wrong arguments to the setup or the call are a TypeError, not a crash."""
    with pytest.raises(TypeError):
        _speedups.logrecord_setup(object, set(), 1, "x", (), str, str, str)  # type: ignore[union-attr,arg-type]
    with pytest.raises(TypeError):
        _speedups.logrecord_event(SETTINGS)  # type: ignore[union-attr,call-arg]
