"""A record a front end loses to an error of its own is counted in stats() and named on stderr."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import structlog
from loguru import logger as loguru_logger

import highlight_logging
from highlight_logging import HighlightHandler, LoguruSink, StructlogProcessor
from highlight_logging._devtools.receiver import Receiver
from highlight_logging._frontends import handler as _handler
from highlight_logging._frontends import loguru as _loguru
from highlight_logging._frontends import structlog as _structlog


def _broken(*_: Any, **__: Any) -> Any:
    raise RuntimeError("unforeseen")


@pytest.mark.parametrize("front_end", ["HighlightHandler", "StructlogProcessor", "LoguruSink"])
def test_a_lost_record_is_counted_and_named(
    front_end: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = {"HighlightHandler": _handler, "StructlogProcessor": _structlog, "LoguruSink": _loguru}[
        front_end
    ]
    monkeypatch.setattr(module, "capture_record", _broken)
    if front_end == "HighlightHandler" and _handler._logrecord_event is not None:
        monkeypatch.setattr(_handler, "_logrecord_event", _broken)  # the C reading fails the same way
    monkeypatch.setattr(logging, "raiseExceptions", False)  # handleError's own traceback is not ours
    endpoint = receiver.endpoint
    if front_end == "HighlightHandler":
        log = logging.getLogger("losses")
        log.propagate = False
        log.addHandler(HighlightHandler(endpoint=endpoint))
        log.warning("one")
        log.warning("two")
        log.handlers.clear()
    elif front_end == "StructlogProcessor":
        structlog.configure(
            processors=[StructlogProcessor(endpoint=endpoint, drop=True)],
            logger_factory=structlog.ReturnLoggerFactory(),
            cache_logger_on_first_use=False,
        )
        slog = structlog.get_logger("losses")
        slog.warning("one")
        slog.warning("two")
        structlog.reset_defaults()
    else:
        loguru_logger.remove()
        loguru_logger.add(LoguruSink(endpoint=endpoint), catch=False)
        loguru_logger.warning("one")
        loguru_logger.warning("two")
        loguru_logger.remove()
    assert highlight_logging.stats()["logs"]["dropped"]["frontend_error"] == 2
    err = capsys.readouterr().err
    assert err.count(f"{front_end} lost a record: RuntimeError") == 1  # once, not per record
    assert "unforeseen" not in err  # the type only: a message may hold user data
