"""At exit and on SIGTERM, flush the app's own OpenTelemetry providers too, within our deadline.

Our log records and exception spans point to spans the app's ``TracerProvider`` holds in its
``BatchSpanProcessor`` (a request's server span is exported up to 5 s after it ends), and with
``use_otel_providers=True`` our records wait in the app's ``LoggerProvider``.  SIGTERM with its
default action skips the SDK's own exit hook, so without this the backend gets logs whose trace
never arrives.  :func:`begin` is called by ``_export.process.shutdown_all`` (exit, SIGTERM, ``shutdown()``).

* Only providers the app has set are flushed: nothing is imported here, and an API module that was
  never imported cannot hold a provider; a provider without ``force_flush`` (the API's proxies and
  no-ops) is left alone.  The SDK is never imported.
* The SDK's ``BatchProcessor.force_flush`` ignores its timeout (opentelemetry-python #4568), so each
  provider is flushed on a daemon thread that is waited for until the deadline only.
* Never raises.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from highlight_logging._core import diag as _diag
from highlight_logging._core import osthread as _osthread
from highlight_logging._core.settings import Settings

# (API module, its getter): importing neither; see the module docstring.
_GLOBALS = (("opentelemetry.trace", "get_tracer_provider"), ("opentelemetry._logs", "get_logger_provider"))
_DEFAULT_BUDGET = 3.0

#: Settings that exit waits for beside our pipelines', given from a layer above (``_providers``
#: adds its own); called at exit, so this layer never looks up the one above.
_more_settings: list[Callable[[], Iterable[Settings]]] = []


def add_settings_source(source: Callable[[], Iterable[Settings]]) -> None:
    """Have :func:`budget` also count the ``shutdown_timeout`` of what ``source()`` returns."""
    if source not in _more_settings:
        _more_settings.append(source)


def budget(settings: Iterable[Settings]) -> float:
    """The exit budget: the largest ``shutdown_timeout`` of our pipelines and of the
    ``use_otel_providers`` front ends (which have no pipeline of ours)."""
    timeouts = [s.shutdown_timeout for s in settings]
    for source in list(_more_settings):
        try:
            timeouts += [s.shutdown_timeout for s in source()]
        except Exception:
            pass
    return max(timeouts, default=_DEFAULT_BUDGET)


class Flushable(Protocol):
    """An app's provider that can be flushed: the SDK's ``TracerProvider``/``LoggerProvider``, or alike."""

    def force_flush(self, timeout_millis: int = ...) -> bool: ...


def app_providers() -> list[Flushable]:
    """The app's global tracer and logger providers that can be flushed (SDK ones, or alike)."""
    found: list[Flushable] = []
    for module_name, getter in _GLOBALS:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        try:
            provider = getattr(module, getter)()
            if callable(getattr(provider, "force_flush", None)):
                found.append(provider)
        except Exception:
            pass
    return found


def begin(deadline: float) -> Callable[[], bool]:
    """Start flushing the app's providers, to be done by ``deadline`` (``time.monotonic()``).

    Returns ``wait()``: it waits until the flushes end or the deadline passes, and is True when
    every flush ended in time (or there was nothing to flush).  A flush still running at the
    deadline is said once on stderr and left to its daemon thread.
    """
    flushes = []
    for provider in app_providers():
        # A real OS thread (_osthread), also under gevent: a greenlet would wait for the hub.
        thread = _osthread.new_thread(
            functools.partial(_flush, provider, deadline), "highlight_logging-otel-flush"
        )
        try:
            thread.start()
        except Exception:  # no threads left (interpreter shutting down): nothing we can do
            continue
        flushes.append((provider, thread))

    def wait() -> bool:
        done = True
        for provider, thread in flushes:
            thread.join(max(deadline - time.monotonic(), 0))
            if thread.is_alive():
                done = False
                _diag.warn(
                    f"at exit: the app's OpenTelemetry {type(provider).__name__} was still flushing "
                    "when shutdown_timeout ran out; what it held may be lost",
                    key=f"otel-flush-timeout:{type(provider).__name__}",
                )
        return done

    return wait


def _flush(provider: Flushable, deadline: float) -> None:
    try:
        provider.force_flush(max(int((deadline - time.monotonic()) * 1000), 0))
    except Exception:  # the app's provider: whatever it raises is not ours to report
        pass
