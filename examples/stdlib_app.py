"""The stdlib logging front end, configured with dictConfig: the shortest correct setup.

The endpoint comes from OTEL_EXPORTER_OTLP_ENDPOINT (``make demo`` points it at the local
receiver); without it, records go to highlight.io's hosted collector over TLS.
"""

import logging
import logging.config

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "highlight": {
                "class": "highlight_logging.HighlightHandler",
                "level": "INFO",
                "service_name": "stdlib-demo",
                "environment": "dev",
            },
        },
        "root": {"level": "INFO", "handlers": ["highlight"]},
    }
)

log = logging.getLogger("shop.checkout")


def charge(order_id: int, amount: float) -> None:
    try:
        raise ConnectionError("card processor timed out")
    except ConnectionError as exc:
        raise RuntimeError(f"could not charge order {order_id}") from exc


log.info("order %s placed by %s", 1042, "ada", extra={"order_id": 1042, "items": ["book", "pen"]})
log.warning("slow response", extra={"elapsed_ms": 812.5, "password": "never-exported"})
try:
    charge(1042, 19.99)
except RuntimeError:
    log.exception("checkout failed", extra={"order_id": 1042})
# Nothing else to do: records are flushed at interpreter exit, within a 3 s deadline.
