"""Sending one encoded request: OTLP/gRPC (default) or OTLP/HTTP, and what the answer means.

Transports never raise and never log: they turn every outcome into an :class:`Outcome` the worker
acts on, following the OTLP specification's retry rules.  Channels are created lazily, on the
worker's first export, so a forked child never touches its parent's channel.
"""

from __future__ import annotations

import enum
import gzip
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from highlight_logging import _diag, _osthread, _proxy
from highlight_logging._settings import Settings, is_plaintext

LOGS = "logs"
TRACES = "traces"

_GRPC_METHODS = {
    LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
}
_HTTP_PATHS = {LOGS: "/v1/logs", TRACES: "/v1/traces"}

if TYPE_CHECKING:
    import grpc


class StatusCode(enum.Enum):
    """gRPC's status codes, with ``grpc.StatusCode``'s names, for the built-in client: grpcio is
    imported only when its own client is used (importing it cost this package ~18 MiB of RSS and ~40 ms)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# The specification's retryable gRPC codes, by name (grpcio's and ours alike); RESOURCE_EXHAUSTED
# only with RetryInfo.
_RETRYABLE = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
)
_RETRYABLE_HTTP = frozenset({429, 502, 503, 504})

# zlib level for the bodies we compress ourselves (h2 client, OTLP/HTTP).  Measured on 512-record
# OTLP batches of the benchmark workloads, once the observed time repeats the record's time (see
# _frontend.to_record): level 1 costs 0.47 us a record and sends 14.1 B (stdlib-like), 15.5 B
# (loguru-like); level 2 0.49 us and 12.5 / 13.9 B; level 5 1.46 us and 13.4 / 13.7 B (level 5
# searches harder but matches those repeats worse).  In benchmarks/run.py level 2 sends 13.1 / 12.8
# / 14.7 B a record (stdlib / structlog / loguru) against OpenTelemetry's 15.7 / 14.5 / 15.9.
GZIP_LEVEL = 2


class Outcome:
    """What one attempt came to."""

    __slots__ = ("detail", "ok", "reconnect", "rejected", "retry_after", "retryable", "too_large")

    def __init__(
        self,
        ok: bool,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        rejected: int = 0,
        detail: str = "",
        reconnect: bool = False,
        too_large: bool = False,
    ) -> None:
        self.ok = ok
        self.retryable = retryable
        self.retry_after = retry_after  # seconds, from RetryInfo or Retry-After
        self.rejected = rejected  # partial_success: records the server refused (never retried)
        self.detail = detail  # for a diagnostic line; never contains headers
        self.reconnect = reconnect
        self.too_large = too_large


# RESOURCE_EXHAUSTED messages that mean "this request is too large" rather than "slow down":
# grpcio and grpc-go ("received message larger than max (N vs. M)", also "after decompression"),
# grpc-js ("Received message that decompresses to a size larger than N"), Envoy and others.
_TOO_LARGE = ("larger than max", "size larger than", "message too large", "request too large", "too big")


def _too_large(details: str) -> bool:
    lowered = details.lower()
    return any(marker in lowered for marker in _TOO_LARGE)


def _retry_delay(details: bytes | None) -> float | None:
    """The RetryInfo.retry_delay in a ``grpc-status-details-bin`` trailer, if any."""
    if not details:
        return None
    try:
        from google.rpc import error_details_pb2, status_pb2

        status = status_pb2.Status.FromString(details)
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    except Exception:
        return None
    return None


def _partial_success(response: bytes, signal: str) -> tuple[int, str]:
    """(rejected count, error message) from an Export*ServiceResponse's partial_success."""
    if not response:
        return 0, ""
    try:
        if signal == LOGS:
            from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

            logs_resp = logs_service_pb2.ExportLogsServiceResponse.FromString(response)
            ps: Any = logs_resp.partial_success
            return int(ps.rejected_log_records), str(ps.error_message)
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        trace_resp = trace_service_pb2.ExportTraceServiceResponse.FromString(response)
        ps = trace_resp.partial_success
        return int(ps.rejected_spans), str(ps.error_message)
    except Exception:
        return 0, ""


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def proxy_for(target: str, http_url: str | None = None) -> _proxy.Proxy | None:
    """The proxy for a gRPC ``target`` (or an OTLP/HTTP ``http_url``) from the environment now;
    an unusable variable is reported once and not used."""
    low = target.lower()
    if http_url is None and low.startswith(_RESOLVER_PREFIXES):
        if not low.startswith(("dns:", "ipv4:", "ipv6:")):
            return None  # unix:, vsock:, xds:...: no proxy for those
        # dns:///host:port, ipv4:addr:port[,...]: the (first) host:port is what no_proxy is matched to
        target = target.split(":", 1)[1].lstrip("/").split(",")[0]
    try:
        if http_url is not None:
            return _proxy.for_http(http_url, os.environ)
        return _proxy.for_grpc(target, os.environ)
    except _proxy.UnsupportedProxy as exc:
        _diag.warn(f"{exc}; connecting directly", key=f"proxy:{exc}")
        return None


