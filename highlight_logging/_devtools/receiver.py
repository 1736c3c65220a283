"""A small local OTLP receiver: gRPC (and optionally OTLP/HTTP) logs and traces, kept in memory.

Used by ``highlight-logging serve`` (to see what an app sends), by the demo and by the test suite.
It is a real server built on the opentelemetry-proto services, so whatever the exporter does on
the wire (gzip, retries, deadlines) is exercised for real.

Everything received is kept in memory (see :meth:`Receiver.log_records`), can be printed readably
(``printer``) and appended to a JSON-lines file (``jsonl_path``).  Subclasses may override
:meth:`Receiver.intercept` to inject faults; ``tests/otlp_receiver.py`` does exactly that.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
import socket
import threading
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import IO, Any, Literal, NamedTuple, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2, json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

__all__ = [
    "Partial",
    "PyValue",
    "ReceivedLog",
    "ReceivedSpan",
    "Receiver",
    "Reject",
    "RequestInfo",
    "Signal",
    "any_value_to_python",
    "attributes_to_dict",
    "http_status_for",
]

#: A decoded AnyValue: bytes stay bytes here; JSON output turns them into base64 strings.
PyValue = str | bool | int | float | bytes | None | list["PyValue"] | dict[str, "PyValue"]
Signal = Literal["logs", "traces"]
Transport = Literal["grpc", "http"]

_GRPC_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_HTTP_PATHS: dict[str, Signal] = {"/v1/logs": "logs", "/v1/traces": "traces"}
_EXCEPTION_KEYS = ("exception.type", "exception.message", "exception.stacktrace")
_BARE = re.compile(r'^[^\s="\\]+$')

# gRPC code -> HTTP status, as in google/rpc/code.proto (OTLP/HTTP uses these for failures).
_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_SEVERITY_NAMES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
_SPAN_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}
_R = TypeVar("_R", bound="Receiver")  # so ``with FaultyReceiver() as rx`` keeps the subclass type


def http_status_for(code: grpc.StatusCode) -> int:
    """The HTTP status OTLP/HTTP uses for a gRPC status code."""
    return _HTTP_STATUS.get(code, 500)


@dataclass(frozen=True)
class RequestInfo:
    """One export request as it arrived, recorded before any fault is applied."""

    transport: Transport
    signal: Signal
    items: int  #: log records or spans in the request
    size: int  #: serialized protobuf size (uncompressed)
    #: HTTP: body length as received (compressed if gzip).  gRPC: None, grpc hides wire bytes.
    wire_size: int | None
    #: HTTP: the Content-Encoding header (None if absent).  gRPC: always None, because grpc strips
    #: ``grpc-encoding`` from ``invocation_metadata()`` and decompresses transparently.
    encoding: str | None


@dataclass(frozen=True)
class Reject:
    """Fail the export with ``code`` (HTTP: :func:`http_status_for` unless ``http_status`` is set).

    ``retry_delay`` (seconds) attaches a ``google.rpc.RetryInfo`` to the gRPC status details
    (``grpc-status-details-bin``); over HTTP the same Status is the body and ``Retry-After``
    carries the delay rounded up to whole seconds.
    """

    code: grpc.StatusCode
    message: str = ""
    retry_delay: float | None = None
    http_status: int | None = None


@dataclass(frozen=True)
class Partial:
    """Accept the export but answer with a ``partial_success`` (all records are still kept)."""

    rejected: int
    message: str = ""


class ReceivedLog(NamedTuple):
    """One received log record with the resource and scope it was sent under."""

    resource: Resource
    scope: InstrumentationScope
    record: LogRecord

    @property
    def body(self) -> PyValue:
        return any_value_to_python(self.record.body)

    @property
    def attributes(self) -> dict[str, PyValue]:
        return attributes_to_dict(self.record.attributes)

    @property
    def resource_attributes(self) -> dict[str, PyValue]:
        return attributes_to_dict(self.resource.attributes)


class ReceivedSpan(NamedTuple):
    """One received span with the resource and scope it was sent under."""

    resource: Resource
    scope: InstrumentationScope
    span: Span

    @property
    def attributes(self) -> dict[str, PyValue]:
        return attributes_to_dict(self.span.attributes)

    @property
    def resource_attributes(self) -> dict[str, PyValue]:
        return attributes_to_dict(self.resource.attributes)


def any_value_to_python(value: AnyValue) -> PyValue:
    """Decode an OTLP AnyValue into plain Python (unset -> None; kvlist -> dict; bytes kept)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value_to_python(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_to_dict(value.kvlist_value.values)
    result: PyValue = getattr(value, kind)
    return result


def attributes_to_dict(attributes: Sequence[KeyValue]) -> dict[str, PyValue]:
    """Decode repeated KeyValue into a dict (a duplicated key keeps its last value)."""
    return {kv.key: any_value_to_python(kv.value) for kv in attributes}


class Receiver:
    """A local OTLP receiver for logs and traces over gRPC and, optionally, OTLP/HTTP.

    ``port=0`` / ``http_port=0`` pick free ports; ``http_port=None`` serves gRPC only.  After
    :meth:`start`, :attr:`port` and :attr:`http_port` are the bound ports.  ``on_logs`` /
    ``on_spans`` are called with every accepted request (on a server thread), ``on_raw`` with its
    signal, its protobuf bytes and its record count (the viewer's process decodes them); ``printer`` gets
    readable lines; ``jsonl_path`` is appended one JSON object per log record and per span;
    ``retain=False`` keeps no requests in memory (a long-running ``serve``), only their counts.

    Accepted requests are stored, then waiters are woken, so after :meth:`wait_for_logs` returns
    True the printer, JSONL file and callbacks have all seen those records.

    Fault injection: override :meth:`intercept`.  It may block; sleep with
    ``self._stopping.wait(seconds)`` so :meth:`stop` interrupts it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        http_port: int | None = None,
        *,
        on_logs: Callable[[logs_service_pb2.ExportLogsServiceRequest], None] | None = None,
        on_spans: Callable[[trace_service_pb2.ExportTraceServiceRequest], None] | None = None,
        on_raw: Callable[[Signal, bytes, int], None] | None = None,
        printer: Callable[[str], None] | None = None,
        jsonl_path: str | None = None,
        retain: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.http_port = http_port
        self._on_logs = on_logs
        self._on_spans = on_spans
        self._on_raw = on_raw
        self._printer = printer
        self._jsonl_path = jsonl_path
        self._retain = (
            retain  # False: only count; the callbacks (e.g. the viewer's store) keep what they need
        )
        # RLock-based so wait_for() predicates may call the locked accessors below.
        self._cond = threading.Condition()
        self._requests: list[RequestInfo] = []
        self._logs: list[logs_service_pb2.ExportLogsServiceRequest] = []
        self._spans: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._n_logs = 0
        self._n_spans = 0
        # Keeps one request's printed lines and JSONL objects together under concurrency.
        self._out_lock = threading.Lock()
        self._jsonl: IO[str] | None = None
        self._stopping = threading.Event()
        self._started = False
        self._executor: ThreadPoolExecutor | None = None
        self._grpc: grpc.Server | None = None
        self._httpd: _HTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and start serving; a Receiver is started at most once."""
        if self._started:
            raise RuntimeError("Receiver already started")
        self._started = True
        if self._jsonl_path is not None:
            self._jsonl = open(self._jsonl_path, "a", encoding="utf-8")  # noqa: SIM115 (closed in stop)
        try:
            self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="otlp-receiver")
            # so_reuseport off: otherwise a second server on a busy port binds silently and
            # steals half the connections instead of failing.
            server = grpc.server(self._executor, options=[("grpc.so_reuseport", 0)])
            self._grpc = server
            server.add_generic_rpc_handlers(_grpc_handlers(self))
            self.port = server.add_insecure_port(f"{_bracket(self.host)}:{self.port}")
            if self.http_port is not None:
                self._httpd = _HTTPServer(self, (self.host, self.http_port))
                self.http_port = self._httpd.server_address[1]
                # A short poll interval keeps stop() (which waits one poll) fast.
                self._http_thread = threading.Thread(
                    target=self._httpd.serve_forever, args=(0.05,), name="otlp-receiver-http", daemon=True
                )
            server.start()
            if self._http_thread is not None:
                self._http_thread.start()
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float | None = 0) -> None:
        """Stop serving; in-flight gRPC calls get ``grace`` seconds (None: wait for them all).

        Injected delays are interrupted; requests still in flight are answered UNAVAILABLE.
        """
        self._stopping.set()
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
        if self._httpd is not None:
            if self._http_thread is not None and self._http_thread.is_alive():
                self._httpd.shutdown()
                self._http_thread.join()
            self._httpd.server_close()
            self._httpd.close_connections()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        with self._out_lock:
            if self._jsonl is not None:
                self._jsonl.close()
                self._jsonl = None

    def __enter__(self: _R) -> _R:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """The gRPC target, e.g. ``127.0.0.1:4317``."""
        return f"{_bracket(self.host)}:{self.port}"

    @property
    def http_endpoint(self) -> str | None:
        """The OTLP/HTTP base URL (append ``/v1/logs``), or None when HTTP is off."""
        if self.http_port is None:
            return None
        return f"http://{_bracket(self.host)}:{self.http_port}"

    # -- what was received -------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestInfo]:
        """Every export request that arrived (including rejected ones), in arrival order."""
        with self._cond:
            return list(self._requests)

    @property
    def requests_logs(self) -> list[logs_service_pb2.ExportLogsServiceRequest]:
        """Accepted log export requests (a snapshot copy)."""
        with self._cond:
            return list(self._logs)

    @property
    def requests_spans(self) -> list[trace_service_pb2.ExportTraceServiceRequest]:
        """Accepted trace export requests (a snapshot copy)."""
        with self._cond:
            return list(self._spans)

    def log_records(self) -> list[ReceivedLog]:
        """All accepted log records, flattened, in arrival order."""
        return [
            ReceivedLog(rl.resource, sl.scope, rec)
            for req in self.requests_logs
            for rl in req.resource_logs
            for sl in rl.scope_logs
            for rec in sl.log_records
        ]

    def spans(self) -> list[ReceivedSpan]:
        """All accepted spans, flattened, in arrival order."""
        return [
            ReceivedSpan(rs.resource, ss.scope, span)
            for req in self.requests_spans
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def counts(self) -> tuple[int, int]:
        """Log records and spans accepted so far (also when ``retain=False`` keeps none of them)."""
        with self._cond:
            return self._n_logs, self._n_spans

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` is true (re-checked on every arrival); False on timeout."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for_logs(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` log records were accepted; False on timeout."""
        return self.wait_for(lambda: self._n_logs >= n, timeout)

    def wait_for_spans(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` spans were accepted; False on timeout."""
        return self.wait_for(lambda: self._n_spans >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` requests arrived (accepted or not); False on timeout."""
        return self.wait_for(lambda: len(self._requests) >= n, timeout)

    def clear(self) -> None:
        """Forget everything received so far (counts used by the wait_* methods too)."""
        with self._cond:
            self._requests.clear()
            self._logs.clear()
            self._spans.clear()
            self._n_logs = self._n_spans = 0

    # -- fault-injection hook ------------------------------------------------------------------

    def intercept(self, info: RequestInfo) -> Reject | Partial | None:
        """Decide a request's fate before it is accepted: None accepts it normally.

        Called on a server thread for every decoded request; the default accepts everything.
        """
        return None

    # -- request handling ----------------------------------------------------------------------

    def _handle(
        self,
        info: RequestInfo,
        request: logs_service_pb2.ExportLogsServiceRequest | trace_service_pb2.ExportTraceServiceRequest,
        raw: bytes = b"",
    ) -> Reject | Partial | None:
        with self._cond:
            self._requests.append(info)
            self._cond.notify_all()
        outcome = self.intercept(info)
        if self._stopping.is_set():
            # An injected delay was cut short by stop(): answer like a collector going away.
            return Reject(grpc.StatusCode.UNAVAILABLE, "receiver is stopping")
        if isinstance(outcome, Reject):
            return outcome
        self._accept(info, request, raw)
        return outcome

    def _accept(
        self,
        info: RequestInfo,
        request: logs_service_pb2.ExportLogsServiceRequest | trace_service_pb2.ExportTraceServiceRequest,
        raw: bytes = b"",
    ) -> None:
        if self._on_raw is not None:
            self._on_raw(info.signal, raw or request.SerializeToString(), info.items)
        # Side effects first, store + notify last: a woken waiter sees everything done.
        if isinstance(request, logs_service_pb2.ExportLogsServiceRequest):
            self._output_logs(info, request)
            if self._on_logs is not None:
                self._on_logs(request)
            with self._cond:
                if self._retain:
                    self._logs.append(request)
                self._n_logs += info.items
                self._cond.notify_all()
        else:
            self._output_spans(info, request)
            if self._on_spans is not None:
                self._on_spans(request)
            with self._cond:
                if self._retain:
                    self._spans.append(request)
                self._n_spans += info.items
                self._cond.notify_all()

    # -- output --------------------------------------------------------------------------------

    def _output_logs(self, info: RequestInfo, request: logs_service_pb2.ExportLogsServiceRequest) -> None:
        if self._printer is None and self._jsonl is None:
            return
        with self._out_lock:
            for rl in request.resource_logs:
                resource = attributes_to_dict(rl.resource.attributes)
                n = sum(len(sl.log_records) for sl in rl.scope_logs)
                self._print(_header("log record(s)", info, resource, n))
                for sl in rl.scope_logs:
                    scope = _scope_dict(sl.scope)
                    for rec in sl.log_records:
                        if self._printer is not None:
                            for line in _format_log(sl.scope.name, rec):
                                self._printer(line)
                        self._write_json(
                            {"kind": "log", "resource": resource, "scope": scope, **_message_to_python(rec)}
                        )
            if self._jsonl is not None:
                self._jsonl.flush()

    def _output_spans(self, info: RequestInfo, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        if self._printer is None and self._jsonl is None:
            return
        with self._out_lock:
            for rs in request.resource_spans:
                resource = attributes_to_dict(rs.resource.attributes)
                n = sum(len(ss.spans) for ss in rs.scope_spans)
                self._print(_header("span(s)", info, resource, n))
                for ss in rs.scope_spans:
                    scope = _scope_dict(ss.scope)
                    for span in ss.spans:
                        if self._printer is not None:
                            for line in _format_span(ss.scope.name, span):
                                self._printer(line)
                        fields = _message_to_python(span)
                        # Span has its own ``kind`` field; keep the top-level one for "log"/"span".
                        fields["span_kind"] = fields.pop("kind")
                        self._write_json({"kind": "span", "resource": resource, "scope": scope, **fields})
            if self._jsonl is not None:
                self._jsonl.flush()

    def _print(self, line: str) -> None:
        if self._printer is not None:
            self._printer(line)

    def _write_json(self, obj: dict[str, PyValue]) -> None:
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(obj, ensure_ascii=False, default=_json_default) + "\n")


# -- gRPC ----------------------------------------------------------------------------------------


def _grpc_handlers(receiver: Receiver) -> tuple[grpc.GenericRpcHandler[Any, Any], ...]:
    """The two Export methods, as the generated ``add_*Servicer_to_server`` would register them,
    but each request arrives with its bytes as on the wire (uncompressed): re-serializing it for
    ``ByteSize()`` cost ~0.3 ms per 512-record request, on top of ~0.4 ms parsing it."""

    def logs(
        sized: tuple[bytes, logs_service_pb2.ExportLogsServiceRequest], context: grpc.ServicerContext
    ) -> Any:
        raw, request = sized
        items = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        outcome = receiver._handle(RequestInfo("grpc", "logs", items, len(raw), None, None), request, raw)
        if isinstance(outcome, Reject):
            _grpc_abort(context, outcome)
        return _logs_response(outcome)

    def traces(
        sized: tuple[bytes, trace_service_pb2.ExportTraceServiceRequest], context: grpc.ServicerContext
    ) -> Any:
        raw, request = sized
        items = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        outcome = receiver._handle(RequestInfo("grpc", "traces", items, len(raw), None, None), request, raw)
        if isinstance(outcome, Reject):
            _grpc_abort(context, outcome)
        return _trace_response(outcome)

    def method(call: Callable[..., Any], parse: Callable[[bytes], Message], reply: type[Message]) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=lambda raw: (raw, parse(raw)),
            response_serializer=reply.SerializeToString,
        )

    return (
        grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.logs.v1.LogsService",
            {
                "Export": method(
                    logs,
                    logs_service_pb2.ExportLogsServiceRequest.FromString,
                    logs_service_pb2.ExportLogsServiceResponse,
                )
            },
        ),
        grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {
                "Export": method(
                    traces,
                    trace_service_pb2.ExportTraceServiceRequest.FromString,
                    trace_service_pb2.ExportTraceServiceResponse,
                )
            },
        ),
    )


def _grpc_abort(context: grpc.ServicerContext, reject: Reject) -> NoReturn:
    if reject.retry_delay is not None:
        details = _status_proto(reject).SerializeToString()
        context.set_trailing_metadata(((_GRPC_STATUS_DETAILS_KEY, details),))
    context.abort(reject.code, reject.message)


def _status_proto(reject: Reject) -> Any:
    """google.rpc.Status for a rejection, with a packed RetryInfo when a delay is given."""
    status = status_pb2.Status(code=reject.code.value[0], message=reject.message)
    if reject.retry_delay is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(reject.retry_delay * 1e9))
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.append(packed)
    return status


def _logs_response(outcome: Partial | None) -> logs_service_pb2.ExportLogsServiceResponse:
    if outcome is None:
        return logs_service_pb2.ExportLogsServiceResponse()
    return logs_service_pb2.ExportLogsServiceResponse(
        partial_success=logs_service_pb2.ExportLogsPartialSuccess(
            rejected_log_records=outcome.rejected, error_message=outcome.message
        )
    )


def _trace_response(outcome: Partial | None) -> trace_service_pb2.ExportTraceServiceResponse:
    if outcome is None:
        return trace_service_pb2.ExportTraceServiceResponse()
    return trace_service_pb2.ExportTraceServiceResponse(
        partial_success=trace_service_pb2.ExportTracePartialSuccess(
            rejected_spans=outcome.rejected, error_message=outcome.message
        )
    )


# -- OTLP/HTTP -----------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: Receiver, address: tuple[str, int]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.receiver = receiver
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _HTTPHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut idle keep-alive connections, or their threads would keep serving after stop."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _HTTPHandler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, like the OTLP/HTTP exporters expect
    timeout = 60  # idle keep-alive connections eventually free their thread
    _as_json = False

    def do_POST(self) -> None:
        self._as_json = False
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._reply_error(411, grpc.StatusCode.INVALID_ARGUMENT, "Content-Length required", close=True)
            return
        raw = self.rfile.read(int(length))  # read first, so the keep-alive stream stays in sync
        signal = _HTTP_PATHS.get(self.path.split("?", 1)[0])
        if signal is None:
            self._reply_error(404, grpc.StatusCode.NOT_FOUND, f"no OTLP endpoint at {self.path}")
            return
        ctype = (self.headers.get("Content-Type") or "application/x-protobuf").split(";")[0].strip()
        self._as_json = ctype == "application/json"  # OTLP/HTTP's JSON encoding: answered in JSON too
        if ctype != "application/x-protobuf" and not self._as_json:
            self._reply_error(
                415,
                grpc.StatusCode.INVALID_ARGUMENT,
                "only application/x-protobuf and application/json are supported",
            )
            return
        encoding = self.headers.get("Content-Encoding")
        body = raw
        if encoding is not None and encoding.strip().lower() == "gzip":
            try:
                body = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as exc:
                self._reply_error(400, grpc.StatusCode.INVALID_ARGUMENT, f"bad gzip body: {exc}")
                return
        elif encoding is not None and encoding.strip().lower() not in ("", "identity"):
            self._reply_error(
                415, grpc.StatusCode.INVALID_ARGUMENT, f"unsupported Content-Encoding {encoding}"
            )
            return
        if self._as_json:
            try:
                body = _otlp_json_to_protobuf(signal, body)
            except Exception as exc:  # ParseError, ValueError, and whatever else malformed JSON leads to
                self._reply_error(400, grpc.StatusCode.INVALID_ARGUMENT, f"bad JSON body: {exc}")
                return
        try:
            self._export(signal, body, len(raw), encoding)
        except Exception as exc:  # a failing callback/printer must still get the client an answer
            self._reply_error(500, grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    def _export(self, signal: Signal, body: bytes, wire_size: int, encoding: str | None) -> None:
        request: logs_service_pb2.ExportLogsServiceRequest | trace_service_pb2.ExportTraceServiceRequest
        try:
            if signal == "logs":
                request = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
                items = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
            else:
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                items = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        except DecodeError as exc:
            self._reply_error(400, grpc.StatusCode.INVALID_ARGUMENT, f"bad protobuf body: {exc}")
            return
        info = RequestInfo("http", signal, items, len(body), wire_size, encoding)
        outcome = self.server.receiver._handle(info, request, body)
        if isinstance(outcome, Reject):
            headers = {}
            if outcome.retry_delay is not None:
                headers["Retry-After"] = str(math.ceil(outcome.retry_delay))
            status = outcome.http_status or http_status_for(outcome.code)
            self._reply(status, self._encode(_status_proto(outcome)), headers)
            return
        response = _logs_response(outcome) if signal == "logs" else _trace_response(outcome)
        self._reply(200, self._encode(response))

    def _reply_error(
        self, http_status: int, code: grpc.StatusCode, message: str, *, close: bool = False
    ) -> None:
        body = self._encode(_status_proto(Reject(code, message)))
        self._reply(http_status, body, {"Connection": "close"} if close else {})
        if close:
            self.close_connection = True

    def _encode(self, message: Message) -> bytes:
        if self._as_json:
            return json_format.MessageToJson(message).encode("utf-8")
        return message.SerializeToString()

    def _reply(self, http_status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(http_status)
        self.send_header("Content-Type", "application/json" if self._as_json else "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the receiver prints what it received; access logs would only add noise


# -- formatting ----------------------------------------------------------------------------------


_JSON_IDS = frozenset(("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"))


def _otlp_json_to_protobuf(signal: Signal, body: bytes) -> bytes:
    """An OTLP/JSON request as protobuf bytes: OTLP writes ids in hex where protobuf's JSON has base64."""

    def ids_to_base64(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: base64.b64encode(bytes.fromhex(v)).decode("ascii")
                if k in _JSON_IDS and isinstance(v, str)
                else ids_to_base64(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [ids_to_base64(v) for v in node]
        return node

    message: Message = (
        logs_service_pb2.ExportLogsServiceRequest()
        if signal == "logs"
        else trace_service_pb2.ExportTraceServiceRequest()
    )
    json_format.ParseDict(ids_to_base64(json.loads(body)), message, ignore_unknown_fields=True)
    return message.SerializeToString()


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _json_default(obj: object) -> str:
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode("ascii")
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _scope_dict(scope: InstrumentationScope) -> dict[str, PyValue]:
    return {"name": scope.name, "version": scope.version, "attributes": attributes_to_dict(scope.attributes)}


def _message_to_python(msg: Message) -> dict[str, PyValue]:
    """Every field of an OTLP message as plain values: ids hex, AnyValues and attributes decoded."""
    out: dict[str, PyValue] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.message_type is not None and _is_repeated(field):
            if field.message_type.full_name == KeyValue.DESCRIPTOR.full_name:
                out[field.name] = attributes_to_dict(value)
            else:
                out[field.name] = [_value_to_python(v) for v in value]
        elif _is_repeated(field):
            out[field.name] = [_value_to_python(v) for v in value]
        elif isinstance(value, bytes) and field.name.endswith("_id"):
            out[field.name] = value.hex()
        else:
            out[field.name] = _value_to_python(value)
    return out


def _value_to_python(value: object) -> PyValue:
    if isinstance(value, AnyValue):
        return any_value_to_python(value)
    if isinstance(value, Message):
        return _message_to_python(value)
    if isinstance(value, (str, bool, int, float, bytes)):
        return value
    raise TypeError(f"unexpected protobuf value {type(value).__name__}")


def _is_repeated(field: Any) -> bool:
    # protobuf >= 5.28 has is_repeated; 7 removed label; older versions only have label.
    is_repeated = getattr(field, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return bool(field.label == field.LABEL_REPEATED)


def _format_time(ns: int) -> str:
    if ns <= 0:
        return "-" * 24
    try:
        dt = datetime.fromtimestamp(ns // 1_000_000_000, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return str(ns)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{(ns // 1_000_000) % 1000:03d}Z"


def _render(value: PyValue) -> str:
    """An attribute value for ``key=value``: simple strings bare, everything else JSON."""
    if isinstance(value, str) and _BARE.match(value):
        return value
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _render_body(value: PyValue) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _severity(rec: LogRecord) -> str:
    if rec.severity_text:
        return rec.severity_text
    number: int = rec.severity_number
    if 1 <= number <= 24:
        return _SEVERITY_NAMES[(number - 1) // 4]
    return "-"


def _header(what: str, info: RequestInfo, resource: dict[str, PyValue], n: int) -> str:
    service = resource.get("service.name", "?")
    return f"── {n} {what} from service.name={_render(service)} via {info.transport} ({info.size} bytes)"


def _exception_lines(attrs: dict[str, PyValue]) -> list[str]:
    exc_type = attrs.get("exception.type")
    message = attrs.get("exception.message")
    head = f"    !! {_render_body(exc_type)}"
    if message is not None:
        head += f": {_render_body(message)}"
    lines = [head]
    stacktrace = attrs.get("exception.stacktrace")
    if isinstance(stacktrace, str):
        lines.extend("       " + line for line in stacktrace.rstrip("\n").splitlines())
    return lines


def _format_log(scope: str, rec: LogRecord) -> list[str]:
    attrs = attributes_to_dict(rec.attributes)
    parts = [_format_time(rec.time_unix_nano or rec.observed_time_unix_nano), f"{_severity(rec):<5}"]
    if scope:
        parts.append(f"[{scope}]")
    parts.append(_render_body(any_value_to_python(rec.body)))
    has_exception = "exception.type" in attrs
    shown = {k: v for k, v in attrs.items() if not (has_exception and k in _EXCEPTION_KEYS)}
    parts.extend(f"{k}={_render(v)}" for k, v in shown.items())
    lines = [" ".join(parts)]
    if has_exception:
        lines.extend(_exception_lines(attrs))
    return lines


def _format_span(scope: str, span: Span) -> list[str]:
    parts = [_format_time(span.start_time_unix_nano), "SPAN "]
    if scope:
        parts.append(f"[{scope}]")
    status = _SPAN_STATUS.get(span.status.code, str(span.status.code))
    if span.status.message:
        status += f"({span.status.message})"
    parts += [span.name, f"trace={span.trace_id.hex()}", f"span={span.span_id.hex()}", f"status={status}"]
    if span.end_time_unix_nano >= span.start_time_unix_nano > 0:
        parts.append(f"{(span.end_time_unix_nano - span.start_time_unix_nano) / 1e6:.1f}ms")
    lines = [" ".join(parts)]
    for event in span.events:
        if event.name == "exception":
            lines.extend(_exception_lines(attributes_to_dict(event.attributes)))
    return lines
