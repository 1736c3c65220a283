"""The C extension's holes found by the audit of issue 18, each closed, and a stale build set aside.

Every test here compares the C code with its Python reference on input the C code once misread:
the C path may decline (None: the general path) but never answer otherwise than the reference.  For
``plain_logs`` the reference is the general path itself (``to_record``, then ``RecordEncoder.encode``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import pytest
from paths import ROOT

from highlight_logging._core import convert as _convert
from highlight_logging._core import diag as _diag
from highlight_logging._core import native as _native
from highlight_logging._core import scrub as _scrub
from highlight_logging._core.record import SITE_KEYS, Pending
from highlight_logging._core.settings import Settings
from highlight_logging._export import encode as _encode
from highlight_logging._export import fastpath as _plain
from highlight_logging._export.prepare import RecordEncoder

try:
    from highlight_logging import _speedups
except ImportError:
    _speedups = None

needs_c = pytest.mark.skipif(_native.speedups is None, reason="no C speedups in this install, or not in use")

SETTINGS = Settings()
ROOM = SETTINGS.attribute_count_limit - _convert.RESERVED_SLOTS
SITE = (SITE_KEYS, "/app/views.py", "checkout", 42, 1234, "MainThread")
ROOT = ROOT
DATETIME_NS = _convert.datetime_ns  # the general path's, which general() replaces while it runs


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    saved_sites, saved_levels = dict(_encode.site_cache), dict(_plain.levels)
    yield
    _encode.site_cache.clear()
    _encode.site_cache.update(saved_sites)
    _plain.levels.clear()
    _plain.levels.update(saved_levels)


def pending(when: Any = None, extras: Any = (("k", 7),), site: Any = SITE) -> Pending:
    p = _convert.capture_record_py(
        SETTINGS, time.time_ns() if when is None else when, 20, "INFO", "app", "b", {}, []
    )
    p = p._replace(extras=extras, site=site)
    _plain.learn(p)
    if site is SITE:
        _encode.site_attributes(site)
    return p


def general(chunk: list[Pending], to_ns: Callable[[Any], int], room: int = ROOM) -> list[bytes] | type:
    """The general path's LogRecords (``to_ns`` standing in for ``datetime_ns``), or the type of
    the exception it raised."""
    settings = Settings(attribute_count_limit=room + _convert.RESERVED_SLOTS)
    encoder = RecordEncoder(settings)
    saved = _convert.datetime_ns
    _convert.datetime_ns = to_ns  # type: ignore[assignment]
    try:
        return [encoder.encode(_convert.to_record(p, settings), True)[0] for p in chunk]
    except BaseException as exc:  # KeyboardInterrupt is what is compared
        return type(exc)
    finally:
        _convert.datetime_ns = saved  # type: ignore[assignment]


def both(
    chunk: list[Pending], to_ns: Callable[[Any], int] = _convert.datetime_ns, room: int = ROOM
) -> list[Any]:
    """What the general path and the C path answer (LogRecords, None where C declines), or the
    exception type each raised; C's bytes must be the general path's wherever it gives any."""
    assert _speedups is not None
    # to_record adds the extras to a record's attributes dict: the general path gets copies
    copies = [p._replace(attributes=dict(p.attributes), extras=tuple(p.extras)) for p in chunk]
    reference = general(copies, to_ns, room)
    try:
        c: Any = _speedups.plain_logs(list(chunk), _encode.site_cache, _plain.levels, room, to_ns)
    except BaseException as exc:
        return [reference, type(exc)]
    if isinstance(reference, list):
        for ref, out in zip(reference, c, strict=True):
            assert out is None or out == ref
    return [reference, c]


def run_python(
    code: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


# --- 1. extras read again after Python code ran ----------------------------------------------------


@needs_c
def test_a_list_of_extras_changed_by_python_code_is_not_read_as_a_tuple() -> None:
    """plain_log validated a list of extras, ran ``to_ns`` (Python), then read the list again, its
    items as tuples: ints put there meanwhile were read as pairs (a segfault).  Lists are declined,
    by both twins."""
    code = """
        import time
        from datetime import datetime, timezone
        from highlight_logging import _speedups
        from highlight_logging._export import encode as _encode, fastpath as _plain
        from highlight_logging._core import convert as _convert
        from highlight_logging._core.record import SITE_KEYS
        from highlight_logging._core.settings import Settings
        site = (SITE_KEYS, "/app/views.py", "checkout", 42, 1234, "MainThread")
        _encode.site_attributes(site)
        when = datetime.now().astimezone(timezone.utc).replace(tzinfo=None)  # naive: to_ns() runs
        extras = [("k" + str(i), "v" * 50 + str(i)) for i in range(20)]
        p = _convert.capture_record_py(Settings(), when, 20, "INFO", "app", "b", {}, [], site=site)
        p = p._replace(extras=extras)
        _plain.learn(p)
        def to_ns(value):
            extras[:] = [10**60 + i for i in range(20)]  # ints where pairs were
            return time.time_ns()
        print(_speedups.plain_logs([p], _encode.site_cache, _plain.levels, 100, to_ns))
        """
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[None]"


@needs_c
def test_both_paths_decline_extras_that_are_not_a_tuple() -> None:
    """Front ends always leave a tuple; anything else is the general path's."""
    for extras in ([("k", 1)], (("k", 1),)):
        _, c = both([pending(extras=extras)])
        assert (c[0] is None) is (type(extras) is list)


