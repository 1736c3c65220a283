"""What a highlight.io user sees: highlight.io's ingest rules as facts, then our output through them.

The rules live in ``highlight_ingest`` (a model we wrote from reading their public code; see its
docstring).  First the facts, each tested on the model alone; then records pushed through the real
front ends (``HighlightHandler``, ``StructlogProcessor``, ``LoguruSink``) and ``record_exception()``
into the real receiver, and what arrived fed to the model: what highlight.io would show.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from highlight_ingest import Shown, extract, format_attributes, frames, log_level, show
from loguru import logger as loguru_logger
from opentelemetry.sdk.trace import TracerProvider

import highlight_logging
from highlight_logging import HighlightHandler, LoguruSink, StructlogProcessor
from highlight_logging._core import settings as _settings
from highlight_logging._devtools.receiver import Receiver

# --- the facts: highlight.io's ingest, as read --------------------------------------------------------


def test_fact_level_comes_from_the_severity_text_only() -> None:
    """log_row.go makeLogLevel: trace, debug, warn/warning, error, fatal, panic; all else is info."""
    assert log_level("CRITICAL") == "info"
    assert log_level("SUCCESS") == "info"
    assert log_level("NOTICE") == "info"
    assert log_level("FATAL") == "fatal"
    assert log_level("WARNING") == "warn"
    assert log_level("TRACE") == "trace"


def test_fact_flattening_drops_bool_bytes_none_empty() -> None:
    """util.go FormatAttributes keeps strings, ints, floats, non-empty lists and maps (flattened)."""
    assert format_attributes("retry", True) == {}
    assert format_attributes("raw", b"..") == {}
    assert format_attributes("none", None) == {}
    assert format_attributes("empty", []) == {}
    assert format_attributes("n", 3) == {"n": "3"}
    assert format_attributes("d", {"a": {"b": [1, "x"]}}) == {"d.a.b.0": "1", "d.a.b.1": "x"}
    assert extract({}, log={"note": ""}).attrs == {}  # extract.go: an empty string is dropped


def test_fact_keys_taken_out_of_the_attributes() -> None:
    """extract.go: these keys fill highlight.io's own fields and leave the attributes."""
    f = extract(
        {},
        resource={"deployment.environment": "production", "service.name": "shop"},
        log={"severity": "debug", "message": "m", "environment": "staging", "URL": "u", "Source": "x"},
        severity_text="ERROR",
    )
    assert (f.severity, f.message, f.environment, f.service_name, f.error_url) == (
        "debug",
        "m",
        "staging",
        "shop",
        "u",
    )
    assert f.attrs == {}


def test_fact_environment_keys() -> None:
    """extract.go reads deployment.environment (semconv 1.25) or environment, not deployment.environment.name."""
    assert extract({}, resource={"deployment.environment.name": "production"}).environment == ""
    assert extract({}, resource={"deployment.environment": "production"}).environment == "production"


def test_fact_project_id_from_attribute_or_header() -> None:
    assert extract({}, resource={"highlight.project_id": "p1"}).project_id == "p1"
    assert extract({"x-highlight-project": "p2"}).project_id == "p2"
    assert extract({}).project_id == ""


def test_fact_scope_name_is_never_read() -> None:
    """Scope attributes are merged in; the scope's name is not an input at all."""
    assert extract({}, scope={"logger": "shop.orders"}).attrs == {"logger": "shop.orders"}


def test_fact_a_body_with_a_bracket_loses_its_start() -> None:
    """extract.go: a body not starting with "<" but holding " <" is read as "<token> <syslog>"."""
    f = extract({}, body="mail to Bob <bob@example.com>")
    assert (f.project_id, f.body) == ("mail to Bob", "<bob@example.com>")


def test_fact_python_frames_need_a_word_function_name() -> None:
    """stacktraces.go: ``in <module>`` does not match their frame pattern."""
    text = 'Traceback (most recent call last):\n  File "/a.py", line 3, in <module>\n    f()\n  File "/b.py", line 9, in f\n    raise E\nE: x\n'
    parsed = frames(text)
    assert [(fr.file, fr.function) for fr in parsed] == [("/b.py", "f"), (None, None), (None, None)]


# --- running the front ends into the receiver -----------------------------------------------------------

FRONT_ENDS = ["stdlib", "structlog", "loguru"]
PROJECT = "1jdkoe52"


class PaymentError(Exception):
    pass


def _raise(exc: BaseException) -> None:
    raise exc


