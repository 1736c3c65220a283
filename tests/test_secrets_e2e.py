"""Secrets never leave the process, tried as a user would: default settings, a real receiver, every
front end; each secret shape logged as the message, as an extra under an innocent key, and inside an
exception's message (so in exception.message and exception.stacktrace, on the log record and on the
exception span's event).  What arrives is read as the bytes of every request, whatever its shape."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from loguru import logger as loguru_logger
from secret_samples import corpus, positives

import highlight_logging
from highlight_logging import HighlightHandler, LoguruSink, StructlogProcessor
from highlight_logging._core.scrub import RULES
from highlight_logging._core.settings import resolve
from highlight_logging._devtools.receiver import Receiver

SAMPLES = positives(51)


class Leak(Exception):
    pass


def _backends() -> list[dict[str, Any]]:
    """Every output shape this build has: the default, and highlight.io's where the setting exists
    (scrubbing acts on the neutral record, before any encoder)."""
    shapes: list[dict[str, Any]] = [{}]
    try:
        resolve({"backend": "highlight"})
    except (TypeError, ValueError):
        return shapes
    return [*shapes, {"backend": "highlight"}]


Log = Callable[[str, dict[str, Any], bool], None]


@pytest.fixture(params=["stdlib", "structlog", "loguru"])
def front_end(request: pytest.FixtureRequest) -> Iterator[Callable[..., Log]]:
    def make(**settings: Any) -> Log:
        if request.param == "stdlib":
            log = logging.getLogger("secrets.e2e")
            log.handlers.clear()
            log.propagate = False
            log.addHandler(HighlightHandler(**settings))

            def std(msg: str, extras: dict[str, Any], exc: bool) -> None:
                if exc:
                    log.exception(msg, extra=extras)
                else:
                    log.warning(msg, extra=extras)

            return std
        if request.param == "structlog":
            structlog.configure(
                processors=[StructlogProcessor(**settings), structlog.processors.KeyValueRenderer()],
                logger_factory=structlog.ReturnLoggerFactory(),
            )

            def sl(msg: str, extras: dict[str, Any], exc: bool) -> None:
                if exc:
                    structlog.get_logger().exception(msg, **extras)
                else:
                    structlog.get_logger().warning(msg, **extras)

            return sl
        loguru_logger.remove()
        loguru_logger.add(LoguruSink(**settings))

        def lg(msg: str, extras: dict[str, Any], exc: bool) -> None:
            if exc:
                loguru_logger.bind(**extras).exception(msg)
            else:
                loguru_logger.bind(**extras).warning(msg)

        return lg

    yield make
    structlog.reset_defaults()
    loguru_logger.remove()
    logging.getLogger("secrets.e2e").handlers.clear()


def _arrived(receiver: Receiver) -> bytes:
    return b"".join(r.SerializeToString() for r in [*receiver.requests_logs, *receiver.requests_spans])


def _scrubbed_entries(receiver: Receiver) -> set[str]:
    out: set[str] = set()
    for record in receiver.log_records():
        out.update(map(str, record.attributes.get("highlight.scrubbed") or []))  # type: ignore[union-attr]
    return out


@pytest.mark.parametrize("backend", _backends(), ids=lambda b: b.get("backend", "otlp"))
def test_no_secret_shape_arrives_from_any_front_end(
    front_end: Callable[..., Log], receiver: Receiver, backend: dict[str, Any]
) -> None:
    log = front_end(endpoint=receiver.endpoint, **backend)
    for sample in SAMPLES:
        log(f"connecting with {sample.text}", {}, False)
        log("connecting", {"note": sample.text, "ctx": {"detail": [sample.text]}}, False)
        try:
            raise Leak(f"could not connect using {sample.text}")
        except Leak:
            log("connect failed", {}, True)
        try:  # code with no source to show: the exception's line follows its File line
            exec("raise Leak(message)", {"Leak": Leak, "message": f"rejected {sample.text}"})
        except Leak:
            log("connect failed", {}, True)
    assert highlight_logging.flush(20)
    if backend:  # another shape: what arrives is its own; only that no secret does is asserted here
        receiver.wait_for_spans(2 * len(SAMPLES), 2)
        assert [s.rule for s in SAMPLES if s.secret.encode() in _arrived(receiver)] == []
        return
    assert receiver.wait_for_spans(2 * len(SAMPLES), 10)
    assert len(receiver.log_records()) == 4 * len(SAMPLES)
    arrived = _arrived(receiver)
    leaked = [s.rule for s in SAMPLES if s.secret.encode() in arrived]
    assert leaked == []
    entries = _scrubbed_entries(receiver)
    for rule in {r.name for r in RULES}:
        for path in ("body", "note", "ctx.detail", "exception.message", "exception.stacktrace"):
            assert f"{path}:{rule}" in entries, (path, rule)
    assert highlight_logging.stats()["logs"]["scrubbed"] >= 7 * len(SAMPLES)


def test_the_corpus_arrives_unchanged_end_to_end(front_end: Callable[..., Log], receiver: Receiver) -> None:
    """No false positive through the whole pipeline either."""
    log = front_end(endpoint=receiver.endpoint)
    texts = corpus()
    for text in texts:
        log(text, {"note": text}, False)
    assert highlight_logging.flush(20)
    records = receiver.log_records()
    assert [r.body for r in records] == texts
    assert [r.attributes["note"] for r in records] == texts
    assert not any("highlight.scrubbed" in r.attributes for r in records)
    assert highlight_logging.stats()["logs"]["scrubbed"] == 0
