"""Flask: one handler on the root logger; Flask's own error log arrives as an exception + span.

Serve it (from examples/):  flask --app flask_app run
The endpoint comes from OTEL_EXPORTER_OTLP_ENDPOINT; `python flask_app.py` calls both routes once.
"""

import logging

from flask import Flask

import highlight_logging

# Before the app logs anything: app.logger then finds a handler and adds no default one of its own.
logging.basicConfig(level=logging.INFO)  # keep console output
logging.getLogger().addHandler(highlight_logging.HighlightHandler(service_name="flask-demo"))

app = Flask(__name__)
log = logging.getLogger(__name__)


@app.get("/")
def index() -> str:
    log.info("hello from flask", extra={"user_id": 42})
    return "ok\n"


@app.get("/boom")
def boom() -> str:
    # Unhandled: Flask answers 500 and logs it with app.logger.exception("Exception on /boom [GET]").
    raise RuntimeError("flask route failed")


if __name__ == "__main__":
    client = app.test_client()
    client.get("/")
    client.get("/boom")
    # Records are flushed at interpreter exit.
