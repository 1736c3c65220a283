"""Test helpers around the bundled OTLP receiver: fault injection, a blackhole, client shortcuts.

``FaultyReceiver`` is :class:`highlight_logging._devtools.receiver.Receiver` plus knobs a test flips while
an exporter talks to it::

    with FaultyReceiver() as rx:
        rx.fail_next(2, grpc.StatusCode.UNAVAILABLE, retry_delay=0.1)
        ...  # exporter under test sends to rx.endpoint
        assert rx.wait_for_logs(1, timeout=5)
"""

from __future__ import annotations

import gzip as gzip_module
import logging
import selectors
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from highlight_logging._devtools.receiver import (
    Partial,
    ReceivedLog,
    ReceivedSpan,
    Receiver,
    Reject,
    RequestInfo,
    Signal,
    any_value_to_python,
    attributes_to_dict,
)

__all__ = [
    "Blackhole",
    "FaultyReceiver",
    "Partial",
    "ReceivedLog",
    "ReceivedSpan",
    "Receiver",
    "Reject",
    "RequestInfo",
    "any_value",
    "any_value_to_python",
    "attributes_to_dict",
    "export_logs",
    "export_spans",
    "free_port",
    "http_post",
    "key_values",
    "log_record",
    "logs_request",
    "retry_delay_of",
    "span",
    "spans_request",
    "status_details",
]

_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


# -- fault injection ---------------------------------------------------------------------------


@dataclass
class _Rule:
    outcome: Reject | Partial
    remaining: int | None  # None: applies until clear_faults()
    signal: Signal | None  # None: logs and traces


