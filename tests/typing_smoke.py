"""Typing smoke test: the documented public API, used as the docs show, under ``mypy --strict``.

Checked by ``mypy --strict tests/typing_smoke.py`` (pytest does not collect it).  It also runs:
``python tests/typing_smoke.py`` exercises every call with ``disabled=True``, so nothing is sent.
"""

from __future__ import annotations

import logging
import logging.config
import wsgiref.simple_server
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import structlog
from loguru import logger
from typing_extensions import assert_type

import highlight_logging
from highlight_logging import (
    HighlightASGIMiddleware,
    HighlightHandler,
    HighlightWSGIMiddleware,
    LoguruSink,
    StructlogProcessor,
)
from highlight_logging.testing import Capture, CapturedLog, CapturedSpan, capture


def stdlib_logging() -> None:
    handler = HighlightHandler(logging.INFO, project_id="p", service_name="svc", disabled=True)
    logging.getLogger("smoke").addHandler(handler)
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "highlight": {
                    "class": "highlight_logging.HighlightHandler",
                    "project_id": "p",
                    "disabled": True,
                },
            },
            "loggers": {"smoke.dict": {"level": "INFO", "handlers": ["highlight"]}},
        }
    )
    logging.getLogger("smoke").removeHandler(handler)


def structlog_chain() -> None:
    processor = StructlogProcessor(project_id="p", drop=False, disabled=True)
    log = structlog.wrap_logger(
        structlog.PrintLogger(),
        processors=[structlog.processors.add_log_level, processor, structlog.processors.KeyValueRenderer()],
    )
    log.debug("smoke", k=1)


def loguru_sink() -> None:
    sink_id = logger.add(LoguruSink(project_id="p", disabled=True), level="INFO")
    assert_type(sink_id, int)
    logger.remove(sink_id)


def module_functions() -> None:
    highlight_logging.configure(service_name="svc", environment="test", disabled=True)
    assert_type(highlight_logging.flush(), bool)
    assert_type(highlight_logging.flush(1.5), bool)
    assert_type(highlight_logging.stats(), dict[str, Any])
    with highlight_logging.context(session_id="s", request_id="r"):
        pass
    with highlight_logging.context(session_id=None):
        pass
    try:
        raise ValueError("smoke")
    except ValueError as exc:
        assert_type(highlight_logging.record_exception(), bool)
        assert_type(highlight_logging.record_exception(exc, attributes={"order": 1}, scope="pay"), bool)
    assert_type(highlight_logging.shutdown(1.0), bool)


def testing_capture() -> None:
    with capture() as cap:
        assert_type(cap, Capture)
        logging.getLogger("smoke").warning("captured")
    logs: list[CapturedLog] = cap.logs
    spans: list[CapturedSpan] = cap.spans
    for log in logs:
        assert_type(log["body"], Any)
        assert_type(log["attributes"], dict[str, Any])
        assert_type(log["severity_number"], int)
        assert_type(log["trace_id"], str)
    for span in spans:
        assert_type(span["events"][0]["name"], str)
    cap.clear()


def wsgi_middleware() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    wrapped = HighlightWSGIMiddleware(app)
    server = wsgiref.simple_server.make_server("127.0.0.1", 0, wrapped)  # a WSGIApplication
    server.server_close()


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


async def asgi_app(
    scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})


def asgi_middleware() -> HighlightASGIMiddleware:
    return HighlightASGIMiddleware(asgi_app)


if __name__ == "__main__":
    stdlib_logging()
    structlog_chain()
    loguru_sink()
    module_functions()
    testing_capture()
    wsgi_middleware()
    asgi_middleware()
    print("typing smoke: ok")