# --- 2. a datetime subclass read as its fields ----------------------------------------------------


class Shifted(datetime):
    """A datetime whose subtraction is its own (the Python path calls it)."""

    def __sub__(self, other: Any) -> Any:
        return datetime.__sub__(self, other) + timedelta(hours=1)


class RShifted(datetime):
    def __rsub__(self, other: Any) -> Any:  # makes the type's subtraction slot its own
        return NotImplemented


class NaiveLooking(datetime):
    """A tzinfo of its own: the Python path reads None, takes the local-time branch."""

    @property  # type: ignore[override]
    def tzinfo(self) -> None:
        return None

    def astimezone(self, tz: Any = None) -> datetime:
        return datetime.astimezone(self, tz) + timedelta(minutes=5)


class Plus2(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=2)


@needs_c
@pytest.mark.parametrize("kind", [Shifted, RShifted, NaiveLooking])
def test_a_datetime_subclass_overriding_its_arithmetic_converts_as_the_python_path(
    kind: type[datetime],
) -> None:
    when = kind(2024, 5, 17, 12, 30, 15, 123456, tzinfo=timezone.utc)
    ref, c = both([pending(when=when)])
    assert ref == c and c[0] is not None


@needs_c
def test_loguru_time_keeps_the_c_read_and_a_python_tzinfo_gets_the_python_path() -> None:
    """loguru's own datetime subclass (only __format__ added) with a fixed-offset timezone is read
    in C, to_ns() not called; a tzinfo written in Python goes through to_ns()."""
    from loguru._datetime import aware_now

    calls: list[Any] = []

    def spy(when: Any) -> int:
        calls.append(when)
        return DATETIME_NS(when)

    loguru_time = aware_now()
    assert type(loguru_time) is not datetime and type(loguru_time.tzinfo) is timezone
    ref, c = both([pending(when=loguru_time)], spy)
    assert ref == c and c[0] is not None
    assert len(calls) == 1  # the general path's call only
    calls.clear()
    ref, c = both([pending(when=datetime(2024, 5, 17, 12, 30, tzinfo=Plus2()))], spy)
    assert ref == c and len(calls) == 2


# --- 3. a patched clock -----------------------------------------------------------------------------

_CLOCK_BEFORE_IMPORT = """
    import sys, time
    {patch}
    from highlight_logging import _speedups
    from highlight_logging._core import convert as _convert
    from highlight_logging._core.settings import Settings
    s = Settings()
    ref = _convert.capture_record_py(s, 1, 20, "INFO", "s", "b", {{}}, []).observed_ns
    c = _speedups.capture_record(s, 1, 20, "INFO", "s", "b", {{}}, []).observed_ns
    print(ref, c)
    """


@needs_c
@pytest.mark.parametrize(
    "patch",
    [
        "time.time_ns = lambda: 1_000_000_000_123",
        "import freezegun; freezegun.freeze_time('2001-09-09 01:46:40.000001').start()",
        "import time_machine; time_machine.travel(1_000_000_000, tick=False).start()",
    ],
    ids=["assigned", "freezegun", "time-machine"],
)
def test_a_clock_patched_before_import_is_read_by_both(patch: str) -> None:
    """Imported under freezegun (time.time_ns already patched), the C twin read the real clock; under
    time-machine (the builtin's C function swapped) too."""
    done = run_python(_CLOCK_BEFORE_IMPORT.format(patch=patch))
    assert done.returncode == 0, done.stderr[-2000:]
    ref, c = map(int, done.stdout.split())
    assert ref == c and ref < 1_100_000_000 * 10**9


