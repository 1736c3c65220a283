"""One process, three front ends: one configure(), one pipeline, one worker, shared requests."""

from __future__ import annotations

import logging

import structlog
from loguru import logger as loguru_logger

import highlight_logging
from highlight_logging import HighlightHandler, LoguruSink, StructlogProcessor
from highlight_logging._devtools.receiver import Receiver
from highlight_logging._export import process as _process


def test_three_front_ends_share_requests_resource_and_worker(receiver: Receiver) -> None:
    """stdlib, structlog and loguru records travel in the same requests, under one resource, via one worker."""
    highlight_logging.configure(endpoint=receiver.endpoint, service_name="all-three", schedule_delay=30)
    std = logging.getLogger("three.stdlib")
    std.propagate = False
    handler = HighlightHandler()
    std.addHandler(handler)
    std.addHandler(HighlightHandler())  # the same settings again: no second pipeline
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            StructlogProcessor(),
            structlog.processors.KeyValueRenderer(),
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    loguru_logger.remove()
    loguru_logger.add(LoguruSink())
    try:
        std.warning("from logging")
        structlog.get_logger("three.structlog").warning("from structlog")
        loguru_logger.warning("from loguru")
        assert len(_process.pipelines()) == 1
        (pipeline,) = _process.pipelines()
        assert pipeline._worker is not None and pipeline._worker.is_alive()
        assert highlight_logging.flush(10)
        requests = receiver.requests_logs
        assert len(requests) == 1  # one batch, one request
        (resource_logs,) = requests[0].resource_logs
        bodies = sorted(r.body.string_value for s in resource_logs.scope_logs for r in s.log_records)
        assert bodies == ["from logging", "from logging", "from loguru", "from structlog"]
        service = {a.key: a.value.string_value for a in resource_logs.resource.attributes}["service.name"]
        assert service == "all-three"
    finally:
        std.handlers.clear()
        structlog.reset_defaults()
        loguru_logger.remove()
