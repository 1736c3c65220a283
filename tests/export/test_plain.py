"""The fast path for plain records (``_export.fastpath``: ``_speedups.plain_logs``, in C) gives, byte for byte,
what the general path (``to_record`` then ``RecordEncoder.encode``) gives, and declines everything else.

The general path is the rule's one copy in Python, and the reference here: without the C speedups
there is no fast path, and every record takes it."""

from __future__ import annotations

import shutil
import sysconfig
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from highlight_logging._core import convert as _convert
from highlight_logging._core import highlight as _highlight
from highlight_logging._core import native as _native
from highlight_logging._core.record import (
    INT64_MAX,
    INT64_MIN,
    SITE_KEYS,
    THREAD_KEYS,
    ExceptionInfo,
    Pending,
)
from highlight_logging._core.settings import Settings
from highlight_logging._export import encode as _encode
from highlight_logging._export import fastpath as _plain
from highlight_logging._export.prepare import RecordEncoder

try:
    from highlight_logging import _speedups
except ImportError:
    _speedups = None

SETTINGS = Settings()
ROOM = SETTINGS.attribute_count_limit - _convert.RESERVED_SLOTS
SITE = (SITE_KEYS, "/app/views.py", "checkout", 42, 1234, "MainThread")
NOW = time.time_ns()
AWARE = datetime.now(timezone.utc)
NAIVE = datetime.now()

# The fast path where the C speedups are built (none in a pure-Python run: those tests are skipped).
IMPLEMENTATIONS = [] if _speedups is None else [pytest.param(_speedups.plain_logs, id="c")]


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    saved_sites, saved_levels = dict(_encode.site_cache), dict(_plain.levels)
    saved_highlight = dict(_plain.highlight_levels)
    yield
    _encode.site_cache.clear()
    _encode.site_cache.update(saved_sites)
    _plain.levels.clear()
    _plain.levels.update(saved_levels)
    _plain.highlight_levels.clear()
    _plain.highlight_levels.update(saved_highlight)


def pending(
    body: Any = "user 7 did login",
    extras: list[tuple[Any, Any]] | None = None,
    when: Any = None,
    site: Any = SITE,
    level: tuple[int, str] = (20, "INFO"),
    **fields: Any,
) -> Pending:
    """A Pending as a front end leaves it; ``fields`` replaces any of its fields afterwards."""
    p = _convert.capture_record(
        SETTINGS,
        NOW - 5000 if when is None else when,
        level[0],
        level[1],
        "app",
        body,
        {},
        [("k", 7)] if extras is None else extras,
        site=site,
    )
    return p._replace(**{"observed_ns": NOW, **fields})  # one clock reading for every path


def general(make: Callable[[], Pending]) -> bytes:
    """What the general path makes of the record."""
    encoder = RecordEncoder(SETTINGS)
    record = _convert.to_record(make(), SETTINGS)
    return encoder.encode(record, True)[0]


def fast(impl: Any, make: Callable[[], Pending], learn: bool = True) -> bytes | None:
    p = make()
    if learn:
        _plain.learn(p)
        if p.site is not None:
            _encode.site_attributes(p.site)
    [out] = impl([p], _encode.site_cache, _plain.levels, ROOM, _convert.datetime_ns)
    assert out is None or type(out) is bytes
    return out  # type: ignore[no-any-return]


PLAIN = {
    "int extra": lambda: pending(),
    "no extras": lambda: pending(extras=[]),
    "scalars": lambda: pending(extras=[("s", "v"), ("i", -3), ("f", 2.5), ("b", True), ("n", False)]),
    "int64 bounds": lambda: pending(extras=[("lo", INT64_MIN), ("hi", INT64_MAX), ("mid", 300)]),
    "non-ASCII": lambda: pending(body="Zoë paid 5 €", extras=[("città", "Zürich ✓")]),
    "long body": lambda: pending(body="x" * 200),
    "very long values": lambda: pending(body="y" * 20_000, extras=[("v", "z" * 4000)]),
    "long key": lambda: pending(extras=[("k" * 200, 1)]),
    "trace context": lambda: pending(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, flags=1),
    "wide flags": lambda: pending(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, flags=0x1FF),
    "old record": lambda: pending(when=NOW - 5 * 10**9),
    "future record": lambda: pending(when=NOW + 10**6),
    "not logged now": lambda: pending(logged_now=False),
    "aware datetime": lambda: pending(when=AWARE, observed_ns=_convert.datetime_ns(AWARE) + 1000),
    "naive datetime": lambda: pending(when=NAIVE),
    "thread site": lambda: pending(site=(THREAD_KEYS, 99, "worker-1")),
    "custom level": lambda: pending(level=(25, "SUCCESS")),
    "at the count limit": lambda: pending(extras=[(f"k{i}", i) for i in range(ROOM - len(SITE_KEYS))]),
}