def _identity(data: bytes) -> bytes:
    return data


def _ready(outcome: Outcome) -> Callable[[], Outcome]:
    """A started export that has already come to ``outcome``."""
    return lambda: outcome


_CLOSE_WAIT = 0.5  # s: the longest close() waits for grpcio to close its channels
_ANSWER_GRACE = 1.0  # s: past a request's own deadline, the longest its answer is waited for

#: grpcio channels given up on unclosed (see GrpcTransport._abandon), kept from the garbage collector.
_abandoned: list[Any] = []


def _close_channels(channels: list[Any], wait: float) -> None:
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
        self._calls: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._inflight: set[Any] = set()  # futures of the requests in flight
        self._no_threads = False  # grpcio could not start a thread: send with blocking calls
        self._metadata = tuple((k.lower(), v) for k, v in settings.headers)

    @staticmethod
    def _target(endpoint: str) -> str:
        for prefix in ("https://", "http://", "grpc://", "grpcs://"):
            if endpoint.lower().startswith(prefix):
                endpoint = endpoint[len(prefix) :]
                break
        return endpoint.rstrip("/")

    def _open(self, signal: str) -> Any:
        s = self._settings
        endpoint = (s.logs_endpoint if signal == LOGS else s.traces_endpoint) or s.endpoint
        target = self._target(endpoint)
        if target in self._channels:
            self._via[signal] = self._proxies.get(target)
            return self._channels[target]
        import grpc  # here, not at import: the built-in client (the default) never needs grpcio

        compression = grpc.Compression.Gzip if s.compression == "gzip" else grpc.Compression.NoCompression
        options = [
            # Reconnect promptly when the collector comes back after an outage.
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.min_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 2000),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.primary_user_agent", "highlight-logging"),
        ]
        # The proxy as _proxy reads it (both spellings, no_proxy, scheme-less addresses), never
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

    def _call(self, signal: str) -> Any:
        call = self._calls.get(signal)
        if call is None:
            channel = self._open(signal)
            call = channel.unary_unary(
                _GRPC_METHODS[signal], request_serializer=_identity, response_deserializer=_identity
            )
            self._calls[signal] = call
        return call

    def export(self, signal: str, payload: bytes, timeout: float) -> Outcome:
        return self.start(signal, payload, timeout)()

    def start(self, signal: str, payload: bytes, timeout: float) -> Callable[[], Outcome]:
        """Send the request; the returned call waits for its outcome.  The worker keeps a few
        requests in flight (``_export.sender.MAX_IN_FLIGHT``) and encodes meanwhile."""
        timeout = max(timeout, 0.001)
        if self._no_threads or getattr(threading, "_SHUTTING_DOWN", False):
            # At interpreter exit: call.future() may need a new grpcio thread (see _abandon).
            return _ready(self._send_blocking(signal, payload, timeout))
        try:
            call = self._call(signal)
            # call.future() rather than a blocking call: measured A/B in benchmarks/run.py (stdlib,
            # N=20k, 3 rounds) it cost less app-thread time and CPU here, and it can be cancelled.
            future = call.future(payload, timeout=timeout, metadata=self._metadata)
        except RuntimeError as exc:  # no thread for the call (see _abandon); already on its way,
            self._no_threads = True  # so never sent again: it may well arrive
            self._abandon()
            return _ready(Outcome(False, detail=f"grpcio could not follow the request: {exc}"))
        except Exception as exc:
            return _ready(self._through(signal, self._error(exc)))
        with self._lock:
            self._inflight.add(future)

        def wait() -> Outcome:
            try:
                # Bounded even if grpcio's thread that completes calls is gone (see _abandon).
                response = future.result(timeout + _ANSWER_GRACE)
            except Exception as exc:
                import grpc  # imported already: this client opened the channel

                if isinstance(exc, grpc.FutureTimeoutError):
                    future.cancel()
                    self._abandon()
                return self._through(signal, self._error(exc))
            finally:
                with self._lock:
                    self._inflight.discard(future)
            rejected, message = _partial_success(response, signal)
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
        rejected, message = _partial_success(response, signal)
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

    def _error(self, exc: Exception) -> Outcome:
        import grpc

        if isinstance(exc, grpc.RpcError):
            return self._failure(exc)
        if isinstance(exc, OSError):  # an unreadable certificate file: configuration, not retryable
            return Outcome(False, detail=f"{type(exc).__name__}: {exc}")
        # The channel was closed under us (fork, reconnect): try again.
        return Outcome(False, retryable=True, reconnect=True, detail=f"{type(exc).__name__}: {exc}")

    def _failure(self, err: Any) -> Outcome:
        code = getattr(err, "code", lambda: None)()
        details = ""
        try:
            details = str(err.details() or "")
        except Exception:
            pass
        delay = None
        try:
            for key, value in err.trailing_metadata() or ():
                if key == "grpc-status-details-bin":
                    delay = _retry_delay(value)
        except Exception:
            pass
        name = getattr(code, "name", str(code))
        detail = f"{name}: {details}" if details else str(name)
        if "status: 413" in details or "HTTP 413" in details:  # a proxy's own answer: too large
            return Outcome(False, detail=detail, too_large=True)
        if name in _RETRYABLE:
            return Outcome(
                False,
                retryable=True,
                retry_after=delay,
                detail=detail,
                reconnect=name == "UNAVAILABLE",
            )
        if name == "RESOURCE_EXHAUSTED":
            too_large = _too_large(details)
            return Outcome(
                False, retryable=delay is not None, retry_after=delay, detail=detail, too_large=too_large
            )
        return Outcome(False, detail=detail)

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


