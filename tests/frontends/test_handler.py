"""The stdlib front end against a real OTLP/gRPC receiver: every field of the mapping."""

from __future__ import annotations

import logging
import logging.config
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from otlp_receiver import ByteCounter
from paths import ROOT

import highlight_logging
from highlight_logging import HighlightHandler
from highlight_logging._devtools.receiver import Receiver

ROOT = str(ROOT)


@pytest.fixture
def log(receiver: Receiver) -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.handler")
    logger.setLevel(1)
    logger.propagate = False
    handler = HighlightHandler(endpoint=receiver.endpoint, service_name="svc")
    logger.addHandler(handler)
    yield logger
    logger.removeHandler(handler)


def sent(receiver: Receiver, n: int = 1) -> list[Any]:
    assert highlight_logging.flush(5)
    assert receiver.wait_for_logs(n, 5)
    return receiver.log_records()


def test_resource_scope_body_and_times(log: logging.Logger, receiver: Receiver) -> None:
    """Resource carries service and sdk attributes; scope is the logger name; body is %-formatted."""
    log.info("user %s did %s", "ada", "login")
    (rec,) = sent(receiver)
    res = rec.resource_attributes
    assert res["service.name"] == "svc"
    assert res["telemetry.sdk.name"] == "highlight_logging"
    assert res["telemetry.sdk.language"] == "python"
    assert res["telemetry.sdk.version"] == highlight_logging.__version__
    assert res["process.pid"] == os.getpid()
    assert rec.scope.name == "tests.handler"
    assert rec.body == "user ada did login"
    assert rec.record.time_unix_nano > 0
    # Logged at its source: the observed time is the record's time (logs.proto).
    assert rec.record.observed_time_unix_nano == rec.record.time_unix_nano


def test_an_old_record_is_observed_when_the_handler_sees_it(log: logging.Logger, receiver: Receiver) -> None:
    """A record created long before it reaches the handler (a queue, a replay) keeps its own time,
    and its observed time is the handler's clock; so does one from the future (a clock step)."""
    for offset in (-30.0, 30.0):
        record = log.makeRecord(log.name, logging.INFO, __file__, 1, "late %s", (offset,), None)
        record.created += offset
        before = time.time_ns()
        log.handle(record)
        after = time.time_ns()
        (rec,) = sent(receiver)
        receiver.clear()
        assert rec.record.time_unix_nano == int(record.created * 1e9)
        assert before - 256 <= rec.record.observed_time_unix_nano <= after


@pytest.mark.parametrize(
    ("level", "number", "text"),
    [
        (logging.DEBUG, 5, "DEBUG"),
        (logging.INFO, 9, "INFO"),
        (logging.WARNING, 13, "WARNING"),
        (logging.ERROR, 17, "ERROR"),
        (logging.CRITICAL, 21, "CRITICAL"),
        (25, 10, "Level 25"),
        (45, 18, "Level 45"),
        (5, 1, "Level 5"),
    ],
)
def test_severity(log: logging.Logger, receiver: Receiver, level: int, number: int, text: str) -> None:
    """Standard levels map to their OTLP numbers; custom levels fall between them."""
    log.log(level, "x")
    (rec,) = sent(receiver)
    assert rec.record.severity_number == number
    assert rec.record.severity_text == text


def test_typed_extras(log: logging.Logger, receiver: Receiver) -> None:
    """Extras keep their types: scalars, nested dicts and lists, bytes; other objects become str."""

    class Thing:
        def __str__(self) -> str:
            return "a thing"

    log.info(
        "x",
        extra={
            "s": "text",
            "b": True,
            "i": 42,
            "f": 1.5,
            "d": {"k": [1, "two", {"three": 3.0}]},
            "t": (1, 2),
            "raw": b"\x00\x01",
            "obj": Thing(),
            "none": None,
        },
    )
    (rec,) = sent(receiver)
    a = rec.attributes
    assert a["s"] == "text" and a["b"] is True and a["i"] == 42 and a["f"] == 1.5
    assert a["d"] == {"k": [1, "two", {"three": 3.0}]}
    assert a["t"] == [1, 2]
    assert a["raw"] == b"\x00\x01"
    assert a["obj"] == "a thing"