class Front:
    """One front end, set up with the given settings: ``log(level, message, **extras)``, and
    ``log_exception(exc, message)`` inside an ``except``."""

    def __init__(self, kind: str, settings: dict[str, Any]) -> None:
        self.kind = kind
        if kind == "stdlib":
            self.std = logging.getLogger("shop.orders")
            self.std.propagate = False
            self.std.setLevel(1)
            self.std.handlers.clear()
            self.std.addHandler(HighlightHandler(**settings))
        elif kind == "structlog":
            structlog.configure(
                processors=[
                    structlog.processors.add_log_level,
                    StructlogProcessor(**settings),
                    structlog.processors.KeyValueRenderer(),
                ],
                logger_factory=structlog.ReturnLoggerFactory(),
            )
            self.slog = structlog.get_logger().bind(logger="shop.orders")
        else:
            loguru_logger.remove()
            loguru_logger.add(LoguruSink(**settings), level="TRACE")

    @property
    def logger_name(self) -> str:
        return __name__ if self.kind == "loguru" else "shop.orders"

    def log(self, level: str, message: str, /, **extras: Any) -> None:
        if self.kind == "stdlib":
            getattr(self.std, level)(message, extra=extras)
        elif self.kind == "structlog":
            getattr(self.slog, level)(message, **extras)
        else:
            getattr(loguru_logger.bind(**extras), level)(message)

    def log_exception(self, exc: BaseException, message: str) -> None:
        try:
            _raise(exc)
        except BaseException:
            if self.kind == "stdlib":
                self.std.exception(message)
            elif self.kind == "structlog":
                self.slog.exception(message)
            else:
                loguru_logger.exception(message)

    def close(self) -> None:
        logging.getLogger("shop.orders").handlers.clear()
        structlog.reset_defaults()
        loguru_logger.remove()


@pytest.fixture
def run(receiver: Receiver) -> Iterator[Callable[..., tuple[Front, Callable[[], Shown]]]]:
    fronts: list[Front] = []

    def make(kind: str, **settings: Any) -> tuple[Front, Callable[[], Shown]]:
        settings = {
            "endpoint": receiver.endpoint,
            "project_id": PROJECT,
            "environment": "production",
            "service_name": "shop",
            "service_version": "2.0",
            "schedule_delay": 30,
            **settings,
        }
        front = Front(kind, settings)
        fronts.append(front)

        def shown() -> Shown:
            assert highlight_logging.flush(10)
            return show(receiver)

        return front, shown

    yield make
    for front in fronts:
        front.close()


@pytest.mark.parametrize("kind", FRONT_ENDS)
def test_a_line_with_every_kind_of_value(kind: str, run: Any) -> None:
    """One line, its body, level, environment, service, logger name, and every extra visible;
    keys highlight.io would take out kept under ``extra.``, never changing level or environment."""
    front, shown = run(kind)
    extras: dict[str, Any] = {
        "retry": True,
        "raw": b"\x89PNG",
        "note": "",
        "none": None,
        "nested": {"a": {"b": [1, None]}, "c": {}},
        "items": [],
        "severity": "debug",
        "environment": "staging",
        "highlight.source": "frontend",
        "service.name": "impostor",
        "log": {"severity": "debug"},
        "URL": "https://example.com",
    }
    if kind != "stdlib":
        extras["message"] = "not the body"  # stdlib refuses this key itself
    front.log("info", "order placed", **extras)
    (line,) = shown().logs
    assert line.body == "order placed"
    assert (line.level, line.environment, line.service_name, line.service_version) == (
        "info",
        "production",
        "shop",
        "2.0",
    )
    assert line.session_id == ""
    a = line.attrs
    assert a["logger"] == front.logger_name
    assert (a["retry"], a["raw"], a["note"], a["none"], a["items"]) == (
        "true",
        "\\x89PNG",
        '""',
        "null",
        "[]",
    )
    assert (a["nested.a.b.0"], a["nested.a.b.1"], a["nested.c"]) == ("1", "null", "{}")
    assert a["extra.severity"] == "debug"
    assert a["extra.environment"] == "staging"
    assert a["extra.highlight.source"] == "frontend"
    assert a["extra.service.name"] == "impostor"
    assert a["extra.log.severity"] == "debug"
    assert a["extra.URL"] == "https://example.com"
    if kind != "stdlib":
        assert a["extra.message"] == "not the body"


@pytest.mark.parametrize("kind", FRONT_ENDS)
def test_levels_map_to_the_nearest_highlight_knows(kind: str, run: Any) -> None:
    front, shown = run(kind)
    for level in ("debug", "info", "warning", "error", "critical"):
        front.log(level, level)
    if kind == "loguru":
        front.log("trace", "trace")
        front.log("success", "success")
    if kind == "stdlib":
        front.std.log(25, "custom 25")
        front.std.log(5, "custom 5")
    got = {line.body: line.level for line in shown().logs}
    expected = {"debug": "debug", "info": "info", "warning": "warn", "error": "error", "critical": "fatal"}
    if kind == "loguru":
        expected.update(trace="trace", success="info")
    if kind == "stdlib":
        expected.update({"custom 25": "info", "custom 5": "trace"})
    assert got == expected


