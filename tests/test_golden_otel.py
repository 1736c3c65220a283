"""The ``otel`` output shape, pinned: a fixed set of records through all three front ends and
``record_exception()``, received by the real receiver, decoded, and compared with
``tests/golden/otel_shape.json`` (only what varies between runs normalised: times, ids, pids,
thread ids, paths and line numbers).

The golden file was written before the ``highlight`` shape existed, so it proves the ``otel``
shape unchanged.  Regenerate only on purpose: ``UPDATE_GOLDEN=1 pytest <this>``.
It runs with and without the C speedups (Makefile ``PURE_TESTS``): both give the same file.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import structlog
from google.protobuf.json_format import MessageToDict
from loguru import logger as loguru_logger

import highlight_logging
from highlight_logging import HighlightHandler, LoguruSink, StructlogProcessor
from highlight_logging._devtools.receiver import Receiver

GOLDEN = Path(__file__).parent / "golden" / "otel_shape.json"

# project_id and environment set: in the highlight shape's world these would pick "highlight" under
# backend=auto; the otel shape is asked for explicitly once the setting exists.
SETTINGS: dict[str, Any] = {
    "project_id": "1jdkoe52",
    "service_name": "golden",
    "service_version": "1.2.3",
    "environment": "production",
    "schedule_delay": 30,
    "backend": "otel",
}


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


class PaymentError(Exception):
    pass


def _raise(exc: BaseException) -> None:
    raise exc


EXTRAS: dict[str, Any] = {
    "s": "text",
    "empty": "",
    "n": 42,
    "neg": -7,
    "big": 1 << 70,
    "f": 2.5,
    "flag": True,
    "off": False,
    "raw": b"\x00\xffbytes",
    "none": None,
    "items": [1, "two", None, True],
    "nested": {"a": {"b": [1, 2]}, "c": None, "d": ""},
    "tup": (1, 2),
    "obj": Opaque(),
    "severity": "debug",
    "level": "trace",
    "log.message": "not the body",
    "environment": "staging",
    "highlight.project_id": "other",
    "service.name": "impostor",
    "exception.type": "Fake",
}


def _records(endpoint: str) -> None:
    settings = {**SETTINGS, "endpoint": endpoint}
    # stdlib
    std = logging.getLogger("golden.std")
    std.propagate = False
    std.setLevel(1)
    std.addHandler(HighlightHandler(**settings))
    withheld = logging.getLogger("golden.withheld")
    withheld.propagate = False
    withheld.addHandler(HighlightHandler(**settings, include_exception_message=False))
    logging.addLevelName(23, "GOLDEN")
    std.info("user %s did %s", "ann", "checkout")
    std.info("all the types", extra=EXTRAS)
    std.debug("debug line")
    std.warning("warn line")
    std.log(23, "custom level")
    std.log(5, "below debug")
    std.critical("critical line")
    std.error("mail to Bob <bob@example.com>")
    with highlight_logging.context(session_id="sess-1", request_id="req-1"):
        try:
            _raise(PaymentError("card declined"))
        except PaymentError:
            std.exception("payment failed", extra={"order": 7})
    try:
        _raise(ValueError())
    except ValueError:
        std.exception("empty message")
    try:
        assert 1 + 1 == 3
    except AssertionError:
        std.exception("assertion")
    try:
        _raise(KeyError("secret-ish"))
    except KeyError:
        withheld.exception("withheld message")
    try:
        try:
            _raise(OSError("disk"))
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError:
        std.error("chained", exc_info=True)
    # structlog
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            StructlogProcessor(**settings),
            structlog.processors.KeyValueRenderer(),
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    slog = structlog.get_logger("golden.structlog")
    slog.info("structlog event", message="extra message", user_id=3, flag=True, note="", raw=b"x")
    slog.critical("structlog critical", environment="staging")
    with highlight_logging.context(session_id="sess-2", request_id="req-2"):
        try:
            _raise(PaymentError("structlog boom"))
        except PaymentError:
            slog.exception("structlog exception", order=8)
    # loguru
    loguru_logger.remove()
    loguru_logger.add(LoguruSink(**settings), level="TRACE")
    loguru_logger.bind(cart=[1, 2], flag=False, none=None).info("loguru info")
    loguru_logger.trace("loguru trace")
    loguru_logger.success("loguru success")
    loguru_logger.critical("loguru critical")
    try:
        _raise(ValueError(""))
    except ValueError:
        loguru_logger.exception("loguru exception")
    # record_exception
    with highlight_logging.context(session_id="sess-3", request_id="req-3"):
        highlight_logging.record_exception(
            PaymentError("reported"), attributes={"order": 9, "ok": True}, scope="golden.report", **settings
        )
    highlight_logging.record_exception(ValueError(), scope="golden.report", **settings)


_PATH = re.compile(r'File "([^"]+)", line \d+')


_CARETS = re.compile(r"^[ \t]*[\^~]+[ \t]*\n", re.MULTILINE)  # Python versions place them differently


def _stack(text: str) -> str:
    text = _PATH.sub(lambda m: f'File "{os.path.basename(m.group(1))}", line N', text)
    text = _CARETS.sub("", text)
    return re.sub(r"0x[0-9a-f]+", "0xADDR", text)


class _Norm:
    """Normalises what varies between runs, keeping the linkage between ids."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def id(self, value: str) -> str:
        if not value:
            return value
        return self.ids.setdefault(value, f"ID{len(self.ids)}")

    def attrs(self, attrs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for kv in attrs:
            key, value = kv["key"], kv.get("value", {})
            if key in ("process.pid", "thread.id", "code.line.number"):
                value = {"intValue": "N"}
            elif key == "telemetry.sdk.version":
                value = {"stringValue": "V"}
            elif key == "code.file.path":
                value = {"stringValue": os.path.basename(value["stringValue"])}
            elif key in ("exception.stacktrace", "code.stacktrace"):
                value = {"stringValue": _stack(value["stringValue"])}
            elif key == "thread.name":
                value = {"stringValue": "THREAD"}
            out.append({"key": key, "value": value})
        return out

    def record(self, record: dict[str, Any]) -> dict[str, Any]:
        record = dict(record)
        for key in ("timeUnixNano", "observedTimeUnixNano", "startTimeUnixNano", "endTimeUnixNano"):
            if key in record:
                record[key] = "T"
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in record:
                record[key] = self.id(record[key])
        if "attributes" in record:
            record["attributes"] = self.attrs(record["attributes"])
        if "events" in record:
            record["events"] = [
                {**e, "timeUnixNano": "T", "attributes": self.attrs(e.get("attributes", []))}
                for e in record["events"]
            ]
        return record


def snapshot(receiver: Receiver) -> dict[str, Any]:
    """What arrived, decoded and normalised, in arrival order."""
    norm = _Norm()
    out: dict[str, Any] = {"resources": [], "logs": [], "spans": []}

    def resource(res: dict[str, Any]) -> int:
        res = {"attributes": norm.attrs(res.get("attributes", []))}
        if res not in out["resources"]:
            out["resources"].append(res)
        return int(out["resources"].index(res))

    for request in receiver.requests_logs:
        for rl in MessageToDict(request)["resourceLogs"]:
            r = resource(rl["resource"])
            for sl in rl["scopeLogs"]:
                for record in sl["logRecords"]:
                    out["logs"].append({"resource": r, "scope": sl["scope"], **norm.record(record)})
    for request in receiver.requests_spans:
        for rs in MessageToDict(request)["resourceSpans"]:
            r = resource(rs["resource"])
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    out["spans"].append({"resource": r, "scope": ss["scope"], **norm.record(span)})
    return out


def run_records(receiver: Receiver) -> dict[str, Any]:
    try:
        _records(receiver.endpoint)
        assert highlight_logging.flush(10)
    finally:
        for name in ("golden.std", "golden.withheld"):
            logging.getLogger(name).handlers.clear()
        logging._levelToName.pop(23, None)  # type: ignore[attr-defined]
        logging._nameToLevel.pop("GOLDEN", None)  # type: ignore[attr-defined]
        structlog.reset_defaults()
        loguru_logger.remove()
    return snapshot(receiver)


def test_otel_shape_is_unchanged(receiver: Receiver) -> None:
    """Every record, exception and value type of the fixed set arrives exactly as pinned."""
    got = run_records(receiver)
    text = json.dumps(got, indent=1, sort_keys=False, ensure_ascii=False) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")
