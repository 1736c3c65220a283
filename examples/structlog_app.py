"""structlog -> OTLP.  Run with a collector address in the environment, e.g.

highlight-logging serve --port 4317 &
OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 python examples/structlog_app.py
"""

from __future__ import annotations

import structlog

from highlight_logging import StructlogProcessor

structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        # No endpoint here: OTEL_EXPORTER_OTLP_ENDPOINT decides.  Just before the renderer, so
        # it sees the finished event dict and the renderer still prints it.
        StructlogProcessor(service_name="structlog-demo"),
        structlog.dev.ConsoleRenderer(),
    ],
)

log = structlog.get_logger().bind(logger="demo")  # the "logger" key names the OTLP scope


def charge(order_id: int, amount: str) -> None:
    try:
        float(amount)
    except ValueError as exc:
        raise RuntimeError(f"payment for order {order_id} failed") from exc


def main() -> None:
    structlog.contextvars.bind_contextvars(request_id="req-42")
    order = log.bind(order_id=1001, items=3)
    order.info("order received", total=59.90)
    order.warning("stock low", sku="A-7", remaining=2)
    try:
        charge(1001, "59,90")
    except RuntimeError:
        order.exception("order failed")
    # Nothing to flush by hand: queued records are delivered at interpreter exit.


if __name__ == "__main__":
    main()
