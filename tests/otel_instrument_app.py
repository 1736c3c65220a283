"""A Flask app as a new user writes it, run by tests/test_otel_instrument.py under ``opentelemetry-instrument``.

``HighlightHandler`` on the root logger, nothing else; OpenTelemetry's distro, its Flask and logging
instrumentations and its OTLP exporters are configured by the environment only.
``HL_MODE=providers`` selects ``use_otel_providers=True``; ``HL_DICTCONFIG=1`` sets the handler up
through ``dictConfig``.  Serves on 127.0.0.1:<argv[1]> with Flask's dev server until SIGTERM
(default action), or until ``/exit`` ends it normally.
"""

import logging
import logging.config
import os
import signal
import sys
import threading

from flask import Flask

import highlight_logging

SETTINGS = {
    "service_name": "otel-instrument-app",
    "use_otel_providers": os.environ.get("HL_MODE") == "providers",
    "shutdown_timeout": float(os.environ.get("HL_SHUTDOWN_TIMEOUT", "3")),
}
if os.environ.get("HL_DICTCONFIG"):
    # The instrumentation takes its handler off the root while dictConfig runs, then puts it back.
    logging.config.dictConfig(
        {
            "version": 1,
            "handlers": {"highlight": {"class": "highlight_logging.HighlightHandler", **SETTINGS}},
            "root": {"level": "INFO", "handlers": ["highlight"]},
        }
    )
else:
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger().addHandler(highlight_logging.HighlightHandler(**SETTINGS))

app = Flask(__name__)
log = logging.getLogger("otel_app")


@app.get("/log/<int:n>")
def log_one(n: int) -> str:
    log.info("record %d", n, extra={"n": n})
    return "ok\n"


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("route failed")  # Flask logs it with app.logger.exception(...), answers 500


@app.get("/exit")
def exit_() -> str:
    # A normal interpreter exit (atexit runs) a moment after this answer is sent.
    threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    return "bye\n"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), use_reloader=False)