@pytest.mark.parametrize("kind", FRONT_ENDS)
def test_a_logged_exception_is_one_error_and_one_line(kind: str, run: Any) -> None:
    """Linked to its log line and to the session and request; parsed frames; no trace row."""
    front, shown = run(kind)
    with highlight_logging.context(session_id="sess-1", request_id="req-1"):
        front.log_exception(PaymentError("card declined"), "payment failed")
    seen = shown()
    (line,) = seen.logs
    (error,) = seen.errors
    assert not seen.traces
    assert line.body == "payment failed"
    assert line.level == "error"
    assert error.title == "card declined"
    assert error.type.endswith("PaymentError")
    assert error.log is line
    assert (error.session_id, error.request_id, error.environment, error.service_name) == (
        "sess-1",
        "req-1",
        "production",
        "shop",
    )
    assert (line.session_id, line.trace_id) == ("sess-1", "req-1")
    assert error.frames, error.stacktrace
    assert all(fr.file and fr.line and fr.function for fr in error.frames)
    assert error.frames[0].function == "_raise"


@pytest.mark.parametrize("kind", FRONT_ENDS)
@pytest.mark.parametrize(
    ("exc", "title"),
    [(ValueError(), "ValueError"), (AssertionError(), "AssertionError"), (KeyError(""), "''")],
)
def test_an_exception_without_a_message_is_still_one_error(
    kind: str, exc: BaseException, title: str, run: Any
) -> None:
    front, shown = run(kind)
    front.log_exception(exc, "failed")
    seen = shown()
    assert len(seen.logs) == 1
    assert [e.title for e in seen.errors] == [title]


@pytest.mark.parametrize("kind", FRONT_ENDS)
def test_a_withheld_message_titles_the_error_by_its_type(kind: str, run: Any) -> None:
    front, shown = run(kind, include_exception_message=False)
    front.log_exception(PaymentError("card 4111 declined"), "failed")
    (error,) = shown().errors
    assert error.title == f"{__name__}.PaymentError"


@pytest.mark.parametrize("kind", FRONT_ENDS)
def test_module_level_frames_are_parsed(kind: str, run: Any, tmp_path: Any) -> None:
    """A frame ``in <module>`` (or ``<lambda>``) is sent so that their parser reads it."""
    front, shown = run(kind)
    namespace: dict[str, Any] = {"PaymentError": PaymentError}
    script = tmp_path / "script.py"
    script.write_text("fail = lambda: (_ for _ in ()).throw(PaymentError('x'))\nfail()\n")
    code = compile(script.read_text(), str(script), "exec")
    try:
        exec(code, namespace)
    except PaymentError as exc:
        front.log_exception(exc, "module level")
    (error,) = shown().errors
    assert all(fr.file and fr.function for fr in error.frames), error.stacktrace
    functions = [fr.function for fr in error.frames]
    assert {"module", "lambda", "genexpr"} <= set(functions), error.stacktrace


@pytest.mark.parametrize("kind", FRONT_ENDS)
def test_a_body_with_an_address_is_kept_whole(kind: str, run: Any) -> None:
    front, shown = run(kind)
    front.log("info", "mail to Bob <bob@example.com>")
    (line,) = shown().logs
    assert line.body.replace("\u00a0", " ") == "mail to Bob <bob@example.com>"
    assert line.attrs.get("logger") == front.logger_name


def test_record_exception_is_one_error(run: Any, receiver: Receiver) -> None:
    """An error report: one error (highlight.io shows every error with a log line: one), no trace row."""
    _, shown = run("stdlib")
    settings = {
        "endpoint": receiver.endpoint,
        "project_id": PROJECT,
        "environment": "production",
        "schedule_delay": 30,
    }
    with highlight_logging.context(session_id="sess-9", request_id="req-9"):
        assert highlight_logging.record_exception(
            PaymentError("reported"), attributes={"order": 9, "ok": True}, **settings
        )
    assert highlight_logging.record_exception(ValueError(), **settings)
    seen = shown()
    assert [e.title for e in seen.errors] == ["reported", "ValueError"]
    assert len(seen.logs) == 2
    assert not seen.traces
    first = seen.errors[0]
    assert (first.session_id, first.request_id, first.environment) == ("sess-9", "req-9", "production")
    assert (first.payload["order"], first.payload["ok"]) == ("9", "true")
    stats = highlight_logging.stats()
    assert stats["logs"]["exported"] == 2
    assert stats["spans"]["queued"] == stats["spans"]["exported"] == 0