class HttpTransport:
    """OTLP/HTTP with protobuf bodies, on the standard library: no extra dependency."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._headers = {k: v for k, v in settings.headers}
        self._headers["Content-Type"] = "application/x-protobuf"
        self._headers["User-Agent"] = "highlight-logging"
        if settings.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        self._context: Any = None
        self._openers: dict[str, tuple[urllib.request.OpenerDirector, _proxy.Proxy | None]] = {}

    def _url(self, signal: str) -> str:
        s = self._settings
        specific = s.logs_endpoint if signal == LOGS else s.traces_endpoint
        if specific:
            return specific  # the per-signal variables are used as given
        return s.endpoint.rstrip("/") + _HTTP_PATHS[signal]

    def _ssl(self) -> Any:
        if self._context is None:
            import ssl

            s = self._settings
            ctx = ssl.create_default_context(cafile=s.certificate_file or None)
            if s.client_certificate_file:
                ctx.load_cert_chain(s.client_certificate_file, s.client_key_file or None)
            self._context = ctx
        return self._context

    def _opener(self, url: str) -> tuple[urllib.request.OpenerDirector, _proxy.Proxy | None]:
        """An opener for ``url`` that goes through the proxy _proxy chose (not urllib's own reading)."""
        found = self._openers.get(url)
        if found is None:
            proxy = proxy_for("", http_url=url)
            via = {} if proxy is None else dict.fromkeys(("http", "https"), proxy.url_with_credentials())
            handlers: list[Any] = [urllib.request.ProxyHandler(via)]
            if url.lower().startswith("https://"):
                handlers.append(urllib.request.HTTPSHandler(context=self._ssl()))
            found = self._openers[url] = (urllib.request.build_opener(*handlers), proxy)
        return found

    def start(self, signal: str, payload: bytes, timeout: float) -> Callable[[], Outcome]:
        """Plain urllib has no request in flight to come back to: the whole export happens here."""
        return _ready(self.export(signal, payload, timeout))

    def export(self, signal: str, payload: bytes, timeout: float) -> Outcome:
        body = (
            gzip.compress(payload, compresslevel=GZIP_LEVEL)
            if self._settings.compression == "gzip"
            else payload
        )
        url = self._url(signal)
        request = urllib.request.Request(url, data=body, headers=self._headers, method="POST")
        proxy = None
        try:
            opener, proxy = self._opener(url)
            with opener.open(request, timeout=max(timeout, 0.001)) as response:
                data = response.read()
        except urllib.error.HTTPError as err:
            delay = None
            try:
                retry_after = err.headers.get("Retry-After")
                delay = float(retry_after) if retry_after else None
            except Exception:
                pass
            status = int(err.code)
            if status == 407 and proxy is not None:  # a plain-HTTP request forwarded by the proxy
                return Outcome(False, detail=_proxy.auth_message(proxy, f"407 {err.reason or ''}".rstrip()))
            detail = f"HTTP {status}"
            if proxy is not None:  # a 401 may be the proxy's too (tinyproxy 1.11 answers 401)
                detail = f"{detail} (through {proxy})"
            return Outcome(
                False,
                retryable=status in _RETRYABLE_HTTP,
                retry_after=delay,
                detail=detail,
                too_large=status == 413,
            )
        except ValueError as exc:  # urllib refused the request before sending it: a retry can't help
            # Its text may quote a header value: the type only.
            return Outcome(False, retryable=False, detail=f"{type(exc).__name__}: invalid request, not sent")
        except Exception as exc:  # refused, timed out, TLS, the proxy's tunnel refused
            reason = getattr(exc, "reason", exc)
            text = f"{type(reason).__name__}: {reason}"
            if proxy is not None:
                for answer in ("407", "401"):  # http.client's words for the proxy's answer to CONNECT
                    if f"Tunnel connection failed: {answer}" in text:
                        return Outcome(False, detail=_proxy.auth_message(proxy, answer))
                text = f"{text} (through {proxy})"
            return Outcome(False, retryable=True, detail=text)
        rejected, message = _partial_success(data, signal)
        return Outcome(True, rejected=rejected, detail=message)

    def cancel(self) -> None:
        pass  # urllib cannot be interrupted; every request is bounded by its timeout instead

    def reconnect(self) -> None:
        pass

    def close(self) -> None:
        pass


#: Set in a child after fork(): gRPC may be unusable there (see :func:`make`).
forked_child = False


def _grpc_fork_support() -> bool:
    try:
        import importlib

        cygrpc: Any = importlib.import_module("grpc._cython.cygrpc")
        return bool(cygrpc.is_fork_support_enabled())
    except Exception:
        return False


# gRPC name-resolver targets (``unix:/path``, ``dns:///host``...): only grpcio resolves these.
_RESOLVER_PREFIXES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:", "xds:")


def _needs_grpcio(settings: Settings) -> bool:
    endpoints = (settings.endpoint, settings.logs_endpoint, settings.traces_endpoint)
    return any(GrpcTransport._target(e).lower().startswith(_RESOLVER_PREFIXES) for e in endpoints if e)


def make(settings: Settings) -> Any:
    """The transport for ``settings``: OTLP/HTTP, or OTLP/gRPC through ``h2`` or grpcio.

    ``grpc_client="auto"`` (the default) speaks gRPC through :class:`~._h2transport.H2Transport`
    (our own HTTP/2 framing, ``_h2wire``): it uses less CPU than grpcio and ``make interop`` holds
    both to the same results against grpc-js, grpc-go and nginx (figures in docs/performance.md).
    A gRPC resolver target (``unix:``, ``dns:///``...) needs grpcio.  A proxy does not change the
    client: both go through the one ``_proxy`` chooses.  A forked child uses the h2 client unless
    only grpcio can reach the endpoint, and then only with gRPC's fork support on: grpcio's first
    channel in a child can deadlock holding the GIL.
    """
    if settings.protocol == "http/protobuf":
        return HttpTransport(settings)
    client = settings.grpc_client
    if client == "auto":
        client = "grpcio" if _needs_grpcio(settings) else "h2"
    if client == "h2" or (forked_child and not (_needs_grpcio(settings) and _grpc_fork_support())):
        from highlight_logging._h2transport import H2Transport

        return H2Transport(settings)
    return GrpcTransport(settings)