class FaultyReceiver(Receiver):
    """A Receiver whose answers a test can break; every knob is thread-safe and switchable live.

    Per request: first the delay (if any) is served, then the first applicable fault wins, in
    this order: down > rules in the order they were added (fail_next / fail_always /
    partial_success).  Rejected requests are counted in :attr:`requests` but not stored.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, http_port: int | None = 0, **kwargs: Any
    ) -> None:
        super().__init__(host, port, http_port, **kwargs)
        self._faults_lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._delay = 0.0
        self._down = threading.Event()
        self._injected: list[tuple[RequestInfo, Reject | Partial]] = []

    def fail_next(
        self,
        n: int,
        code: grpc.StatusCode = _UNAVAILABLE,
        *,
        message: str = "injected failure",
        retry_delay: float | None = None,
        http_status: int | None = None,
        signal: Signal | None = None,
    ) -> None:
        """Reject the next ``n`` requests (of ``signal``, or any) with ``code`` (+ RetryInfo)."""
        self._add(Reject(code, message, retry_delay, http_status), n, signal)

    def fail_always(
        self,
        code: grpc.StatusCode = _UNAVAILABLE,
        *,
        message: str = "injected failure",
        retry_delay: float | None = None,
        http_status: int | None = None,
        signal: Signal | None = None,
    ) -> None:
        """Reject every request (of ``signal``, or any) until :meth:`clear_faults`."""
        self._add(Reject(code, message, retry_delay, http_status), None, signal)

    def partial_success(
        self, rejected: int, message: str = "", *, n: int | None = None, signal: Signal | None = None
    ) -> None:
        """Answer with a partial_success for the next ``n`` requests (None: until cleared)."""
        self._add(Partial(rejected, message), n, signal)

    def set_delay(self, seconds: float) -> None:
        """Hold every response ``seconds`` before answering (0 disables; stop() interrupts)."""
        with self._faults_lock:
            self._delay = seconds

    def go_down(self) -> None:
        """Answer every request UNAVAILABLE (HTTP 503) until :meth:`come_up`."""
        self._down.set()

    def come_up(self) -> None:
        """End the outage started by :meth:`go_down`."""
        self._down.clear()

    @property
    def is_down(self) -> bool:
        return self._down.is_set()

    def clear_faults(self) -> None:
        """Remove all rules, the delay and the outage."""
        with self._faults_lock:
            self._rules.clear()
            self._delay = 0.0
        self._down.clear()

    @property
    def injected(self) -> list[tuple[RequestInfo, Reject | Partial]]:
        """Every fault actually applied, with the request it hit, in order."""
        with self._faults_lock:
            return list(self._injected)

    def intercept(self, info: RequestInfo) -> Reject | Partial | None:
        with self._faults_lock:
            delay = self._delay
        if delay > 0:
            self._stopping.wait(delay)  # an Event, so stop() cuts the delay short
        outcome: Reject | Partial | None = None
        with self._faults_lock:
            if self._down.is_set():
                outcome = Reject(_UNAVAILABLE, "collector down (injected)")
            else:
                for rule in self._rules:
                    if rule.signal in (None, info.signal) and rule.remaining != 0:
                        if rule.remaining is not None:
                            rule.remaining -= 1
                        outcome = rule.outcome
                        break
            if outcome is not None:
                self._injected.append((info, outcome))
        return outcome

    def _add(self, outcome: Reject | Partial, n: int | None, signal: Signal | None) -> None:
        with self._faults_lock:
            self._rules.append(_Rule(outcome, n, signal))


# -- unreachable collectors --------------------------------------------------------------------


class Blackhole:
    """A loopback TCP server that accepts connections and never reads or answers them.

    For "collector blackholed" tests: connects succeed, every call runs into its deadline.
    Connections are closed on :meth:`stop`.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.create_server((host, 0), backlog=64)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._cond = threading.Condition()
        self._wake_r, self._wake_w = socket.socketpair()  # lets stop() wake the selector
        self._thread = threading.Thread(target=self._run, name="blackhole", daemon=True)
        self._started = False

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def stop(self) -> None:
        if self._started:
            self._wake_w.send(b"x")
            self._thread.join()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        with self._cond:
            for conn in self._conns:
                conn.close()

    def __enter__(self) -> Blackhole:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def connections(self) -> int:
        """How many connections were accepted so far."""
        with self._cond:
            return len(self._conns)

    def wait_for_connections(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` connections were accepted; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._conns) >= n, timeout)

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    conn, _addr = self._listener.accept()
                    with self._cond:
                        self._conns.append(conn)  # held open, never read
                        self._cond.notify_all()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (connects are refused); tiny race if someone binds it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


# -- client side -------------------------------------------------------------------------------


def export_logs(
    target: str,
    request: logs_service_pb2.ExportLogsServiceRequest,
    *,
    timeout: float = 5.0,
    compression: grpc.Compression = grpc.Compression.Gzip,
) -> logs_service_pb2.ExportLogsServiceResponse:
    """One gRPC logs Export on a fresh channel; raises grpc.RpcError on failure."""
    with grpc.insecure_channel(target, compression=compression) as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)  # type: ignore[no-untyped-call]
        response: logs_service_pb2.ExportLogsServiceResponse = stub.Export(request, timeout=timeout)
        return response


def export_spans(
    target: str,
    request: trace_service_pb2.ExportTraceServiceRequest,
    *,
    timeout: float = 5.0,
    compression: grpc.Compression = grpc.Compression.Gzip,
) -> trace_service_pb2.ExportTraceServiceResponse:
    """One gRPC traces Export on a fresh channel; raises grpc.RpcError on failure."""
    with grpc.insecure_channel(target, compression=compression) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        response: trace_service_pb2.ExportTraceServiceResponse = stub.Export(request, timeout=timeout)
        return response


def http_post(
    url: str,
    body: bytes,
    *,
    gzip: bool = False,
    timeout: float = 5.0,
    content_type: str = "application/x-protobuf",
) -> tuple[int, Mapping[str, str], bytes]:
    """POST a body (optionally gzip-encoded); returns (status, headers, body), also for 4xx/5xx."""
    headers = {"Content-Type": content_type}
    if gzip:
        body = gzip_module.compress(body)
        headers["Content-Encoding"] = "gzip"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read()


def status_details(err: grpc.RpcError) -> Any:
    """The google.rpc.Status from a failed call's ``grpc-status-details-bin``, or None."""
    trailing: Sequence[tuple[str, str | bytes]] = (
        (err.trailing_metadata() or ()) if isinstance(err, grpc.Call) else ()
    )
    for key, value in trailing:
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return None


def retry_delay_of(status: Any) -> float | None:
    """The RetryInfo delay in seconds packed in a google.rpc.Status (or an RpcError), or None."""
    if isinstance(status, grpc.RpcError):
        status = status_details(status)
    if status is None:
        return None
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            seconds: float = info.retry_delay.ToNanoseconds() / 1e9
            return seconds
    return None


# -- request builders --------------------------------------------------------------------------


def any_value(value: Any) -> AnyValue:
    """Encode a plain Python value (str/bool/int/float/bytes/None/list/dict) as an AnyValue."""
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, Mapping):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(value)))
    if isinstance(value, Sequence):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    raise TypeError(f"cannot encode {type(value).__name__} as AnyValue")


def key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


def log_record(
    body: Any = "hello",
    *,
    severity_text: str = "INFO",
    severity_number: int = 9,
    attributes: Mapping[str, Any] | None = None,
    time_ns: int | None = None,
    trace_id: bytes = b"",
    span_id: bytes = b"",
) -> LogRecord:
    now = time.time_ns() if time_ns is None else time_ns
    return LogRecord(
        time_unix_nano=now,
        observed_time_unix_nano=now,
        severity_text=severity_text,
        severity_number=severity_number,  # type: ignore[arg-type]
        body=any_value(body),
        attributes=key_values(attributes or {}),
        trace_id=trace_id,
        span_id=span_id,
    )


def logs_request(
    *records: LogRecord, service: str = "test-service", scope: str = "test.scope"
) -> logs_service_pb2.ExportLogsServiceRequest:
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=key_values({"service.name": service})),
                scope_logs=[ScopeLogs(scope=InstrumentationScope(name=scope), log_records=list(records))],
            )
        ]
    )


def span(
    name: str = "op",
    *,
    trace_id: bytes = b"\x01" * 16,
    span_id: bytes = b"\x02" * 8,
    error: str | None = None,
    exception: tuple[str, str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Span:
    """A finished span; ``exception=(type, message, stacktrace)`` adds an ``exception`` event."""
    start = time.time_ns()
    result = Span(
        trace_id=trace_id,
        span_id=span_id,
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=start + 1_500_000,
        attributes=key_values(attributes or {}),
    )
    if error is not None:
        result.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    if exception is not None:
        exc_type, message, stacktrace = exception
        event = result.events.add(name="exception", time_unix_nano=start)
        event.attributes.extend(
            key_values(
                {"exception.type": exc_type, "exception.message": message, "exception.stacktrace": stacktrace}
            )
        )
    return result


def spans_request(
    *spans: Span, service: str = "test-service", scope: str = "test.scope"
) -> trace_service_pb2.ExportTraceServiceRequest:
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=key_values({"service.name": service})),
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name=scope), spans=list(spans))],
            )
        ]
    )


class ByteCounter:
    """A loopback TCP proxy that counts the bytes a client sends, to see compression on the wire."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self._target = (host, target_port)
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> ByteCounter:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._socks += [client, upstream]
            for src, dst, count in ((client, upstream, True), (upstream, client, False)):
                t = threading.Thread(target=self._pipe, args=(src, dst, count), daemon=True)
                t.start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if count:
                    with self._lock:
                        self.sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def handler_logger(name: str, **settings: Any) -> logging.Logger:
    """A logger at DEBUG whose only handler is a fresh HighlightHandler with ``settings``."""
    from highlight_logging import HighlightHandler

    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(HighlightHandler(**settings))
    return logger