@pytest.mark.parametrize("kind", FRONT_ENDS)
def test_inside_the_apps_own_trace_the_error_joins_it(kind: str, run: Any) -> None:
    """With an active span of the app's, the error and line carry its trace and span; we add no span."""
    front, shown = run(kind)
    tracer = TracerProvider().get_tracer("app")
    with tracer.start_as_current_span("checkout") as span:
        front.log_exception(PaymentError("card declined"), "payment failed")
        ctx = span.get_span_context()
    seen = shown()
    (error,) = seen.errors
    assert not seen.traces
    assert error.trace_id == f"{ctx.trace_id:032x}"
    assert error.span_id == f"{ctx.span_id:016x}"


# --- today's otel shape, through the same rules: the table, still true there ------------------


@pytest.mark.parametrize("kind", FRONT_ENDS)
def test_the_otel_shape_gives_two_errors_per_exception(kind: str, run: Any) -> None:
    """Why the highlight shape exists: backend="otel" is unchanged, and highlight.io doubles its errors."""
    front, shown = run(kind, backend="otel")
    front.log_exception(PaymentError("card declined"), "payment failed")
    front.log("critical", "down")
    seen = shown()
    assert len(seen.errors) == 2
    assert len(seen.logs) == 3
    assert len(seen.traces) == 1
    assert {line.environment for line in seen.logs} == {""}
    assert [line.level for line in seen.logs if line.body == "down"] == ["info"]


# --- the setting -----------------------------------------------------------------------------------------


def test_backend_is_decided_once() -> None:
    resolve = _settings.resolve
    assert resolve({"endpoint": "localhost:4317"}).backend == "otel"
    assert resolve({"endpoint": "localhost:4317", "project_id": "p"}).backend == "highlight"
    assert (
        resolve({"endpoint": "localhost:4317", "headers": {"X-Highlight-Project": "p"}}).backend
        == "highlight"
    )
    assert resolve({"endpoint": "localhost:4317"}, {"HIGHLIGHT_PROJECT_ID": "p"}).backend == "highlight"
    assert resolve({}).backend == "highlight"  # highlight.io's collector is the default endpoint
    assert resolve({"endpoint": "https://otel.highlight.io:4317"}).backend == "highlight"
    assert (
        resolve({"endpoint": "https://collector.example.com", "backend": "highlight"}).backend == "highlight"
    )
    assert resolve({"project_id": "p", "backend": "otel"}).backend == "otel"
    assert resolve({"project_id": "p", "use_otel_providers": True}).backend == "otel"
    assert resolve({}, {"HIGHLIGHT_BACKEND": "otel"}).backend == "otel"
    assert resolve({"endpoint": "localhost:4317"}, {"HIGHLIGHT_BACKEND": "Highlight"}).backend == "highlight"
    assert resolve({"endpoint": "[::1"}).backend == "otel"  # malformed: the transport reports it
    assert resolve({"endpoint": "https://notreallyhighlight.io"}).backend == "otel"
    assert (
        resolve({"endpoint": "localhost:4317"}, {"HIGHLIGHT_BACKEND": "nope"}).backend == "otel"
    )  # warned, ignored
    with pytest.raises(ValueError, match="backend"):
        resolve({"backend": "datadog"})


@pytest.mark.parametrize("kind", FRONT_ENDS)
def test_no_project_id_for_highlight_io_warns_once_at_creation(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    front = Front(kind, {"schedule_delay": 30, "disabled": False, "shutdown_timeout": 0.1})
    Front(kind, {"schedule_delay": 30, "shutdown_timeout": 0.1}).close()
    err = capsys.readouterr().err
    assert err.count("no project id") == 1, err
    front.close()


def test_a_project_header_is_a_project_id(capsys: pytest.CaptureFixture[str]) -> None:
    HighlightHandler(headers={"x-highlight-project": "p"})
    HighlightHandler(endpoint="localhost:4317")
    assert "no project id" not in capsys.readouterr().err


def test_a_renamed_key_never_lands_on_another() -> None:
    """``extra.<key>``, and ``extra.extra.<key>`` when the user already has ``extra.<key>``."""
    from highlight_logging._core.highlight import shape_extras

    got = shape_extras((("level", "x"), ("extra.level", "y"), ("ok", True), ("log", {"severity": "d"})))
    assert got == [
        ("extra.extra.level", "x"),
        ("extra.level", "y"),
        ("ok", "true"),
        ("extra.log", {"severity": "d"}),
    ]


def test_bytes_shown_as_text_stay_within_the_value_limit() -> None:
    from highlight_logging._core.highlight import shown

    assert shown(b"\xff" * 10, 8) == "\\xff\\xff...[truncated]"
    assert shown({"a": [b"ok"]}, 8) == {"a": ["ok"]}
