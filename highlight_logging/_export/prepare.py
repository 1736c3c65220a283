"""A record made ready to send: scrubbed, its exception and span attributes, the resource and the
scope, encoded to OTLP protobuf bytes (``encode``).

:class:`RecordEncoder` needs no pipeline: the export worker's general path, ``_providers`` (the
app's own OpenTelemetry providers) and ``highlight_logging.testing`` all use it, so each sends the
same attributes.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from highlight_logging._core import highlight as _highlight
from highlight_logging._core.coerce import truncate
from highlight_logging._core.record import SPAN_ATTR_PREFIXES, Attributes, ExceptionInfo, Record, Value
from highlight_logging._core.settings import Settings
from highlight_logging._export import encode as _encode
from highlight_logging._version import __version__

if TYPE_CHECKING:
    from highlight_logging._core.scrub import Scrubber


def make_scrubber(settings: Settings) -> Scrubber | None:
    """The scrubber ``settings`` ask for (None: scrubbing is off)."""
    # Imported here: compiling its rules is paid by the first pipeline that scrubs, not by import.
    from highlight_logging._core import scrub

    return scrub.from_settings(settings)


def exception_attributes(
    exc: ExceptionInfo, settings: Settings, scrubber: Scrubber | None
) -> tuple[Attributes, list[str]]:
    """The ``exception.*`` attributes of ``exc``, scrubbed and cut to the limits, and what was scrubbed."""
    event_attrs: Attributes = {"exception.type": exc.type}
    scrubbed: list[str] = []
    message: str | None = exc.message
    if message is not None:
        if scrubber is not None:
            message, found = scrubber.scrub_text(message, "exception.message")
            scrubbed += found
        message = event_attrs["exception.message"] = truncate(message, settings.attribute_value_length_limit)
    if settings.backend == "highlight":
        # The error's title: never empty, or highlight.io makes no error at all.
        event_attrs["exception.message"] = _highlight.exception_title(message, exc.type)
    stack = exc.stacktrace
    if scrubber is not None:
        stack, found = scrubber.scrub_text(stack, "exception.stacktrace")
        scrubbed += found
    if settings.backend == "highlight":
        stack = _highlight.stacktrace(stack)
    event_attrs["exception.stacktrace"] = truncate(
        stack, max(settings.attribute_value_length_limit, settings.max_body_length)
    )
    return event_attrs, scrubbed


def span_attributes(attrs: Attributes, report: bool) -> Attributes:
    """The exception span's attributes: ours (code.*, thread.*, highlight.*), or for an error
    report (``span_only``), whose span is all there is, every attribute but exception.*."""
    if report:
        return {k: v for k, v in attrs.items() if not k.startswith("exception.")}
    return {k: v for k, v in attrs.items() if k.startswith(SPAN_ATTR_PREFIXES)}


def _process_name() -> str:
    return os.path.basename(sys.executable or "") or "python"


def resource_attributes(settings: Settings) -> Attributes:
    """The resource every request carries: the SDK, the process, the service and its environment."""
    s = settings
    attrs: Attributes = {
        "telemetry.sdk.name": "highlight_logging",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": __version__,
        "process.pid": os.getpid(),
    }
    attrs.update(dict(s.resource_attributes))
    if s.service_name:
        attrs["service.name"] = s.service_name
    attrs.setdefault("service.name", f"unknown_service:{_process_name()}")
    if s.service_version:
        attrs["service.version"] = s.service_version
    if s.backend == "highlight":
        # highlight.io reads deployment.environment (semconv 1.25) or environment, not .name.
        name = attrs.pop("deployment.environment.name", None)
        if s.environment or name is not None:
            attrs.setdefault("deployment.environment", s.environment or name)
    elif s.environment:
        attrs["deployment.environment.name"] = s.environment
    if s.project_id:
        attrs["highlight.project_id"] = s.project_id
    return attrs


class RecordEncoder:
    """Record -> bytes for one :class:`Settings`: scrubbing, limits, the highlight shape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.scrubber = make_scrubber(settings)
        # The highlight shape (_core.highlight): exceptions travel on their log records only, so every
        # record is one log and none is a span.
        self.highlight = settings.backend == "highlight"
        self.scrubbed = 0  # values scrubbed (written by the worker only; read by stats())
        self.resource = b""
        self.renew()

    def renew(self) -> None:
        """In a new process (after fork): its own process.pid, and nothing scrubbed here yet."""
        self.scrubbed = 0
        self.resource = _encode.resource(resource_attributes(self.settings))

    def scope(self, name: str) -> bytes:
        """An InstrumentationScope; in the highlight shape its name is also an attribute, ``logger``
        (highlight.io reads scope attributes, never the name), written once per request."""
        if self.highlight:
            return _encode.scope(name, attrs={"logger": name})
        return _encode.scope(name)

    def scrub(self, record: Record, clean: bool = False) -> tuple[str, Attributes, Attributes]:
        """(body, attributes, exception event attributes), scrubbed and limited; the attributes
        hold the exception's and ``highlight.scrubbed`` (what was scrubbed), not the site's.

        ``clean``: the body and attributes are known to need no scrubbing (checked for a whole
        chunk at once); an exception's texts are scrubbed regardless.
        """
        exc = record.exception
        attrs = record.attributes
        body = record.body
        event_attrs: Attributes = {}
        if not clean or exc is not None:  # else (the common case) the record is sent as it is
            scrubbed: list[str] = []
            scrubber = self.scrubber
            if scrubber is not None and not clean:
                attrs, scrubbed = scrubber.scrub_attributes(attrs)
                body, found = scrubber.scrub_text(body, "body")
                if found:
                    scrubbed = scrubbed + found
            if exc is not None:
                event_attrs, found = exception_attributes(exc, self.settings, scrubber)
                scrubbed = scrubbed + found
                attrs = {**attrs, **event_attrs}
            if scrubbed:
                attrs = {**attrs, "highlight.scrubbed": list[Value](scrubbed)}
                self.scrubbed += len(scrubbed)
        return body, attrs, event_attrs

    def prepare(self, record: Record) -> tuple[str, Attributes, Attributes]:
        """:meth:`scrub` with the site's code.*/thread.* attributes first (never scrubbed), in a
        dict of its own: what an OpenTelemetry SDK's log record and span are given (``_providers``)."""
        body, attrs, event_attrs = self.scrub(record)
        site = record.site
        if site:
            attrs = {**dict(zip(site[0], site[1:], strict=False)), **attrs}
        elif attrs is record.attributes:
            attrs = dict(attrs)
        return body, attrs, event_attrs

    def encode(self, record: Record, clean: bool = False) -> tuple[bytes, bytes | None]:
        """One record -> (LogRecord bytes, exception Span bytes or None)."""
        exc = record.exception
        event_attrs: Attributes
        if clean and exc is None:  # the common case: sent as it is (no call into scrub())
            body, attrs, event_attrs = record.body, record.attributes, {}
        else:
            body, attrs, event_attrs = self.scrub(record, clean)
        severity_text = record.severity_text
        if self.highlight:
            severity_text = _highlight.severity_text(record.severity_number)
            body = _highlight.body(body)
        log = _encode.log_record(
            record.time_ns,
            record.observed_ns,
            record.severity_number,
            severity_text,
            body,
            attrs,
            record.dropped_attributes,
            record.trace_id,
            record.span_id,
            record.flags,
            record.site,
        )
        if exc is None or self.highlight:  # highlight: the log's exception.* make the one error
            return log, None
        span_attrs = span_attributes(attrs, report=record.span_only)
        if record.site is not None:
            span_attrs = {**_encode.site_dict(record.site), **span_attrs}
        span = _encode.exception_span(
            record.trace_id,
            record.span_id,
            record.parent_span_id,
            record.flags,
            exc.type,
            record.time_ns,
            span_attrs,
            event_attrs,
            str(event_attrs.get("exception.message", exc.type)),
        )
        return log, span
