"""A WSGI app for gunicorn with --preload: logging is set up once, at import, in the master.

Serve it (from examples/):  gunicorn -c gunicorn.conf.py gunicorn_app:app
gunicorn.conf.py sets preload_app and workers; the endpoint comes from
OTEL_EXPORTER_OTLP_ENDPOINT. `python gunicorn_app.py` calls the app once, without gunicorn.
"""

import logging
import logging.config
from collections.abc import Callable, Iterable
from typing import Any

logging.config.dictConfig(
    {
        "version": 1,
        # Keep gunicorn's own loggers ("gunicorn.error", "gunicorn.access") working.
        "disable_existing_loggers": False,
        "handlers": {
            "highlight": {"class": "highlight_logging.HighlightHandler", "service_name": "gunicorn-demo"},
        },
        "root": {"level": "INFO", "handlers": ["highlight"]},
    }
)
log = logging.getLogger("gunicorn_app")
log.info("app imported")  # with --preload: once, in the master, before the workers are forked


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    log.info("request %s", environ.get("PATH_INFO", "/"))  # in whichever worker serves it
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]


if __name__ == "__main__":
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    app(environ, lambda status, headers: None)
