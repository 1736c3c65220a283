"""Security: TLS by default, certificates from settings or environment, scrubbing on every front end."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from certs import self_signed
from loguru import logger as loguru_logger

import highlight_logging
from highlight_logging import HighlightHandler, LoguruSink, StructlogProcessor
from highlight_logging._core.settings import is_plaintext, resolve
from highlight_logging._devtools.receiver import Receiver


@pytest.mark.parametrize(
    ("endpoint", "insecure", "plaintext"),
    [
        ("https://otel.highlight.io:4317", None, False),
        ("otel.example.com:4317", None, False),
        ("10.0.0.5:4317", None, False),
        ("http://collector:4317", None, True),
        ("127.0.0.1:4317", None, True),
        ("localhost:4317", None, True),
        ("[::1]:4317", None, True),
        ("https://127.0.0.1:4317", None, False),
        ("otel.example.com:4317", True, True),
        ("http://collector:4317", False, False),
    ],
)
def test_tls_unless_asked_or_loopback(endpoint: str, insecure: bool | None, plaintext: bool) -> None:
    """TLS for every non-loopback endpoint; plaintext only via http://, insecure=True or a bare loopback host."""
    assert is_plaintext(endpoint, insecure) is plaintext


def test_a_certificate_with_a_bare_loopback_endpoint_means_tls() -> None:
    """certificate_file or a client certificate asks for TLS: a bare host:port then uses it (an
    explicit http:// or insecure still wins)."""
    assert not is_plaintext("localhost:4317", None, tls_files=True)
    assert not is_plaintext("127.0.0.1:4317", None, tls_files=True)
    assert is_plaintext("http://localhost:4317", None, tls_files=True)
    assert is_plaintext("localhost:4317", True, tls_files=True)
    assert resolve({"certificate_file": "ca.pem"}).tls_files
    assert resolve({}, environ={"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "c.pem"}).tls_files
    assert not resolve({}).tls_files


def test_default_endpoint_is_the_hosted_collector_over_tls() -> None:
    """With nothing configured, records go to highlight.io's collector over TLS."""
    s = resolve({})
    assert s.endpoint == "https://otel.highlight.io:4317"
    assert not is_plaintext(s.endpoint, s.insecure)


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[Receiver, Path]]:
    cert, key = self_signed(tmp_path)
    rx = Receiver()  # reuse its servicers on a TLS port
    server = grpc.server(futures.ThreadPoolExecutor(4))
    from highlight_logging._devtools import receiver as _receiver

    server.add_generic_rpc_handlers(_receiver._grpc_handlers(rx))
    port = server.add_secure_port(
        "127.0.0.1:0", grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    )
    server.start()
    rx.port = port
    yield rx, cert
    highlight_logging.shutdown(1)
    server.stop(0)


@pytest.mark.parametrize("client", ["h2", "grpcio"])
@pytest.mark.parametrize("scheme", ["https://", ""])
@pytest.mark.parametrize("via", ["keyword", "environment"])
def test_tls_with_custom_certificate(
    tls_receiver: tuple[Receiver, Path], via: str, scheme: str, client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An https:// endpoint verifies the server with certificate_file or OTEL_EXPORTER_OTLP_CERTIFICATE;
    so does a bare localhost:port given a certificate (TLS, not the loopback's plaintext)."""
    rx, cert = tls_receiver
    settings: dict[str, Any] = {"endpoint": f"{scheme}localhost:{rx.port}", "grpc_client": client}
    if via == "keyword":
        settings["certificate_file"] = str(cert)
    else:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(cert))
    log = logging.getLogger(f"tls.{via}.{scheme}.{client}")
    log.propagate = False
    handler = HighlightHandler(**settings)
    log.addHandler(handler)
    log.warning("over tls")
    assert highlight_logging.flush(10)
    assert [r.body for r in rx.log_records()] == ["over tls"]
    log.removeHandler(handler)


SECRETS: dict[str, Any] = {
    "password": "hunter2",
    "Authorization": "Bearer abc.def.ghi",
    "api_key": "k-123",
    "user": {"name": "ada", "session_token": "s3cr3t"},
    "note": "card 4111 1111 1111 1111 on file",
    "order_id": "1234567812345678",  # not Luhn-valid: kept
}


@pytest.fixture(params=["stdlib", "structlog", "loguru"])
def log_secret(request: pytest.FixtureRequest, receiver: Receiver) -> Iterator[Any]:
    def make(**settings: Any) -> Any:
        settings.setdefault("endpoint", receiver.endpoint)
        if request.param == "stdlib":
            log = logging.getLogger("secrets")
            log.handlers.clear()
            log.propagate = False
            log.addHandler(HighlightHandler(**settings))
            return lambda msg, extras: log.warning(msg, extra=extras)
        if request.param == "structlog":
            structlog.configure(
                processors=[StructlogProcessor(**settings), structlog.processors.KeyValueRenderer()],
                logger_factory=structlog.ReturnLoggerFactory(),
            )
            return lambda msg, extras: structlog.get_logger().warning(msg, **extras)
        loguru_logger.remove()
        loguru_logger.add(LoguruSink(**settings))
        return lambda msg, extras: loguru_logger.bind(**extras).warning(msg)

    yield make
    structlog.reset_defaults()
    loguru_logger.remove()
    logging.getLogger("secrets").handlers.clear()


def _one(receiver: Receiver) -> Any:
    assert highlight_logging.flush(10)
    (record,) = receiver.log_records()
    return record


def test_secrets_are_scrubbed_on_every_front_end(log_secret: Any, receiver: Receiver) -> None:
    """Denylisted keys (nested too), card numbers, JWTs and bearer tokens never leave the process."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX2hlcmU"
    log_secret()(f"login with token {jwt}", SECRETS)
    record = _one(receiver)
    a = record.attributes
    assert a["password"] == "[scrubbed]"
    assert a["Authorization"] == "[scrubbed]"
    assert a["api_key"] == "[scrubbed]"
    assert a["user"] == {"name": "ada", "session_token": "[scrubbed]"}
    assert a["note"] == "card [scrubbed] on file"
    assert a["order_id"] == "1234567812345678"
    assert jwt not in str(record.body) and "[scrubbed]" in str(record.body)
    scrubbed = set(a["highlight.scrubbed"])  # type: ignore[arg-type]
    assert {
        "password:denied_key",
        "Authorization:denied_key",
        "api_key:denied_key",
        "user.session_token:denied_key",
        "note:credit_card",
        "body:jwt",
    } <= scrubbed
    everything = str(record.record)
    for secret in ("hunter2", "abc.def.ghi", "k-123", "s3cr3t", "4111 1111 1111 1111", jwt):
        assert secret not in everything


def test_scrubbing_can_be_extended_replaced_or_turned_off(log_secret: Any, receiver: Receiver) -> None:
    """scrub_extra_keys extends the list; scrub=False sends values untouched."""
    log_secret(scrub_extra_keys=["internal_id"])("x", {"internal_id": "7", "password": "p"})
    a = _one(receiver).attributes
    assert a["internal_id"] == "[scrubbed]" and a["password"] == "[scrubbed]"


def test_scrubbing_off(log_secret: Any, receiver: Receiver) -> None:
    """scrub=False leaves values as they are."""
    log_secret(scrub=False)("x", {"password": "p"})
    assert _one(receiver).attributes["password"] == "p"


def test_exception_message_can_be_left_out(receiver: Receiver) -> None:
    """include_exception_message=False keeps personal data in exception messages out of every field."""
    log = logging.getLogger("pii")
    log.propagate = False
    log.addHandler(HighlightHandler(endpoint=receiver.endpoint, include_exception_message=False))
    email = "ada" + "@example.com"  # runtime data, unlike source lines shown in the traceback
    try:
        try:
            raise KeyError(email)
        except KeyError as e:
            raise ValueError(f"user {email} not found") from e
    except ValueError:
        log.exception("lookup failed")
    record = _one(receiver)
    assert receiver.wait_for_spans(1, 5)
    assert "exception.message" not in record.attributes
    assert record.attributes["exception.type"] == "ValueError"
    assert "ada@example.com" not in str(record.record)
    assert "ada@example.com" not in str(receiver.spans()[0].span)
    log.handlers.clear()


@pytest.mark.parametrize("client", ["h2", "grpcio"])
def test_tls_through_a_connect_proxy(
    tls_receiver: tuple[Receiver, Path], client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS is wrapped over the proxy's tunnel as over a direct connection: the server's name is
    verified, the proxy sees only the CONNECT."""
    from connect_proxy import ConnectProxy

    rx, cert = tls_receiver
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.address)
        log = logging.getLogger(f"tls.proxy.{client}")
        log.propagate = False
        handler = HighlightHandler(
            endpoint=f"https://localhost:{rx.port}", certificate_file=str(cert), grpc_client=client
        )
        log.addHandler(handler)
        log.warning("tls through the proxy")
        assert highlight_logging.flush(10)
        assert [r.body for r in rx.log_records()] == ["tls through the proxy"]
        assert proxy.tunnels == [f"localhost:{rx.port}"]
        log.removeHandler(handler)