@needs_c
def test_a_clock_patched_after_import_is_read_by_both() -> None:
    """freezegun and time-machine (which swaps the builtin's C function itself) after import."""
    import freezegun
    import time_machine

    frozen = 1_000_000_000 * 10**9
    for travel in (
        freezegun.freeze_time("2001-09-09 01:46:40"),
        time_machine.travel(frozen / 1e9, tick=False),
    ):
        with travel:
            for impl in (_convert.capture_record_py, _speedups.capture_record):  # type: ignore[union-attr]
                assert impl(SETTINGS, 1, 20, "INFO", "s", "b", {}, []).observed_ns == frozen, (travel, impl)
    now = time.time_ns()
    assert _speedups.capture_record(SETTINGS, 1, 20, "INFO", "s", "b", {}, []).observed_ns >= now - 256  # type: ignore[union-attr]


# --- 4. the duplicate-key check -----------------------------------------------------------------------


@needs_c
def test_many_extras_are_checked_for_duplicates_in_linear_time() -> None:
    """The duplicate-key check was pairwise with the GIL held.  50,000 extras within a bound far
    above the linear time and far below the quadratic one: a guard against O(n^2) rather than a
    speed goal.  A duplicate is found on either side of the pairwise range."""
    many = tuple((f"k{i}", i) for i in range(50_000))
    p = pending(extras=many)
    limit = 10**6
    started = time.perf_counter()
    c = _speedups.plain_logs([p], _encode.site_cache, _plain.levels, limit, _convert.datetime_ns)  # type: ignore[union-attr]
    took = time.perf_counter() - started
    assert c[0] is not None
    assert took < 2.0, f"{took:.3f} s: quadratic again?"
    assert both([p], room=limit) == [c, c]
    for n in (3, 16, 17, 40):
        dup = (*((f"k{i}", i) for i in range(n)), ("k1", "again"))
        assert both([pending(extras=dup)])[1] == [None], n


# --- 5. only Exception is swallowed -------------------------------------------------------------------


class Interrupting:
    """Hashes like its text; comparing it, or hashing when ``hash_raises``, is a KeyboardInterrupt."""

    def __init__(self, text: str, hash_raises: bool = False) -> None:
        self.text, self.hash_raises = text, hash_raises

    def __hash__(self) -> int:
        if self.hash_raises:
            raise KeyboardInterrupt
        return hash(self.text)

    def __eq__(self, other: object) -> bool:
        raise KeyboardInterrupt


@needs_c
def test_a_keyboard_interrupt_in_to_ns_or_a_site_propagates_from_both() -> None:
    def interrupted(when: Any) -> int:
        raise KeyboardInterrupt

    naive = datetime(2024, 5, 17, 12, 30)
    assert both([pending(when=naive)], interrupted) == [KeyboardInterrupt, KeyboardInterrupt]
    failing = lambda when: 1 // 0  # noqa: E731 - an Exception: declined (the general path has its own fallback)
    assert both([pending(when=naive)], failing)[1] == [None]
    site = (SITE_KEYS, Interrupting("x", hash_raises=True), "checkout", 42, 1234, "MainThread")
    assert both([pending(site=site)]) == [KeyboardInterrupt, KeyboardInterrupt]


@needs_c
def test_a_keyboard_interrupt_in_chunk_clean_propagates_from_both() -> None:
    safe_keys: set[Any] = {Interrupting("k")}
    outcomes = []
    for impl in (_scrub.chunk_clean_py, _speedups.chunk_clean):  # type: ignore[union-attr]
        try:
            outcomes.append(impl([pending()], safe_keys))
        except KeyboardInterrupt:
            outcomes.append(KeyboardInterrupt)
    assert outcomes == [KeyboardInterrupt, KeyboardInterrupt]


class OnceInterrupting:
    """An attribute (or len()) that raises KeyboardInterrupt the first time only: swallowed, the
    C twin's fallback to the reference then succeeded, and the interrupt was lost."""

    raised = False

    def once(self) -> None:
        if not self.raised:
            self.raised = True
            raise KeyboardInterrupt


@needs_c
def test_a_keyboard_interrupt_from_the_settings_or_attributes_propagates_from_both() -> None:
    class Settingsish(OnceInterrupting):
        def __getattr__(self, name: str) -> Any:
            self.once()
            return getattr(SETTINGS, name)

    class Attributes(dict[str, Any], OnceInterrupting):
        def __len__(self) -> int:
            self.once()
            return dict.__len__(self)

    for make in (lambda: (Settingsish(), {}), lambda: (SETTINGS, Attributes())):
        for impl in (_convert.capture_record_py, _speedups.capture_record):  # type: ignore[union-attr]
            settings, attributes = make()
            with pytest.raises(KeyboardInterrupt):
                impl(settings, 1, 20, "INFO", "s", "b", attributes, [])  # type: ignore[arg-type]


# --- 6. a stale build ------------------------------------------------------------------------------------


@needs_c
def test_the_built_module_declares_the_abi_the_python_side_expects() -> None:
    assert _speedups.ABI == _native.ABI  # type: ignore[union-attr]
    assert _native.speedups is _speedups or _native.pure_python


