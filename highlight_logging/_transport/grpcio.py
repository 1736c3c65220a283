"""OTLP/gRPC through grpcio: the client for gRPC resolver targets (``unix:``, ``dns:///``...) and
for ``grpc_client="grpcio"``.  The only module that imports grpcio, and it is imported only when
this client is chosen (see :func:`highlight_logging._transport.make`).

Channels are created lazily, on the worker's first export, so a forked child never touches its
parent's channel.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

import grpc

from highlight_logging._core import osthread as _osthread
from highlight_logging._core.settings import Settings, is_plaintext
from highlight_logging._transport import proxy as _proxy
from highlight_logging._transport.base import (
    GRPC_METHODS,
    LOGS,
    Outcome,
    StatusCode,
    classify_grpc,
    grpc_target,
    partial_success,
    ready,
)
from highlight_logging._transport.proxy import proxy_for


def _identity(data: bytes) -> bytes:
    return data


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def fork_support() -> bool:
    """Whether gRPC's fork support is on (a forked child may then use grpcio)."""
    try:
        cygrpc: Any = importlib.import_module("grpc._cython.cygrpc")
        return bool(cygrpc.is_fork_support_enabled())
    except Exception:
        return False


def classify_error(err: grpc.RpcError) -> Outcome:
    """A failed grpcio call as :func:`~.base.classify_grpc` sees it."""
    call: Any = err  # a grpc.Call too, in practice; read defensively
    code = getattr(call, "code", lambda: None)()
    status = StatusCode.__members__.get(getattr(code, "name", ""), StatusCode.UNKNOWN)
    details = ""
    try:
        details = str(call.details() or "")
    except Exception:
        pass
    status_details = None
    try:
        for key, value in call.trailing_metadata() or ():
            if key == "grpc-status-details-bin":
                status_details = value
    except Exception:
        pass
    return classify_grpc(status, details, status_details)


_CLOSE_WAIT = 0.5  # s: the longest close() waits for grpcio to close its channels
_ANSWER_GRACE = 1.0  # s: past a request's own deadline, the longest its answer is waited for

#: grpcio channels given up on unclosed (see GrpcTransport._abandon), kept from the garbage collector.
_abandoned: list[grpc.Channel] = []


def _close_channels(channels: list[grpc.Channel], wait: float) -> None:
    """Close grpcio channels on a thread of their own, waiting for at most ``wait``.

    ``Channel.close()`` has no bound (see :meth:`GrpcTransport._abandon`): no caller of ours waits
    on it for longer than ``wait``.  Where no thread can be started (at exit, CPython 3.12) the
    channels are abandoned instead: the process is ending.
    """
    if not channels:
        return

    def close() -> None:
        for channel in channels:
            try:
                channel.close()
            except Exception:
                pass

    closer = _osthread.new_thread(close, "highlight_logging-grpc-close")
    try:
        closer.start()
    except RuntimeError:
        _abandoned.extend(channels)
        return
    if wait > 0:
        closer.join(wait)