NOT_PLAIN = {
    "exception": lambda: pending(exception=ExceptionInfo("ValueError", "bad", "Traceback...")),
    "request context": lambda: pending(request=("session", "request")),
    "front-end attributes": lambda: pending(attributes={"code.stacktrace": "..."}),
    "dropped extras": lambda: pending(dropped=3),
    "no site": lambda: pending(site=None),
    "container value": lambda: pending(extras=[("d", {"a": 1})]),
    "None value": lambda: pending(extras=[("n", None)]),
    "bytes value": lambda: pending(extras=[("b", b"\x00")]),
    "beyond int64": lambda: pending(extras=[("big", 2**64)]),
    "just above int64": lambda: pending(extras=[("big", INT64_MAX + 1)]),  # the general path sends text
    "just below int64": lambda: pending(extras=[("small", INT64_MIN - 1)]),
    "site key in extras": lambda: pending(extras=[("thread.name", "mine")]),
    "repeated key": lambda: pending(extras=[("k", 1), ("k", 2)]),
    "over the count limit": lambda: pending(extras=[(f"k{i}", i) for i in range(ROOM)]),
    "lone surrogate in body": lambda: pending(body="bad \ud800"),
    "lone surrogate in value": lambda: pending(extras=[("k", "bad \udfff")]),
    "lone surrogate in key": lambda: pending(extras=[("bad \ud800", 1)]),
    "time before the epoch": lambda: pending(when=-1),
    "unreadable time": lambda: pending(when="yesterday"),
    "unhashable site": lambda: pending(site=(SITE_KEYS, ["not", "hashable"], "f", 1, 2, "t")),
}


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", sorted(PLAIN))
def test_plain_records_match_the_general_path(impl: Any, case: str) -> None:
    """A plain record's bytes are exactly the general path's."""
    out = fast(impl, PLAIN[case])
    assert out is not None
    assert out == general(PLAIN[case])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", sorted(NOT_PLAIN))
def test_other_records_are_left_to_the_general_path(impl: Any, case: str) -> None:
    """Anything unusual about a record gives None, and the general path handles it."""
    assert fast(impl, NOT_PLAIN[case]) is None


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_unknown_level_or_site_is_left_to_the_general_path(impl: Any) -> None:
    """A level or site not seen before is declined until the general path has encoded it once."""
    make = lambda: pending(level=(31, "NOTICE"), site=(THREAD_KEYS, 5, "fresh"))  # noqa: E731
    assert fast(impl, make, learn=False) is None
    assert fast(impl, make) == general(make)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_a_level_name_reused_with_another_number_is_declined(impl: Any) -> None:
    """``levels`` is keyed by name: a name logged at another number never borrows its encoding."""
    fast(impl, lambda: pending(level=(20, "INFO")))
    make = lambda: pending(level=(25, "INFO"))  # noqa: E731
    [out] = impl([make()], _encode.site_cache, _plain.levels, ROOM, _convert.datetime_ns)
    assert out is None


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_a_batch_mixes_both_kinds_in_order(impl: Any) -> None:
    """Each record of a chunk gets its own answer, in order."""
    makers = [PLAIN["int extra"], NOT_PLAIN["exception"], PLAIN["scalars"], NOT_PLAIN["repeated key"]]
    for make in makers:
        fast(impl, make)  # learn levels and sites
    out = impl([m() for m in makers], _encode.site_cache, _plain.levels, ROOM, _convert.datetime_ns)
    assert [o is None for o in out] == [False, True, False, True]
    assert out[0] == general(makers[0])
    assert out[2] == general(makers[2])


def test_the_c_path_uses_the_same_constants() -> None:
    """The C file's copy of the observed-time window is _core.convert's."""
    if _speedups is None:
        pytest.skip("no C speedups in this install")
    assert _speedups.SAME_MOMENT == _convert._SAME_MOMENT


