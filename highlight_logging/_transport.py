"""Sending one encoded request: OTLP/gRPC (default) or OTLP/HTTP, and what the answer means.

Transports never raise and never log: they turn every outcome into an :class:`Outcome` the worker
acts on, following the OTLP specification's retry rules.  Channels are created lazily, on the
worker's first export, so a forked child never touches its parent's channel.
"""

from __future__ import annotations

import gzip
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import grpc

from highlight_logging._settings import Settings, is_plaintext

LOGS = "logs"
TRACES = "traces"

_GRPC_METHODS = {
    LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
}
_HTTP_PATHS = {LOGS: "/v1/logs", TRACES: "/v1/traces"}

# The specification's retryable gRPC codes; RESOURCE_EXHAUSTED only with RetryInfo.
_RETRYABLE = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
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


def _identity(data: bytes) -> bytes:
    return data


def _ready(outcome: Outcome) -> Callable[[], Outcome]:
    """A started export that has already come to ``outcome``."""
    return lambda: outcome


class GrpcTransport:
    """One lazily created channel; requests are already-encoded bytes, so no message objects."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._channels: dict[str, grpc.Channel] = {}
        self._calls: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._inflight: set[Any] = set()  # futures of the requests in flight
        self._metadata = tuple((k.lower(), v) for k, v in settings.headers)
        self._compression = (
            grpc.Compression.Gzip if settings.compression == "gzip" else grpc.Compression.NoCompression
        )

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
            return self._channels[target]
        options = [
            # Reconnect promptly when the collector comes back after an outage.
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.min_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 2000),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.primary_user_agent", "highlight-logging"),
        ]
        if is_plaintext(endpoint, s.insecure):
            channel = grpc.insecure_channel(target, options=options, compression=self._compression)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(s.certificate_file),
                private_key=_read(s.client_key_file),
                certificate_chain=_read(s.client_certificate_file),
            )
            channel = grpc.secure_channel(target, creds, options=options, compression=self._compression)
        self._channels[target] = channel
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
        requests in flight (``_pipeline._MAX_IN_FLIGHT``) and encodes meanwhile."""
        try:
            call = self._call(signal)
            # call.future() rather than a blocking call: measured A/B in benchmarks/run.py (stdlib,
            # N=20k, 3 rounds) it cost less app-thread time and CPU here, and it can be cancelled.
            future = call.future(payload, timeout=max(timeout, 0.001), metadata=self._metadata)
        except Exception as exc:
            return _ready(self._error(exc))
        with self._lock:
            self._inflight.add(future)

        def wait() -> Outcome:
            try:
                response = future.result()
            except Exception as exc:
                return self._error(exc)
            finally:
                with self._lock:
                    self._inflight.discard(future)
            rejected, message = _partial_success(response, signal)
            return Outcome(True, rejected=rejected, detail=message)

        return wait

    def _error(self, exc: Exception) -> Outcome:
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
        if code in _RETRYABLE:
            return Outcome(
                False,
                retryable=True,
                retry_after=delay,
                detail=detail,
                reconnect=code is grpc.StatusCode.UNAVAILABLE,
            )
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            too_large = "larger than max" in details or "message too large" in details.lower()
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
        """Drop the channel so the next export opens a fresh one."""
        channels, self._channels, self._calls = self._channels, {}, {}
        for channel in channels.values():
            try:
                channel.close()
            except Exception:
                pass

    def close(self) -> None:
        self.reconnect()


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
        try:
            kwargs: dict[str, Any] = {"timeout": max(timeout, 0.001)}
            if url.lower().startswith("https://"):
                kwargs["context"] = self._ssl()
            with urllib.request.urlopen(request, **kwargs) as response:
                data = response.read()
        except urllib.error.HTTPError as err:
            delay = None
            try:
                retry_after = err.headers.get("Retry-After")
                delay = float(retry_after) if retry_after else None
            except Exception:
                pass
            status = int(err.code)
            return Outcome(
                False,
                retryable=status in _RETRYABLE_HTTP,
                retry_after=delay,
                detail=f"HTTP {status}",
                too_large=status == 413,
            )
        except Exception as exc:  # refused, timed out, TLS
            return Outcome(False, retryable=True, detail=f"{type(exc).__name__}: {exc}")
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


_PROXY_VARIABLES = ("grpc_proxy", "https_proxy", "http_proxy", "GRPC_PROXY", "HTTPS_PROXY", "HTTP_PROXY")


def _proxy_configured() -> bool:
    return any(os.environ.get(name) for name in _PROXY_VARIABLES)


# gRPC name-resolver targets (``unix:/path``, ``dns:///host``...): only grpcio resolves these.
_RESOLVER_PREFIXES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:", "xds:")


def _needs_grpcio(settings: Settings) -> bool:
    if _proxy_configured():
        return True
    endpoints = (settings.endpoint, settings.logs_endpoint, settings.traces_endpoint)
    return any(GrpcTransport._target(e).lower().startswith(_RESOLVER_PREFIXES) for e in endpoints if e)


def make(settings: Settings) -> Any:
    """The transport for ``settings``: OTLP/HTTP, or OTLP/gRPC through ``h2`` or grpcio.

    ``grpc_client="auto"`` (the default) speaks gRPC through :class:`~._h2transport.H2Transport`
    (our own HTTP/2 framing, ``_h2wire``, and a socket) unless an HTTP proxy is configured or the
    endpoint is a gRPC resolver target (``unix:``, ``dns:///``...), which only grpcio supports.
    Measured per 512-record request against the benchmark receiver (this machine, repeated): grpcio 2.2-2.45 ms of process CPU (its own threads included), the h2 client 1.3 ms
    at zlib level 1-2 (1.8 ms at level 5) when it was built on the ``h2`` library.  Since it frames
    HTTP/2 itself, measured again in a slower phase of the machine: 1.43-1.64 ms against grpcio's
    2.38-3.50 ms in the same runs.  grpcio is also unreliable in a forked child: with gRPC fork
    support off (``GRPC_ENABLE_FORK_SUPPORT=0``) creating a channel there can deadlock holding the
    GIL, and with it on it did too, now and then (a forked child's first channel, blocked in
    gRPC's core with the GIL held).  So a forked child uses the h2 client unless only grpcio can
    reach the endpoint, and then only with fork support on.
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