@needs_c
def test_the_built_module_reads_the_pending_layout_of_record_py() -> None:
    """The C code's field indices name the fields of ``_core.record.Pending``, their one declaration."""
    assert Pending._fields == _speedups.PENDING_FIELDS  # type: ignore[union-attr]


def test_every_maker_of_a_pending_fills_each_field_of_its_declaration() -> None:
    """``capture_record`` builds the tuple positionally (one C call): it must have Pending's length."""
    makers: list[Callable[..., Pending]] = [_convert.capture_record_py]
    if _native.speedups is not None:
        makers.append(_native.speedups.capture_record)
    for make in makers:
        p = make(SETTINGS, 1, 20, "INFO", "s", "b", {}, [("k", 1)], site=SITE)
        assert type(p) is Pending and len(p) == len(Pending._fields), make


@needs_c
def test_a_build_of_another_pending_layout_is_set_aside(tmp_path: Path) -> None:
    """A Pending whose fields moved, beside a build of the old layout: the build fails to load (one
    warning), the package runs pure Python, and no field is read as another."""
    package = tmp_path / "highlight_logging"
    shutil.copytree(ROOT / "highlight_logging", package, ignore=shutil.ignore_patterns("__pycache__"))
    record = package / "_core" / "record.py"
    source = record.read_text()
    moved = "    span_only: bool\n    logged_now: bool"
    assert moved in source
    record.write_text(source.replace(moved, "    logged_now: bool\n    span_only: bool"))
    code = """
        import highlight_logging
        from highlight_logging._core import native as _native
        from highlight_logging._export import fastpath as _plain
        assert highlight_logging.__file__.startswith({root!r}), highlight_logging.__file__
        print(_native.speedups is None and _plain.plain_logs is None)
        """
    done = run_python(
        code.format(root=str(tmp_path)),
        env={"PYTHONPATH": str(tmp_path), "HIGHLIGHT_LOGGING_PURE_PYTHON": ""},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True"]
    assert done.stderr.count("another Pending layout") == 1, done.stderr


@pytest.mark.parametrize(
    "source",
    [
        "def plain_logs(a, b, c, d, e):\n    raise TypeError('plain_logs() takes 5 arguments')\n",
        "ABI = 1\n",
        "raise AttributeError(\"module 'highlight_logging._core.record' has no attribute 'SITE_KEY_SET'\")\n",
    ],
    ids=["no ABI", "old ABI", "fails to initialise"],
)
def test_a_stale_build_is_set_aside_with_one_warning(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "stale_speedups.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_diag, "_once", set())
    assert _native.load("stale_speedups") is None
    assert _native.load("stale_speedups") is None
    sys.modules.pop("stale_speedups", None)
    err = capsys.readouterr().err
    assert err.count("highlight_logging: the C speedups") == 1 and "pure Python" in err, err


def test_a_stale_build_beside_newer_code_logs_through_pure_python(tmp_path: Path) -> None:
    """An editable install's old ``_speedups`` (here a module of the old arity, no ABI) beside
    the current package: the package imports, warns once, and records are exported by the Python
    path instead of the worker dying on "plain_logs() takes 5 arguments"."""
    package = tmp_path / "highlight_logging"
    shutil.copytree(
        ROOT / "highlight_logging", package, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__")
    )
    (package / "_speedups.py").write_text(
        "def plain_logs(chunk, sites, levels, room, to_ns):\n"
        "    raise TypeError('plain_logs() takes 5 arguments')\n"
        "def capture_setup(*args):\n    raise TypeError('capture_setup() takes 11 arguments')\n"
    )
    code = """
        import logging
        import highlight_logging
        from highlight_logging._core import convert as _convert, native as _native
        from highlight_logging._export import fastpath as _plain
        from highlight_logging.testing import capture
        assert highlight_logging.__file__.startswith({root!r}), highlight_logging.__file__
        assert _native.speedups is None and _plain.plain_logs is None
        assert _convert.capture_record is _convert.capture_record_py
        logger = logging.getLogger("app")
        logger.addHandler(highlight_logging.HighlightHandler())
        logger.setLevel(logging.INFO)
        with capture() as cap:
            logger.info("order %s placed", 42, extra={{"order_id": 42}})
        print(cap.logs[0]["body"], cap.logs[0]["attributes"]["order_id"])
        """
    done = run_python(
        code.format(root=str(tmp_path)),
        env={"PYTHONPATH": str(tmp_path), "HIGHLIGHT_LOGGING_PURE_PYTHON": ""},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["order", "42", "placed", "42"]
    assert done.stderr.count("highlight_logging: the C speedups") == 1, done.stderr