def test_the_c_path_is_built_where_a_compiler_is() -> None:
    """``pip install`` built the C path (it is optional, so a failed build would pass unseen)."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip("no C compiler here")
    if _plain.pure_python:
        pytest.skip("the pure-Python path was asked for")
    assert _speedups is not None
    assert _plain.plain_logs is _speedups.plain_logs


def test_without_c_there_is_no_fast_path() -> None:
    """No Python copy of the rule: without the C speedups every record takes the general path."""
    if _native.speedups is not None:
        pytest.skip("the C speedups are in use")
    assert _plain.plain_logs is None
    assert not hasattr(_plain, "plain_logs_py")


scalars = st.one_of(
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=300),
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    body=st.text(max_size=300),
    extras=st.dictionaries(st.text(min_size=1, max_size=20), scalars, max_size=8),
    offset=st.integers(min_value=-(10**10), max_value=10**10),
    traced=st.booleans(),
)
def test_any_plain_record_matches_the_general_path(
    body: str, extras: dict[str, Any], offset: int, traced: bool
) -> None:
    """For generated records, the fast path's bytes (where it gives any) are the general path's."""
    ids: dict[str, Any] = {"trace_id": b"\x0a" * 16, "span_id": b"\x0b" * 8, "flags": 1} if traced else {}
    make = lambda: pending(body=body, extras=list(extras.items()), when=NOW + offset, **ids)  # noqa: E731
    expected = general(make)
    for param in IMPLEMENTATIONS:
        out = fast(param.values[0], make)
        surrogates = any(
            "\ud800" <= ch <= "\udfff" for s in (body, *extras, *map(str, extras.values())) for ch in s
        )
        clash = not _convert.SITE_KEY_SET.isdisjoint(extras)
        if not (surrogates or clash):
            assert out is not None
        if out is not None:
            assert out == expected


def test_a_time_at_the_edge_of_the_window() -> None:
    """The observed-time rule's bounds are the general path's."""
    for offset in (-0x100, -0xFF, 0, _convert._SAME_MOMENT - 1, _convert._SAME_MOMENT):
        make = lambda offset=offset: pending(when=NOW + 0x1000 - offset, observed_ns=NOW + 0x1000)  # noqa: E731
        expected = general(make)
        for param in IMPLEMENTATIONS:
            assert fast(param.values[0], make) == expected, offset


def test_loguru_time_is_converted_like_the_general_path() -> None:
    """A datetime time (loguru's) goes through the same conversion, and its odd values decline."""
    local = datetime.now().astimezone(timezone(timedelta(hours=5, minutes=30)))
    make = lambda: pending(when=local, observed_ns=_convert.datetime_ns(local) + 1000)  # noqa: E731
    for param in IMPLEMENTATIONS:
        assert fast(param.values[0], make) == general(make)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    when=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2500, 12, 31)),
    offset_minutes=st.integers(min_value=-24 * 60 + 1, max_value=24 * 60 - 1),
    seconds=st.integers(min_value=0, max_value=59),
)
def test_any_aware_time_converts_like_the_general_path(
    when: datetime, offset_minutes: int, seconds: int
) -> None:
    """An aware datetime in any zone (loguru's time) gives the general path's nanoseconds, exactly."""
    zone = timezone(timedelta(minutes=offset_minutes, seconds=seconds))
    aware = when.replace(tzinfo=zone)
    make = lambda: pending(when=aware, logged_now=False)  # noqa: E731
    expected = general(make)
    for param in IMPLEMENTATIONS:
        assert fast(param.values[0], make) == expected


def test_malformed_cache_entries_are_declined_and_leave_them_intact() -> None:
    """A cache value of the wrong shape makes the C path decline the record, and the objects the
    caches hold keep their reference counts (no borrowed reference is released)."""
    if _speedups is None:
        pytest.skip("no C speedups in this install")
    import sys

    p = pending()
    wrong_site = "not bytes " + str(time.time_ns())
    wrong_level = (20, "not bytes")
    for sites, levels, held in (
        ({SITE: wrong_site}, {"INFO": (20, b"\x10\x09")}, wrong_site),
        ({SITE: b""}, {"INFO": wrong_level}, wrong_level),
    ):
        before = sys.getrefcount(held)
        for _ in range(5):
            assert _speedups.plain_logs([p], sites, levels, ROOM, _convert.datetime_ns) == [None]
        assert sys.getrefcount(held) == before


# --- the highlight shape: the same fast path, with highlight.io's severity texts and its declines -----

