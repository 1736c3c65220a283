"""An app for the viewer's tests and screenshots: logs through all three front ends, inside the app's own
OpenTelemetry spans and highlight.io request contexts, errors that group, and hostile values.

Run as ``python tests/viewer_app.py GRPC_ENDPOINT``; exits once everything was delivered.
"""

from __future__ import annotations

import logging
import sys

import structlog
from loguru import logger as loguru_logger
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import highlight_logging
from highlight_logging import HighlightHandler, LoguruSink, StructlogProcessor

#: Values that would run script if the page ever treated a record as HTML or as a link.
HOSTILE = {
    "script": "<script>window.__xss = 'script'</script>",
    "img": "<img src=x onerror=\"window.__xss = 'img'\">",
    "js_url": "javascript:window.__xss='href'",
}


class OrderError(Exception):
    pass


def load_order(order_id: int) -> None:
    charge(order_id)


def charge(order_id: int) -> None:
    raise OrderError(f"card declined for order {order_id}")


def main(endpoint: str) -> None:
    highlight_logging.configure(endpoint=endpoint, service_name="shop", schedule_delay=0.2)
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = provider.get_tracer("shop.http")

    std = logging.getLogger("shop.orders")
    std.setLevel(logging.DEBUG)
    std.propagate = False
    std.addHandler(HighlightHandler())
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            StructlogProcessor(),
            structlog.processors.KeyValueRenderer(),
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    slog = structlog.get_logger("shop.cart")
    loguru_logger.remove()
    loguru_logger.add(LoguruSink(), level="DEBUG")

    for n, order_id in enumerate((42, 1337)):
        with (
            highlight_logging.context(f"session-{n}", f"request-{n}"),
            tracer.start_as_current_span(f"GET /orders/{order_id}", kind=trace.SpanKind.SERVER) as span,
        ):
            span.set_attribute("http.route", "/orders/{order_id}")
            std.info("loading order %s", order_id, extra={"order_id": order_id, "user": "ada"})
            with tracer.start_as_current_span("SELECT orders"):
                slog.info("cart loaded", items=3, order_id=order_id)
            loguru_logger.bind(order_id=order_id).warning("payment provider slow: {} ms", 120 + n)
            try:
                load_order(order_id)
            except OrderError:
                std.exception("order %s failed", order_id)
    std.debug("a debug line from stdlib")
    slog.warning("a warning from structlog", component="cart")
    loguru_logger.error("an error line from loguru without exception")
    std.info("long body: %s", "lorem ipsum dolor sit amet " * 120)
    std.warning(HOSTILE["script"], extra=HOSTILE)
    slog.warning(HOSTILE["img"], **HOSTILE)
    loguru_logger.bind(**HOSTILE).warning(HOSTILE["js_url"])
    std.info("the last line")
    provider.shutdown()
    if not highlight_logging.flush(20):
        raise SystemExit("not delivered")
    highlight_logging.shutdown(5)


if __name__ == "__main__":
    main(sys.argv[1])
