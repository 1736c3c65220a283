"""A WSGI app for uWSGI: logging is set up at import, as Django and Flask apps do.

Serve it (from examples/), with the flags docs/frameworks.md explains:
    uwsgi --master --processes 2 --die-on-term --http-socket 127.0.0.1:8000 --wsgi-file uwsgi_app.py
uWSGI loads the app once in the master and forks the workers without Python's fork hooks;
highlight_logging notices each new worker by itself (nothing of the master's is sent twice), so
no --lazy-apps or --py-call-uwsgi-fork-hooks is needed, and a worker delivers its last records
when it exits.  The endpoint comes from OTEL_EXPORTER_OTLP_ENDPOINT.
`python uwsgi_app.py` calls the app once, without uWSGI.
"""

import logging
import logging.config
from collections.abc import Callable, Iterable
from typing import Any

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "highlight": {"class": "highlight_logging.HighlightHandler", "service_name": "uwsgi-demo"},
        },
        "root": {"level": "INFO", "handlers": ["highlight"]},
    }
)
log = logging.getLogger("uwsgi_app")
log.info("app imported")  # in the master by default; in each worker with --lazy-apps


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    log.info("request %s", environ.get("PATH_INFO", "/"))  # in whichever worker serves it
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]


if __name__ == "__main__":
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    application(environ, lambda status, headers: None)