HL_SETTINGS = Settings(backend="highlight")


def general_hl(make: Callable[[], Pending]) -> bytes:
    """What the general path makes of the record in the highlight shape."""
    encoder = RecordEncoder(HL_SETTINGS)
    return encoder.encode(_convert.to_record(make(), HL_SETTINGS), True)[0]


def fast_hl(impl: Any, make: Callable[[], Pending]) -> bytes | None:
    p = make()
    _plain.learn(p)
    if p.site is not None:
        _encode.site_attributes(p.site)
    [out] = impl(
        [p], _encode.site_cache, _plain.highlight_levels, ROOM, _convert.datetime_ns, _plain.HIGHLIGHT_SHAPE
    )
    return out  # type: ignore[no-any-return]


HL_NOT_PLAIN = {
    "bool value": lambda: pending(extras=[("ok", True)]),
    "empty string": lambda: pending(extras=[("note", "")]),
    "a key highlight.io takes out": lambda: pending(extras=[("severity", "debug")]),
    "another": lambda: pending(extras=[("environment", "staging")]),
    "a highlight.* key": lambda: pending(extras=[("highlight.project_id", "1")]),
    "a service.* key": lambda: pending(extras=[("service.name", 3)]),
    "a body it would split": lambda: pending(body="mail to Bob <bob@example.com>"),
}


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", sorted(PLAIN))
def test_highlight_shape_plain_records_match_the_general_path(impl: Any, case: str) -> None:
    """In the highlight shape too, a plain record's bytes are exactly the general path's; only the
    records with a bool extra are declined there."""
    out = fast_hl(impl, PLAIN[case])
    if case == "scalars":
        assert out is None
        return
    assert out is not None
    assert out == general_hl(PLAIN[case])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", sorted(HL_NOT_PLAIN))
def test_highlight_shape_declines_what_it_would_change(impl: Any, case: str) -> None:
    """Records the highlight shape changes are left to the general path there, and plain in the otel shape."""
    assert fast_hl(impl, HL_NOT_PLAIN[case]) is None
    assert fast(impl, HL_NOT_PLAIN[case]) is not None


def test_highlight_shape_severity_texts() -> None:
    """Each level's text is the nearest highlight.io knows: CRITICAL is FATAL, SUCCESS INFO, TRACE TRACE."""
    for (levelno, name), text in {
        (5, "TRACE"): b"TRACE",
        (10, "DEBUG"): b"DEBUG",
        (25, "SUCCESS"): b"INFO",
        (30, "WARNING"): b"WARN",
        (40, "ERROR"): b"ERROR",
        (50, "CRITICAL"): b"FATAL",
    }.items():
        make = lambda: pending(level=(levelno, name))  # noqa: E731,B023
        assert _encode.severity(_convert.severity_number(levelno), text.decode()) in general_hl(make)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    body=st.one_of(
        st.text(max_size=300), st.sampled_from(["mail to Bob <b@x>", "<13>1 x <y", " <", "a<b", "a <"])
    ),
    extras=st.dictionaries(
        st.one_of(
            st.text(min_size=1, max_size=20),
            st.sampled_from(["level", "message", "highlight.x", "service.y"]),
        ),
        st.one_of(scalars, st.just("")),
        max_size=8,
    ),
    traced=st.booleans(),
)
def test_any_plain_record_matches_the_general_path_in_the_highlight_shape(
    body: str, extras: dict[str, Any], traced: bool
) -> None:
    """For generated records in the highlight shape, the fast path gives the general path's bytes, or
    declines; it declines only what the highlight shape changes (or a lone surrogate, or a site name)."""
    ids: dict[str, Any] = {"trace_id": b"\x0a" * 16, "span_id": b"\x0b" * 8, "flags": 1} if traced else {}
    make = lambda: pending(body=body, extras=list(extras.items()), **ids)  # noqa: E731
    expected = general_hl(make)
    shaped = _highlight.body(body) != body or any(_highlight.needs_shaping(k, v) for k, v in extras.items())
    surrogates = any(
        "\ud800" <= ch <= "\udfff" for s in (body, *extras, *map(str, extras.values())) for ch in s
    )
    clash = not _convert.SITE_KEY_SET.isdisjoint(extras)
    for param in IMPLEMENTATIONS:
        out = fast_hl(param.values[0], make)
        if not (shaped or surrogates or clash):
            assert out is not None
        if out is not None:
            assert out == expected
