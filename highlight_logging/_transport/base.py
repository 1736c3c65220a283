"""What every transport shares: the :class:`Transport` Protocol, the :class:`Outcome` of one
attempt, and the rules that turn an answer into one (the OTLP specification's retry rules).

Transports never raise and never log: every answer, refusal or broken connection becomes an
:class:`Outcome` the export worker acts on.  Pure: no I/O, no grpcio.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Protocol

LOGS = "logs"
TRACES = "traces"

GRPC_METHODS = {
    LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
}

# zlib level for the bodies we compress ourselves (built-in gRPC client, OTLP/HTTP): level 2 sends
# fewer bytes than OpenTelemetry's exporter at a fraction of level 5's CPU (docs/performance.md).
GZIP_LEVEL = 2

# gRPC name-resolver targets (``unix:/path``, ``dns:///host``...): only grpcio resolves these.
RESOLVER_PREFIXES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:", "xds:")


class StatusCode(enum.Enum):
    """gRPC's status codes, with ``grpc.StatusCode``'s names: the built-in client never imports grpcio."""

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


@dataclass(slots=True)
class Outcome:
    """What one attempt came to."""

    ok: bool
    _: KW_ONLY
    retryable: bool = False
    retry_after: float | None = None  # seconds, from RetryInfo or Retry-After
    rejected: int = 0  # partial_success: records the server refused (never retried)
    detail: str = ""  # for a diagnostic line; never contains headers
    reconnect: bool = False
    too_large: bool = False


class Transport(Protocol):
    """Sends one encoded export request at a time; never raises, never logs."""

    def start(self, signal: str, payload: bytes, timeout: float) -> Callable[[], Outcome]:
        """Send ``payload`` (an encoded Export*ServiceRequest for ``signal``, LOGS or TRACES); the
        returned call waits for its outcome.  Several may be started before their answers are read."""
        ...

    def export(self, signal: str, payload: bytes, timeout: float) -> Outcome:
        """``start()`` and wait: one request, start to answer."""
        ...

    def cancel(self) -> None:
        """Abort the requests in flight (the shutdown deadline); safe from any thread."""
        ...

    def reconnect(self) -> None:
        """Drop the connection so the next request opens a fresh one; never waits for it."""
        ...

    def close(self) -> None:
        """Close the connections, waiting a bounded time (fork() waits for this)."""
        ...


def ready(outcome: Outcome) -> Callable[[], Outcome]:
    """A started export that has already come to ``outcome``."""
    return lambda: outcome


# The specification's retryable gRPC codes; RESOURCE_EXHAUSTED only with RetryInfo.
_RETRYABLE = frozenset(
    {
        StatusCode.CANCELLED,
        StatusCode.DEADLINE_EXCEEDED,
        StatusCode.ABORTED,
        StatusCode.OUT_OF_RANGE,
        StatusCode.UNAVAILABLE,
        StatusCode.DATA_LOSS,
    }
)
_RETRYABLE_HTTP = frozenset({429, 502, 503, 504})

# RESOURCE_EXHAUSTED messages that mean "this request is too large" rather than "slow down":
# grpcio and grpc-go ("received message larger than max (N vs. M)", also "after decompression"),
# grpc-js ("Received message that decompresses to a size larger than N"), Envoy and others.
_TOO_LARGE = ("larger than max", "size larger than", "message too large", "request too large", "too big")

_S = StatusCode
# A gRPC call answered without grpc-status (a proxy): what gRPC clients infer from the HTTP status
# (gRPC's doc/http-grpc-status-mapping.md).
_HTTP_CODES = {400: _S.INTERNAL, 401: _S.UNAUTHENTICATED, 403: _S.PERMISSION_DENIED, 404: _S.UNIMPLEMENTED}
_HTTP_CODES.update(dict.fromkeys((429, 502, 503, 504), _S.UNAVAILABLE))
# RST_STREAM without a status, as gRPC maps it: REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM.
_RST_CODES = {7: _S.UNAVAILABLE, 8: _S.CANCELLED, 11: _S.RESOURCE_EXHAUSTED}
_CODES = {code.value: code for code in StatusCode}


def status_code(value: int) -> StatusCode:
    """The code of a ``grpc-status`` value; UNKNOWN for one gRPC does not define."""
    return _CODES.get(value, StatusCode.UNKNOWN)


def status_for_http(http_status: int) -> StatusCode:
    """The gRPC status a client infers from an HTTP answer that carries no ``grpc-status``."""
    return _HTTP_CODES.get(http_status, StatusCode.UNKNOWN)


def status_for_reset(error_code: int) -> StatusCode:
    """The gRPC status of a stream reset (HTTP/2 RST_STREAM) that carries no ``grpc-status``."""
    return _RST_CODES.get(error_code, StatusCode.INTERNAL)


def too_large(details: str) -> bool:
    """Whether a RESOURCE_EXHAUSTED message means "this request is too large"."""
    lowered = details.lower()
    return any(marker in lowered for marker in _TOO_LARGE)


def classify_grpc(code: StatusCode, details: str = "", status_details: bytes | None = None) -> Outcome:
    """The :class:`Outcome` of a failed gRPC call: its status ``code``, its message (``details``)
    and its ``grpc-status-details-bin`` trailer (a ``google.rpc.Status``, for RetryInfo)."""
    delay = retry_delay(status_details)
    detail = f"{code.name}: {details}" if details else code.name
    if "status: 413" in details or "HTTP 413" in details:  # a proxy's own answer: too large
        return Outcome(False, detail=detail, too_large=True)
    if code in _RETRYABLE:
        return Outcome(
            False,
            retryable=True,
            retry_after=delay,
            detail=detail,
            reconnect=code is StatusCode.UNAVAILABLE,
        )
    if code is StatusCode.RESOURCE_EXHAUSTED:
        return Outcome(
            False, retryable=delay is not None, retry_after=delay, detail=detail, too_large=too_large(details)
        )
    return Outcome(False, detail=detail)


def classify_http(status: int, retry_after: float | None = None, detail: str = "") -> Outcome:
    """The :class:`Outcome` of an OTLP/HTTP answer with a failing HTTP ``status``."""
    return Outcome(
        False,
        retryable=status in _RETRYABLE_HTTP,
        retry_after=retry_after,
        detail=detail or f"HTTP {status}",
        too_large=status == 413,
    )


def retry_delay(details: bytes | None) -> float | None:
    """The RetryInfo.retry_delay in a ``grpc-status-details-bin`` trailer, if any."""
    if not details:
        return None
    try:
        from google.rpc import error_details_pb2, status_pb2  # only once a collector sent details

        status = status_pb2.Status.FromString(details)
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    except Exception:
        return None
    return None


def partial_success(response: bytes, signal: str) -> tuple[int, str]:
    """(rejected count, error message) from an Export*ServiceResponse's partial_success."""
    if not response:
        return 0, ""
    try:
        if signal == LOGS:
            from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

            logs = logs_service_pb2.ExportLogsServiceResponse.FromString(response).partial_success
            return int(logs.rejected_log_records), str(logs.error_message)
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        spans = trace_service_pb2.ExportTraceServiceResponse.FromString(response).partial_success
        return int(spans.rejected_spans), str(spans.error_message)
    except Exception:
        return 0, ""


def grpc_target(endpoint: str) -> str:
    """A gRPC endpoint without its scheme: ``host:port``, or a resolver target as given."""
    for prefix in ("https://", "http://", "grpc://", "grpcs://"):
        if endpoint.lower().startswith(prefix):
            endpoint = endpoint[len(prefix) :]
            break
    return endpoint.rstrip("/")
