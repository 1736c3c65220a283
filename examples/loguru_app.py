"""The loguru front end: one ``logger.add`` and loguru's own bind/contextualize become attributes.

The endpoint comes from OTEL_EXPORTER_OTLP_ENDPOINT (``make demo`` points it at the local
receiver); without it, records go to highlight.io's hosted collector over TLS.
"""

import sys

from loguru import logger

from highlight_logging import LoguruSink

logger.remove()  # drop loguru's default stderr handler, then add both explicitly
logger.add(sys.stderr, level="INFO")
logger.add(LoguruSink(service_name="loguru-demo", environment="dev"), level="INFO")


def charge(order_id: int, amount: float) -> None:
    try:
        raise ConnectionError("card processor timed out")
    except ConnectionError as exc:
        raise RuntimeError(f"could not charge order {order_id}") from exc


log = logger.bind(order_id=1042, items=["book", "pen"])
with logger.contextualize(request_id="req-7f3a"):
    log.info("order placed by {}", "ada")
    log.success("payment authorised for {:.2f}", 19.99)
    try:
        charge(1042, 19.99)
    except RuntimeError:
        log.exception("checkout failed")

# remove() stops each sink: ours delivers what it holds before returning (within shutdown_timeout).
# Without it the exit hook would do the same.
logger.remove()