def test_extras_from_filters_formatters_and_record_factories(
    log: logging.Logger, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Extras are found however the record got them: ``extra=``, a filter, a custom record class
    (attributes set before or after LogRecord.__init__); a formatter's own fields are not extras."""

    class Tagging(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.request_id = "r-1"
            if record.msg == "redacted":  # a filter that deletes and re-sets standard attributes
                del record.args, record.relativeCreated
                record.args = ()
            return True

    class Early(logging.LogRecord):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.early = "before init"
            super().__init__(*args, **kwargs)
            self.late = "after init"

    handler = log.handlers[0]
    handler.addFilter(Tagging())
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.info("plain")
    log.info("with extra", extra={"k": 1})
    log.info("redacted", extra={"user_id": 7})
    monkeypatch.setattr(logging, "_logRecordFactory", Early)
    log.info("custom class", extra={"k": 2})
    by_body = {r.body.split(" ", 2)[-1]: r.attributes for r in sent(receiver, 4)}
    assert by_body["redacted"]["user_id"] == 7 and by_body["redacted"]["request_id"] == "r-1"
    assert "relativeCreated" not in by_body["redacted"] and "args" not in by_body["redacted"]
    user = {k: v for k, v in by_body["plain"].items() if not k.startswith(("code.", "thread."))}
    assert user == {"request_id": "r-1"}
    assert by_body["with extra"]["k"] == 1 and by_body["with extra"]["request_id"] == "r-1"
    custom = by_body["custom class"]
    assert (custom["early"], custom["late"], custom["k"]) == ("before init", "after init", 2)
    assert not {"message", "asctime"} & (set(by_body["plain"]) | set(custom))


def test_code_attributes_and_stack_info(log: logging.Logger, receiver: Receiver) -> None:
    """code.* and thread.* are always there; stack_info=True adds code.stacktrace."""
    log.info("x", stack_info=True)
    (rec,) = sent(receiver)
    a = rec.attributes
    assert a["code.file.path"] == __file__
    assert a["code.function.name"] == "test_code_attributes_and_stack_info"
    assert isinstance(a["code.line.number"], int)
    assert a["thread.name"] == "MainThread"
    assert isinstance(a["thread.id"], int)
    assert "Stack (most recent call last)" in str(a["code.stacktrace"])


class CustomError(Exception):
    pass


def _raise_chain() -> None:
    try:
        raise KeyError("inner")
    except KeyError as exc:
        raise CustomError("outer") from exc


@pytest.mark.parametrize("form", ["exception", "exc_info_true", "instance", "tuple"])
def test_exception_attributes_and_span(log: logging.Logger, receiver: Receiver, form: str) -> None:
    """Every exc_info form gives exception.* attributes and an ERROR span with one exception event."""
    try:
        _raise_chain()
    except CustomError as exc:
        if form == "exception":
            log.exception("failed")
        elif form == "exc_info_true":
            log.error("failed", exc_info=True)
        elif form == "instance":
            log.error("failed", exc_info=exc)
        else:
            log.error("failed", exc_info=(type(exc), exc, exc.__traceback__))
    (rec,) = sent(receiver)
    assert receiver.wait_for_spans(1, 5)
    a = rec.attributes
    assert a["exception.type"] == f"{__name__}.CustomError"
    assert a["exception.message"] == "outer"
    stack = str(a["exception.stacktrace"])
    assert "KeyError: 'inner'" in stack and "direct cause" in stack and "CustomError: outer" in stack
    (span,) = receiver.spans()
    assert span.span.status.code == 2
    assert span.span.trace_id == rec.record.trace_id and len(rec.record.trace_id) == 16
    assert span.span.span_id == rec.record.span_id
    assert span.span.parent_span_id == b""
    (event,) = span.span.events
    assert event.name == "exception"
    from highlight_logging._devtools.receiver import attributes_to_dict

    ev = attributes_to_dict(event.attributes)
    assert ev["exception.type"] == a["exception.type"]
    assert ev["exception.message"] == "outer"
    assert ev["exception.stacktrace"] == stack
    assert span.resource_attributes["service.name"] == "svc"


def test_builtin_exception_type_is_bare(log: logging.Logger, receiver: Receiver) -> None:
    """Builtin exception types are not qualified; an exception without args has an empty message."""
    try:
        raise ValueError
    except ValueError:
        log.exception("x")
    (rec,) = sent(receiver)
    assert rec.attributes["exception.type"] == "ValueError"
    assert rec.attributes["exception.message"] == ""


def test_exception_group(log: logging.Logger, receiver: Receiver) -> None:
    """ExceptionGroup members appear in the stacktrace."""
    if sys.version_info < (3, 11):
        pytest.skip("ExceptionGroup is 3.11+")
    try:
        raise ExceptionGroup("many", [ValueError("v1"), TypeError("t2")])  # noqa: F821
    except Exception:
        log.exception("group")
    (rec,) = sent(receiver)
    stack = str(rec.attributes["exception.stacktrace"])
    assert "ValueError: v1" in stack and "TypeError: t2" in stack
    assert rec.attributes["exception.type"] == "ExceptionGroup"


def test_trace_correlation_with_users_tracer_provider(log: logging.Logger, receiver: Receiver) -> None:
    """Inside a user's span the log carries its ids, and the exception span is its child."""
    tracer = TracerProvider().get_tracer("app")
    with tracer.start_as_current_span("request") as span:
        ctx = span.get_span_context()
        log.info("inside")
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("failed")
    recs = sent(receiver, 2)
    assert receiver.wait_for_spans(1, 5)
    plain, failed = sorted(recs, key=lambda r: r.record.severity_number)
    assert plain.record.trace_id == ctx.trace_id.to_bytes(16, "big")
    assert plain.record.span_id == ctx.span_id.to_bytes(8, "big")
    assert plain.record.flags & 1
    (exc_span,) = receiver.spans()
    assert exc_span.span.trace_id == plain.record.trace_id
    assert exc_span.span.parent_span_id == plain.record.span_id
    assert failed.record.span_id == exc_span.span.span_id
    assert failed.record.trace_id == plain.record.trace_id


def test_user_formatter_sets_body(receiver: Receiver) -> None:
    """A Formatter set on the handler produces the body."""
    logger = logging.getLogger("tests.formatter")
    logger.propagate = False
    handler = HighlightHandler(endpoint=receiver.endpoint)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logger.addHandler(handler)
    logger.warning("hi %d", 3)
    (rec,) = sent(receiver)
    assert rec.body == "[WARNING] hi 3"
    logger.removeHandler(handler)


def test_dictconfig(receiver: Receiver) -> None:
    """dictConfig with the class path and settings as keys works."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "hl": {
                    "class": "highlight_logging.HighlightHandler",
                    "level": "INFO",
                    "endpoint": receiver.endpoint,
                    "service_name": "dict-svc",
                    "resource_attributes": {"team": "core"},
                }
            },
            "loggers": {"tests.dict": {"handlers": ["hl"], "level": "DEBUG", "propagate": False}},
        }
    )
    logging.getLogger("tests.dict").debug("filtered by handler level")
    logging.getLogger("tests.dict").info("kept")
    (rec,) = sent(receiver)
    assert rec.body == "kept"
    assert rec.resource_attributes["service.name"] == "dict-svc"
    assert rec.resource_attributes["team"] == "core"
    logging.getLogger("tests.dict").handlers.clear()


def test_fileconfig(receiver: Receiver, tmp_path: Any) -> None:
    """fileConfig with kwargs= works."""
    ini = tmp_path / "logging.ini"
    ini.write_text(
        textwrap.dedent(
            f"""
            [loggers]
            keys=root,app
            [handlers]
            keys=hl
            [formatters]
            keys=
            [logger_root]
            level=WARNING
            handlers=
            [logger_app]
            level=INFO
            handlers=hl
            qualname=tests.file
            propagate=0
            [handler_hl]
            class=highlight_logging.HighlightHandler
            level=INFO
            args=()
            kwargs={{"endpoint": "{receiver.endpoint}", "service_name": "file-svc"}}
            """
        )
    )
    logging.config.fileConfig(str(ini), disable_existing_loggers=False)
    logging.getLogger("tests.file").info("from fileConfig")
    (rec,) = sent(receiver)
    assert rec.body == "from fileConfig"
    assert rec.resource_attributes["service.name"] == "file-svc"
    logging.getLogger("tests.file").handlers.clear()


def test_env_precedence(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyword beats configure(), which beats the environment, which beats the default."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{receiver.endpoint}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,region=eu%2Dwest")
    monkeypatch.setenv("HIGHLIGHT_PROJECT_ID", "proj-env")
    highlight_logging.configure(service_version="1.2.3", project_id="proj-configured")
    logger = logging.getLogger("tests.env")
    logger.propagate = False
    handler = HighlightHandler(project_id="proj-kw")
    logger.addHandler(handler)
    logger.warning("env")
    (rec,) = sent(receiver)
    res = rec.resource_attributes
    assert res["service.name"] == "from-env"
    assert res["service.version"] == "1.2.3"
    assert res["highlight.project_id"] == "proj-kw"
    assert res["region"] == "eu-west"
    assert res["deployment.environment"] == "staging"  # a project id: the highlight shape
    logger.removeHandler(handler)


def test_bad_input_never_raises(log: logging.Logger, receiver: Receiver) -> None:
    """A bad % format, raising __str__ and cyclic extras each get a readable fallback."""

    class Evil:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    cyclic: dict[str, Any] = {"a": 1}
    cyclic["self"] = cyclic
    log.info("%d", "x")
    log.info(Evil())
    log.info("ok", extra={"evil": Evil(), "cyclic": cyclic, "s": {1, 2}})
    recs = sent(receiver, 3)
    bodies = [r.body for r in recs]
    assert any("%d" in str(b) and "formatting failed" in str(b) for b in bodies)
    assert any(str(b).startswith("<unprintable ") and "Evil object>" in str(b) for b in bodies)
    extra = next(r for r in recs if r.body == "ok").attributes
    assert str(extra["evil"]).endswith("Evil object>")
    assert extra["cyclic"] == {"a": 1, "self": "<cycle>"}
    assert sorted(extra["s"]) == [1, 2]  # type: ignore[arg-type]


def test_closing_one_handler_keeps_the_pipeline(receiver: Receiver) -> None:
    """Two handlers with equal settings share one pipeline; closing one does not stop the other."""
    a = HighlightHandler(endpoint=receiver.endpoint)
    b = HighlightHandler(endpoint=receiver.endpoint)
    assert a._binding.pipeline is b._binding.pipeline
    a.close()
    logger = logging.getLogger("tests.close")
    logger.propagate = False
    logger.addHandler(b)
    logger.warning("still here")
    (rec,) = sent(receiver)
    assert rec.body == "still here"
    logger.removeHandler(b)


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": ROOT, **env}
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60
    )


def test_exit_flush_without_explicit_flush(receiver: Receiver) -> None:
    """A process that just logs and exits delivers every record."""
    code = textwrap.dedent(
        f"""
        import logging, highlight_logging
        log = logging.getLogger("child")
        log.addHandler(highlight_logging.HighlightHandler(endpoint="{receiver.endpoint}"))
        log.setLevel(logging.INFO)
        for i in range(100):
            log.info("record %d", i)
        """
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert receiver.wait_for_logs(100, 10)
    assert sorted(r.body for r in receiver.log_records()) == sorted(f"record {i}" for i in range(100))


def test_5000_records_batched_and_compressed(receiver: Receiver) -> None:
    """5,000 records arrive in a few gzip-compressed requests, none lost, none duplicated."""
    with ByteCounter(receiver.port) as proxy:
        code = textwrap.dedent(
            f"""
            import logging, highlight_logging
            log = logging.getLogger("bulk")
            log.addHandler(highlight_logging.HighlightHandler(endpoint="{proxy.endpoint}"))
            log.setLevel(logging.INFO)
            for i in range(5000):
                log.info("user %s did %s", i, "checkout", extra={{"k": i}})
            """
        )
        proc = _run(code)
        assert proc.returncode == 0, proc.stderr
        assert receiver.wait_for_logs(5000, 20)
        bodies = [r.body for r in receiver.log_records()]
        assert len(bodies) == 5000 and len(set(bodies)) == 5000
        requests = receiver.requests_logs
        assert len(requests) <= 5000 // 512 + 2
        raw = sum(r.ByteSize() for r in requests)
        assert proxy.sent < raw / 3, (proxy.sent, raw)  # gzip on the wire
