"""The process's side: one pipeline per distinct settings (the registry), ``stats()``, and the
hooks that deliver records at exit, on SIGTERM and around fork() (``os.register_at_fork``,
``multiprocessing``), which call each pipeline's ``before_fork``/``after_fork_*`` methods."""

from __future__ import annotations

import atexit
import os
import time
from typing import TYPE_CHECKING

from highlight_logging import _transport
from highlight_logging._core import diag as _diag
from highlight_logging._core import osthread as _osthread
from highlight_logging._export import otel_flush as _otel_flush
from highlight_logging._export import sigterm as _sigterm_rescue
from highlight_logging._export import threads
from highlight_logging._export.counters import Counters, FrontendLosses, new_counters
from highlight_logging._export.pipeline import Pipeline

if TYPE_CHECKING:
    from highlight_logging._core.settings import Settings

_registry: dict[Settings, Pipeline] = {}
_registry_lock = _osthread.Lock()
_exit_hook_installed = False


def get(settings: Settings) -> Pipeline:
    pipeline = _registry.get(settings)
    if pipeline is None:
        with _registry_lock:
            pipeline = _registry.get(settings)
            if pipeline is None:
                pipeline = _registry[settings] = Pipeline(settings, on_fork=adopt_fork)
                ensure_exit_hook()
                hook_sigterm()
    return pipeline


def pipelines() -> list[Pipeline]:
    if _pid != os.getpid():
        adopt_fork(None)
    with _registry_lock:
        return list(_registry.values())


def flush_all(timeout: float | None = None) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for pipeline in pipelines():
        left = None if deadline is None else max(deadline - time.monotonic(), 0)
        ok = pipeline.flush(left) and ok
    return ok


_shutting_down = False  # shutdown_all() is running (a SIGTERM then waits for it, see _on_sigterm)
_sigterm_deferred = False


def shutdown_all(timeout: float | None = None) -> bool:
    """Stop every pipeline within one shared deadline, flushing the app's OpenTelemetry providers
    (``otel_flush``) in the same time; print a line if anything was lost."""
    global _shutting_down
    ps = pipelines()
    if timeout is None:
        timeout = _otel_flush.budget(p.settings for p in ps)
    deadline = time.monotonic() + timeout
    ok = True
    was, _shutting_down = _shutting_down, True
    try:
        app_flushed = _otel_flush.begin(deadline)  # the app's own OpenTelemetry providers, alongside
        for pipeline in ps:
            ok = pipeline.shutdown(max(deadline - time.monotonic(), 0)) and ok
        app_flushed()
        for pipeline in ps:
            line = pipeline.summary()
            if line:
                _diag.warn(f"at exit: {line}", key=f"summary:{id(pipeline)}")
    finally:
        _shutting_down = was
    if _sigterm_deferred and not was:
        _die_by_sigterm()
    return ok


def reset_for_tests() -> None:
    """Shut everything down quickly and forget it (test isolation)."""
    shutdown_all(timeout=1.0)
    with _registry_lock:
        _registry.clear()
    _frontend_losses.reset()
    _diag.reset()


_frontend_losses = FrontendLosses()


def count_frontend_loss(front_end: str, exc: BaseException) -> None:
    """Count a record that ``front_end`` lost to ``exc`` and say so on stderr (rate-limited)."""
    _frontend_losses.add(front_end, exc)


def stats() -> Counters:
    """Counters summed over every pipeline of this process."""
    total = new_counters()
    total["logs"]["dropped"]["frontend_error"] = _frontend_losses.count
    total["logs"]["scrubbed"] = 0  # values scrubbed, in records and their exception spans alike
    for pipeline in pipelines():
        pipeline.add_counts(total)
    for t in total.values():
        t["dropped_total"] = sum(t["dropped"].values())
    return total


def ensure_exit_hook() -> None:
    global _exit_hook_installed
    if not _exit_hook_installed:
        _exit_hook_installed = True
        # Registered after logging's own hook, so it runs first: records reach the collector
        # before logging.shutdown() closes handlers.
        atexit.register(shutdown_all)
        try:
            import multiprocessing.util

            multiprocessing.util.register_after_fork(_mp_token, _mp_after_fork)
        except Exception:
            pass


_pid = os.getpid()  # the process the registry's state belongs to (see adopt_fork)
_fork_lock = _osthread.Lock()  # taken only in a child that finds itself forked without fork hooks


def adopt_fork(pipeline: Pipeline | None) -> None:
    """This process was forked without Python's fork hooks (uWSGI forks its workers in C):
    do what the hooks would have done, once, and leave the parent's queued records to the parent."""
    with _fork_lock:
        if _pid != os.getpid():
            _after_fork_in_child()
        if pipeline is not None and pipeline._pid != os.getpid():  # not in the registry
            pipeline.after_fork_in_child()


