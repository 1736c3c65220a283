"""Celery's worker removes the root logger's handlers: say so when that silences ours.

A Celery worker sets up logging after it has imported the app: with ``worker_hijack_root_logger``
(the default) it empties the root logger's handler list, and its task loggers (``celery.task``,
parent of every ``get_task_logger``) do not propagate.  A ``HighlightHandler`` put on the root at
import, the way a user writes it first, is then gone without a word, and every record with it.
Re-attaching it behind the user's back could send records twice (the recipe adds one from Celery's
signals); instead, once the worker is ready, one warning names what is missing and the recipe.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from highlight_logging._core import diag as _diag

# Strong references: a handler Celery took off the root is garbage otherwise, and it is exactly the
# one whose absence must be named (a WeakSet lost it before worker_ready on CPython 3.12).
_handlers: list[logging.Handler] = []
_connected = False

RECIPE = "add it from Celery's after_setup_logger and after_setup_task_logger signals (the Celery recipe, docs/frameworks.md)"


def watch(handler: logging.Handler) -> None:
    """Called for each HighlightHandler made in a process that has imported Celery."""
    global _connected
    if not any(h is handler for h in _handlers):
        _handlers.append(handler)
    if _connected:
        return
    try:
        signals: Any = importlib.import_module("celery.signals")
        signals.worker_ready.connect(_check, weak=False)
        _connected = True
    except Exception:  # an unusual Celery: no check, never an error
        pass


def _reaches(logger: logging.Logger) -> bool:
    """A record logged on ``logger`` reaches one of our handlers."""
    current: logging.Logger | None = logger
    while current is not None:
        if any(h is mine for h in current.handlers for mine in _handlers):
            return True
        current = current.parent if current.propagate else None
    return False


def _check(**_: Any) -> None:
    if not _handlers:
        return
    if not _reaches(logging.getLogger()):
        _diag.warn(
            "Celery's worker removed HighlightHandler from the root logger "
            f"(worker_hijack_root_logger), so nothing logged there is exported: {RECIPE}",
            key="celery-hijack",
        )
    elif not _reaches(logging.getLogger("celery.task")):
        _diag.warn(
            "Celery's task loggers (get_task_logger) do not propagate to the root logger, so task "
            f"logs are not exported: {RECIPE}",
            key="celery-hijack",
        )
