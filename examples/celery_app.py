"""Celery with a prefork pool: add the handler from Celery's logging signals, flush in each child.

Run a worker (from examples/), then send tasks from any process that imports this module:
    celery -A celery_app worker --pool=prefork --concurrency=2 --without-gossip --without-mingle
    python -c "import celery_app; celery_app.greet.delay('ada'); celery_app.fail.delay()"
The broker is kombu's filesystem transport under $CELERY_BROKER_DIR (no server needed). The
endpoint comes from OTEL_EXPORTER_OTLP_ENDPOINT. `python celery_app.py` runs both tasks in-process.
"""

import logging
import os
import tempfile

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_process_init,
    worker_process_shutdown,
)
from celery.utils.log import get_task_logger

import highlight_logging

broker_dir = os.environ.get("CELERY_BROKER_DIR") or os.path.join(tempfile.gettempdir(), "celery-demo-broker")
for folder in ("queue", "control"):
    os.makedirs(os.path.join(broker_dir, folder), exist_ok=True)

app = Celery("celery_app", broker="filesystem://localhost/")
app.conf.broker_transport_options = {
    "data_folder_in": os.path.join(broker_dir, "queue"),
    "data_folder_out": os.path.join(broker_dir, "queue"),
    "control_folder": os.path.join(broker_dir, "control"),
    "polling_interval": 0.1,
}
log = get_task_logger(__name__)


# The worker replaces the root logger's handlers ("worker_hijack_root_logger") and gives task
# loggers their own handler that does not propagate, so add ours after it has done both.
@after_setup_logger.connect
@after_setup_task_logger.connect
def add_highlight_handler(logger: logging.Logger, **_: object) -> None:
    logger.addHandler(highlight_logging.HighlightHandler(service_name="celery-demo"))


@worker_process_init.connect
def init_pool_child(sender: str, **_: object) -> None:
    # Runs in each pool child after the fork; the child already has a fresh exporter of its own.
    # Settings that depend on the child go here (sender is the worker's hostname):
    highlight_logging.configure(resource_attributes={"service.instance.id": f"{sender}/{os.getpid()}"})


@worker_process_shutdown.connect
def flush_pool_child(**_: object) -> None:
    # Pool children end with os._exit(), which skips exit hooks: deliver their records now.
    highlight_logging.flush()


@app.task(name="celery_app.greet")
def greet(name: str) -> str:
    log.info("hello %s from a celery task", name, extra={"user": name})
    return f"hello {name}"


@app.task(name="celery_app.fail")
def fail() -> None:
    # Celery logs the failure ("Task celery_app.fail[...] raised unexpected: ...") with exc_info.
    raise RuntimeError("celery task failed")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    add_highlight_handler(logging.getLogger())
    greet.apply(args=["ada"])
    fail.apply()