def _after_fork_in_child() -> None:
    global _registry_lock, _pid
    try:
        _pid = os.getpid()
        _registry_lock = _osthread.Lock()
        _diag.after_fork_in_child()
        threads.worker_threads.clear()
        _transport.after_fork_in_child()
        for pipeline in list(_registry.values()):
            pipeline.after_fork_in_child()
        _sigterm_rescue.after_fork_in_child(_on_sigterm, _rescue_sigterm)  # its own pipe and watcher
        if _registry:
            hook_sigterm()
    finally:
        _restore_signals()  # the block _before_fork put on the thread that forked (if it ran)


def _child_exit(*_: object) -> None:
    shutdown_all()


def hook_sigterm() -> None:
    """Deliver records on SIGTERM, which skips ``atexit``.

    While SIGTERM still has its default action (nobody else handles it), we flush for at most
    ``shutdown_timeout`` first and then die by the same signal, so exit codes and supervisors see no
    difference.  This covers ``Pool.terminate()`` (``with Pool() as p``) in forked children and
    servers such as uvicorn that restore the previous handler and re-raise SIGTERM on exit.
    ``multiprocessing`` children that end normally are covered by :func:`_mp_after_fork`.
    Only the main thread can set a handler; elsewhere this does nothing.
    """
    try:
        import signal

        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
            if threads.threads_stalled() is None:  # a thread of its own: not in a uWSGI master
                _sigterm_rescue.arm(_on_sigterm, _rescue_sigterm)
    except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM here
        pass


class _MultiprocessingHook:
    """multiprocessing clears its finalizers in a new child, then runs its after-fork hooks:
    from there we register a finalizer, which it runs before its children's ``os._exit()``."""


_mp_token = _MultiprocessingHook()


def _mp_after_fork(_: object) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _child_exit, exitpriority=100)


def _on_sigterm(signum: int, frame: object) -> None:
    global _sigterm_deferred
    _sigterm_rescue.handler_started()  # the watcher stands down
    if _shutting_down:
        # The main thread was already delivering (e.g. a multiprocessing child exiting normally
        # when Pool.terminate() signalled it): let it finish, then die by SIGTERM.
        _sigterm_deferred = True
        return
    # A signal handler runs on the main thread between two bytecodes, maybe while that thread
    # holds one of our locks: flush from a fresh thread and wait a bounded time, so the handler
    # can never deadlock on what it interrupted.
    try:
        _flush_for_sigterm()
    finally:
        _die_by_sigterm()


def _flush_for_sigterm() -> None:
    budget = _otel_flush.budget(p.settings for p in list(_registry.values()))
    # A real OS thread (_osthread) also under gevent: a greenlet could not run from here.
    flusher = _osthread.new_thread(lambda: shutdown_all(budget), "highlight_logging-sigterm")
    _sigterm_rescue.start_blocked(flusher)
    flusher.join(budget + 0.5)
    if flusher.is_alive():
        queued = sum(p.queued for p in list(_registry.values()))
        _diag.warn(f"at exit: SIGTERM: gave up delivering after {budget:g} s; {queued} log records lost")


def _rescue_sigterm() -> None:
    """On the rescue's watcher thread: a SIGTERM came and ``_on_sigterm`` did not start (the main
    thread asleep in C, see ``_export.sigterm``): deliver as ``_on_sigterm`` would; the watcher then
    dies by SIGTERM.  A main thread already in shutdown_all() (a pool worker exiting normally) is
    given its time first."""
    if _shutting_down:
        budget = _otel_flush.budget(p.settings for p in list(_registry.values()))
        end = time.monotonic() + budget + 0.5
        while _shutting_down and time.monotonic() < end:
            _osthread.sleep(0.01)
        return
    _flush_for_sigterm()


_fork_mask: threads.SignalMask | None = None  # the forking thread's signal mask, while a fork() is under way


def _restore_signals() -> None:
    """Undo the block that _before_fork put on the forking thread."""
    global _fork_mask
    mask, _fork_mask = _fork_mask, None
    threads.set_signal_mask(mask)


def _die_by_sigterm() -> None:
    import signal

    if not _osthread.on_main_thread():  # shutdown_all() ending a deferred SIGTERM on a flusher thread
        _sigterm_rescue.die()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


_FORK_WAIT = 1.0  # longest a fork() waits for the exports in flight


def _before_fork() -> None:
    global _fork_mask
    # Threads that C libraries start in the child from their own fork handlers (grpcio's timer
    # thread, with its fork support on) inherit the forking thread's mask: blocked for the
    # fork, they never take a SIGTERM meant for the child's main thread (seen: a pool worker
    # that Pool.terminate() signalled, asleep for good on its queue lock).
    _fork_mask = threads.block_signals()
    deadline = time.monotonic() + _FORK_WAIT
    for pipeline in list(_registry.values()):
        pipeline.before_fork(deadline)


def _after_fork_in_parent() -> None:
    _restore_signals()
    for pipeline in list(_registry.values()):
        pipeline.after_fork_in_parent()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )
