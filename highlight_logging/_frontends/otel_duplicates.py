"""Say once, on stderr, when OpenTelemetry's own logging handler exports the records we export.

``opentelemetry-instrument`` with opentelemetry-distro and opentelemetry-instrumentation-logging
at their defaults puts OpenTelemetry's ``LoggingHandler`` on the root logger with
``OTEL_LOGS_EXPORTER=otlp``: next to a ``HighlightHandler`` every record is then sent twice, in
both of our modes.  We say so, naming the remedy for the mode in use, rather than removing or
muting their handler: the instrumentation puts it back after every ``dictConfig``/``basicConfig``,
it exports records unscrubbed, and one variable turns it off cleanly (see docs/opentelemetry.md).

Nothing is imported: their handler is recognised by its class's module (``opentelemetry.*``),
which is where it lives whichever package it came from (the SDK's deprecated one, the
instrumentation's, or one the app added itself).  Checked when a ``HighlightHandler`` is made
(root logger) and at its first record (that record's path to the root), and at a
``StructlogProcessor``'s first event on a stdlib logger.
"""

from __future__ import annotations

import logging
import os

from highlight_logging._core import diag as _diag
from highlight_logging._core.settings import Settings

# Their handler still converts every record when its export is off (measured: docs/performance.md).
_OFF_COST = "each logging call then costs about twice as much"


def otel_handler(logger_name: str | None = None) -> tuple[logging.Handler, str] | None:
    """An OpenTelemetry logging handler that records of ``logger_name`` reach (walking up while
    they propagate, as ``logging`` does), with the name of the logger it is on; None if none."""
    logger: logging.Logger | None = logging.root
    if logger_name:
        found = logging.Logger.manager.loggerDict.get(logger_name)
        if isinstance(found, logging.Logger):
            logger = found
    while logger is not None:
        for handler in list(logger.handlers):
            if type(handler).__module__.startswith("opentelemetry."):
                return handler, logger.name
        if not logger.propagate:
            return None
        logger = logger.parent
    return None


def check(settings: Settings, logger_name: str | None = None, front: str = "HighlightHandler") -> None:
    """Warn once if records reaching our handler are also exported by OpenTelemetry's handler."""
    try:
        found = otel_handler(logger_name)
        if found is None:
            return
        providers = settings.use_otel_providers
        exports = os.environ.get("OTEL_LOGS_EXPORTER", "").strip().lower() != "none"
        if not providers and not exports:
            return  # it converts every record for nothing, but sends nothing twice (docs/opentelemetry.md)
        _diag.warn(message(found[0], found[1], providers, front), key=f"otel-duplicates:{providers}")
    except Exception:  # a check for the user's benefit never gets in the way of logging
        pass


def check_wrapped(settings: Settings, logger: object) -> None:
    """:func:`check` for a structlog event: only one on a stdlib ``Logger`` goes through ``logging``."""
    if issubclass(type(logger), logging.Logger):  # type(): never the object's own __class__
        check(settings, getattr(logger, "name", None), "StructlogProcessor")


def message(
    handler: logging.Handler, logger_name: str, providers: bool, front: str = "HighlightHandler"
) -> str:
    module = type(handler).__module__
    where = "the root logger" if logger_name == "root" else f"logger {logger_name!r}"
    ours = f"{front}(use_otel_providers=True)" if providers else front
    theirs = f"OpenTelemetry's {type(handler).__name__} ({module})"
    if module.startswith("opentelemetry.instrumentation.logging"):
        remedy = "set OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION=false"
        if providers:
            remedy += " (and keep OTEL_LOGS_EXPORTER: our records are exported through your LoggerProvider)"
        else:
            remedy += f" (or OTEL_LOGS_EXPORTER=none, which stops its export but not its work: {_OFF_COST})"
    elif module.startswith("opentelemetry.sdk"):
        remedy = "unset OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED, or remove that handler"
    else:
        remedy = "remove that handler"
    sent = "emits the same records on the same LoggerProvider" if providers else "exports the same records"
    return (
        f"{theirs} is on {where} next to {ours} and {sent}: every record is sent twice. "
        f"To send each once, {remedy}. See docs/opentelemetry.md in highlight_logging."
    )