class GrpcTransport:
    """One lazily created channel; requests are already-encoded bytes, so no message objects."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._channels: dict[str, grpc.Channel] = {}
        self._proxies: dict[str, _proxy.Proxy | None] = {}  # by target, as each channel was opened
        self._via: dict[str, _proxy.Proxy | None] = {}  # by signal
        self._calls: dict[
            str, grpc.UnaryUnaryMultiCallable[bytes, bytes]
        ] = {}  # grpcio's multi-callables, by signal
        self._lock = threading.Lock()
        self._inflight: set[grpc.Future[bytes]] = set()  # futures of the requests in flight
        self._no_threads = False  # grpcio could not start a thread: send with blocking calls
        self._metadata = tuple((k.lower(), v) for k, v in settings.headers)

    def _open(self, signal: str) -> grpc.Channel:
        s = self._settings
        endpoint = (s.logs_endpoint if signal == LOGS else s.traces_endpoint) or s.endpoint
        target = grpc_target(endpoint)
        if target in self._channels:
            self._via[signal] = self._proxies.get(target)
            return self._channels[target]
        compression = grpc.Compression.Gzip if s.compression == "gzip" else grpc.Compression.NoCompression
        options = [
            # Reconnect promptly when the collector comes back after an outage.
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.min_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 2000),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.primary_user_agent", "highlight-logging"),
        ]
        # The proxy as .proxy reads it (both spellings, no_proxy, scheme-less addresses), never
        # grpcio's own reading of the environment, which knows only the lower-case names.
        proxy = proxy_for(target)
        self._proxies[target] = proxy
        if proxy is None:
            options.append(("grpc.enable_http_proxy", 0))
        else:
            options.append(("grpc.http_proxy", proxy.url_with_credentials()))
        if is_plaintext(endpoint, s.insecure, tls_files=s.tls_files):
            channel = grpc.insecure_channel(target, options=options, compression=compression)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(s.certificate_file),
                private_key=_read(s.client_key_file),
                certificate_chain=_read(s.client_certificate_file),
            )
            channel = grpc.secure_channel(target, creds, options=options, compression=compression)
        self._channels[target] = channel
        self._via[signal] = proxy
        return channel

    def _call(self, signal: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
        call = self._calls.get(signal)
        if call is None:
            channel = self._open(signal)
            call = channel.unary_unary(
                GRPC_METHODS[signal], request_serializer=_identity, response_deserializer=_identity
            )
            self._calls[signal] = call
        return call

    def export(self, signal: str, payload: bytes, timeout: float) -> Outcome:
        return self.start(signal, payload, timeout)()

    def start(self, signal: str, payload: bytes, timeout: float) -> Callable[[], Outcome]:
        """Send the request; the returned call waits for its outcome.  The worker keeps a few
        requests in flight and encodes meanwhile."""
        timeout = max(timeout, 0.001)
        if self._no_threads or getattr(threading, "_SHUTTING_DOWN", False):
            # At interpreter exit: call.future() may need a new grpcio thread (see _abandon).
            return ready(self._send_blocking(signal, payload, timeout))
        try:
            call = self._call(signal)
            # call.future() rather than a blocking call: less app-thread time and CPU (measured,
            # docs/performance.md), and it can be cancelled.
            future = call.future(payload, timeout=timeout, metadata=self._metadata)
        except RuntimeError as exc:  # no thread for the call (see _abandon); already on its way,
            self._no_threads = True  # so never sent again: it may well arrive
            self._abandon()
            return ready(Outcome(False, detail=f"grpcio could not follow the request: {exc}"))
        except Exception as exc:
            return ready(self._through(signal, self._error(exc)))
        with self._lock:
            self._inflight.add(future)

        def wait() -> Outcome:
            try:
                # Bounded even if grpcio's thread that completes calls is gone (see _abandon).
                response = future.result(timeout + _ANSWER_GRACE)
            except Exception as exc:
                if isinstance(exc, grpc.FutureTimeoutError):
                    future.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs
                    self._abandon()
                return self._through(signal, self._error(exc))
            finally:
                with self._lock:
                    self._inflight.discard(future)
            rejected, message = partial_success(response, signal)
            return Outcome(True, rejected=rejected, detail=message)

        return wait

    def _through(self, signal: str, outcome: Outcome) -> Outcome:
        """A failure through a proxy names it; its 407 is a configuration error, not retried."""
        proxy = self._via.get(signal)
        if proxy is None or outcome.ok:
            return outcome
        for status in ("407", "401"):  # grpcio's words for the proxy's answer to CONNECT
            if f"HTTP proxy returned response code {status}" in outcome.detail:
                return Outcome(False, detail=_proxy.auth_message(proxy, status))
        outcome.detail = f"{outcome.detail} (through {proxy})"
        return outcome

    def _send_blocking(self, signal: str, payload: bytes, timeout: float) -> Outcome:
        """One request on the calling thread, which reads its answer itself: no grpcio thread."""
        try:
            response = self._call(signal)(payload, timeout=timeout, metadata=self._metadata)
        except Exception as exc:
            return self._through(signal, self._error(exc))
        rejected, message = partial_success(response, signal)
        return Outcome(True, rejected=rejected, detail=message)

    def _abandon(self) -> None:
        """Give up the channels without closing them.

        grpcio's ``Channel.close()`` cancels the channel's calls and then waits, with no bound, until
        the channel's spin thread has reaped each of them.  ``call.future()`` registers its call
        first and starts that thread after (when none runs); when the thread cannot start
        (CPython 3.12.0-3.12.x refuse new threads in ``atexit`` handlers) the call is left with no
        thread to reap it, and ``close()`` would never return.  Such a channel is kept referenced
        and never closed: the process is exiting, and grpcio's ``__del__`` does not close.
        """
        channels, self._channels, self._calls = self._channels, {}, {}
        _abandoned.extend(channels.values())

    @staticmethod
    def _error(exc: Exception) -> Outcome:
        if isinstance(exc, grpc.RpcError):
            return classify_error(exc)
        if isinstance(exc, OSError):  # an unreadable certificate file: configuration, not retryable
            return Outcome(False, detail=f"{type(exc).__name__}: {exc}")
        # The channel was closed under us (fork, reconnect): try again.
        return Outcome(False, retryable=True, reconnect=True, detail=f"{type(exc).__name__}: {exc}")

    def cancel(self) -> None:
        """Abort the requests in flight (shutdown deadline reached)."""
        with self._lock:
            futures = list(self._inflight)
        for future in futures:
            try:
                future.cancel()
            except Exception:
                pass

    def reconnect(self) -> None:
        """Drop the channel so the next export opens a fresh one; the old one closes on its own
        thread: the worker never waits for it."""
        channels, self._channels, self._calls = self._channels, {}, {}
        self._proxies, self._via = {}, {}
        _close_channels(list(channels.values()), 0.0)

    def close(self) -> None:
        """Close the channels, waiting for at most ``_CLOSE_WAIT`` (fork() waits for this)."""
        channels, self._channels, self._calls = self._channels, {}, {}
        _close_channels(list(channels.values()), _CLOSE_WAIT)
