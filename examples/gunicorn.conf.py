"""gunicorn settings for gunicorn_app.py: preloaded app, several workers.

With preload_app the master imports the app, so the app's logging (and highlight_logging's
exporter) is set up once, there. Each forked worker gets a fresh, empty exporter automatically:
records the master had queued are sent by the master only, never twice.
"""

import logging

import highlight_logging

bind = "127.0.0.1:8000"
workers = 3
preload_app = True


def post_fork(server, worker):
    # Runs in each new worker, right after the fork: the place for per-worker setup, for example
    # highlight_logging.configure(resource_attributes={...}). Logging already works here.
    logging.getLogger("gunicorn_app").info("worker booted", extra={"worker_age": worker.age})


def worker_exit(server, worker):
    # Deliver this worker's last records before it exits (within shutdown_timeout).
    highlight_logging.flush()
