"""What a front end is bound to: its settings, resolved once, and the sink its records go to.

A front end builds a :class:`Binding` in ``__init__`` and calls :meth:`Binding.get` per record; the
sink is our pipeline, the ``use_otel_providers`` sink, or a ``testing.capture()``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

from highlight_logging._core import diag as _diag
from highlight_logging._core import settings as _settings
from highlight_logging._core.record import Pending
from highlight_logging._core.settings import Settings
from highlight_logging._export import process as _process
from highlight_logging._export import threads as _threads

# Loggers that talk about exporting: never sent through a pipeline (no feedback loop).
INTERNAL_LOGGERS = ("highlight_logging", "grpc._channel", "grpc._common", "grpc._cython")


class Sink(Protocol):
    """What a front end submits to: a Pipeline, a _providers.ProviderPipeline, a testing capture.
    Each turns what it is given into a :class:`Record` with :func:`to_record`."""

    settings: Settings

    def submit(self, record: Pending) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...


class Capturing(Protocol):
    def sink(self, settings: Settings) -> Sink: ...


#: Set by ``highlight_logging.testing.capture()``: while not None, every record goes to it.
capture: Capturing | None = None


class Binding:
    """A front end's settings, resolved once and again only after ``configure()``."""

    __slots__ = ("_generation", "keywords", "pipeline", "settings")

    def __init__(self, keywords: Mapping[str, Any]) -> None:
        self.keywords = _settings.check_keywords(keywords)
        self._resolve()

    def _resolve(self) -> None:
        self.settings: Settings = _settings.resolve(self.keywords)
        self.pipeline: Sink | None = None
        s = self.settings
        if not (s.disabled or s.use_otel_providers or s.project_id or _settings.project_header(s)) and (
            _settings.sends_to_highlight(s)
        ):
            # highlight.io drops records without a project and still answers OK: say so now, once,
            # since stats() will count them as exported.
            _diag.warn(
                "logs go to highlight.io but no project id is set (project_id= or "
                "HIGHLIGHT_PROJECT_ID): highlight.io will drop every record",
                key="no-project-id",
            )
        if self.settings.disabled:
            pass
        elif self.settings.use_otel_providers:
            # Imported only when used: loaded in every process, it let pool workers sleep through
            # SIGTERM (tests/test_sigterm_race.py, under load).
            from highlight_logging import _providers

            self.pipeline = _providers.get(self.settings)
        else:
            self.pipeline = _process.get(self.settings)
        self._generation = _settings.generation

    def get(self) -> Sink | None:
        """The pipeline to submit to, or None when disabled or on an export worker thread."""
        if self._generation != _settings.generation:
            self._resolve()
        if threading.get_ident() in _threads.worker_threads:
            return None
        if capture is not None:
            return capture.sink(self.settings)
        return self.pipeline


def set_capture(hook: Capturing | None) -> None:
    """Route every record to ``hook`` (``testing.capture()``), or back to the pipelines with None."""
    global capture
    capture = hook
