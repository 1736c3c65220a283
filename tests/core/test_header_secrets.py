"""Header values and other secrets from the settings: never printed, trimmed as the OTLP exporter
specification asks, and never sent when they can't be (on OTLP/HTTP, grpcio and our gRPC client)."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

import highlight_logging
from highlight_logging import HighlightHandler
from highlight_logging._core.settings import Settings, resolve
from highlight_logging._export import process as _process
from highlight_logging._transport import LOGS
from highlight_logging._transport.http import HttpTransport

SECRET = "hl-" + "Qz7" * 8  # made up here; stands for an API key


class _GrpcRecorder(grpc.GenericRpcHandler):
    def __init__(self) -> None:
        self.metadata: list[dict[str, Any]] = []

    def service(self, details: Any) -> Any:
        self.metadata.append(dict(details.invocation_metadata))
        return grpc.unary_unary_rpc_method_handler(lambda request, context: b"")


class _HttpRecorder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.headers_seen: list[dict[str, str]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                recorder.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture(params=["http", "h2", "grpcio"])
def collector(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """A collector that records the headers (metadata) of each request, and the settings to reach it."""
    if request.param == "http":
        server = _HttpRecorder()
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        settings = {"endpoint": f"http://127.0.0.1:{server.server_address[1]}", "protocol": "http/protobuf"}
        yield settings, server.headers_seen  # type: ignore[misc]
        _process.reset_for_tests()
        server.shutdown()
        server.server_close()
        return
    recorder = _GrpcRecorder()
    grpc_server = grpc.server(ThreadPoolExecutor(max_workers=2), handlers=[recorder])
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    yield {"endpoint": f"http://127.0.0.1:{port}", "grpc_client": request.param}, recorder.metadata
    _process.reset_for_tests()
    grpc_server.stop(0)


def _send(**settings: Any) -> None:
    log = logging.getLogger("header.secrets")
    log.handlers.clear()
    log.propagate = False
    log.addHandler(HighlightHandler(**settings))
    log.warning("hello")
    assert highlight_logging.flush(10)
    log.handlers.clear()


@pytest.mark.parametrize("via", ["keyword", "environment"])
def test_a_header_read_from_a_secret_file_is_trimmed_and_sent(
    collector: tuple[dict[str, Any], list[dict[str, Any]]], via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value with a trailing newline (as read from a Kubernetes secret file) arrives trimmed on every
    transport, with the other headers."""
    settings, seen = collector
    if via == "keyword":
        settings = {**settings, "headers": {"x-api-key": f" {SECRET}\n", "x-highlight-project": "p1"}}
    else:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-api-key={SECRET}%0A,x-highlight-project=p1")
    _send(**settings)
    assert seen and seen[0]["x-api-key"] == SECRET and seen[0]["x-highlight-project"] == "p1"


def test_an_unsendable_header_from_the_environment_is_left_out_and_named_only(
    collector: tuple[dict[str, Any], list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A value with a line break inside, and an entry written with a colon: both are left out with a
    warning that names the key, the others are sent; no value is printed or sent."""
    settings, seen = collector
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_HEADERS",
        f"authorization: Bearer {SECRET},x-api-key={SECRET[:6]}%0D%0Ax-evil=1,x-highlight-project=p1",
    )
    _send(**settings)
    err = capsys.readouterr().err
    assert "'authorization'" in err and "':' instead of '='" in err and "'x-api-key'" in err
    assert SECRET not in err and SECRET[:6] not in err
    (headers,) = seen
    assert headers["x-highlight-project"] == "p1"
    assert "authorization" not in headers and "x-api-key" not in headers and "x-evil" not in headers
    assert SECRET not in repr(headers)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": f"{SECRET}\r\nx-evil: 1"},
        {"x-api-key": f"{SECRET}\x00"},
        {"x-api-key": f"{SECRET}\u00e9"},
        {"bad key": SECRET},
        f"authorization: Bearer {SECRET}",
    ],
)
def test_an_unsendable_header_keyword_is_refused_at_creation(headers: Any) -> None:
    """The handler is not created; the error names the key at most, never the value."""
    with pytest.raises(ValueError) as info:
        HighlightHandler(endpoint="http://127.0.0.1:9", headers=headers)
    assert SECRET not in str(info.value)
    with pytest.raises(ValueError):
        Settings(headers=(("x-api-key", "a\nb"),))  # however settings are made


def test_settings_and_warnings_never_show_a_header_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-api-key={SECRET}")
    settings = resolve({})
    assert dict(settings.headers) == {"x-api-key": SECRET}
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert SECRET not in capsys.readouterr().err


def test_urllib_refusing_a_request_is_not_retried_and_not_quoted() -> None:
    """Should an invalid value reach the HTTP client anyway, the export fails at once (no retry of
    every record as if the network were down) and the detail does not quote it."""
    transport = HttpTransport(resolve({"endpoint": "http://127.0.0.1:9", "protocol": "http/protobuf"}))
    transport._headers["x-api-key"] = f"{SECRET}\n"
    outcome = transport.export(LOGS, b"", 1.0)
    assert not outcome.ok and not outcome.retryable
    assert SECRET not in (outcome.detail or "")


def test_an_endpoint_password_is_not_shown_in_settings() -> None:
    settings = resolve({"endpoint": f"https://ingest:{SECRET}@collector.example.com:4318"})
    assert SECRET not in repr(settings)
    assert "https://ingest:***@collector.example.com:4318" in repr(settings)
