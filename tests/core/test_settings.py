"""Settings resolution: keyword > configure() > environment > default; env parsing per the OTel spec."""

from __future__ import annotations

import pytest

import highlight_logging
from highlight_logging import HighlightHandler
from highlight_logging._core.settings import resolve


def test_defaults() -> None:
    """Defaults: hosted collector, gzip, BLRP batching, big bounded buffer, 3 s exit."""
    s = resolve({}, environ={})
    assert s.endpoint == "https://otel.highlight.io:4317"
    assert s.compression == "gzip" and s.protocol == "grpc"
    assert (s.max_export_batch_size, s.schedule_delay, s.export_timeout) == (512, 1.0, 30.0)
    assert s.max_queue_size >= 20_000 and s.shutdown_timeout == 3.0
    assert (s.attribute_count_limit, s.request_timeout) == (128, 10.0)


def test_environment_variables() -> None:
    """Every documented variable is read; times are milliseconds; log variables beat span ones."""
    env = {
        "HIGHLIGHT_PROJECT_ID": "p",
        "OTEL_SERVICE_NAME": "svc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4317",
        "OTEL_EXPORTER_OTLP_HEADERS": "a=1,b=x%20y",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "c=3",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": "/ca.pem",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
        "OTEL_BSP_SCHEDULE_DELAY": "900",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100",
        "OTEL_BLRP_EXPORT_TIMEOUT": "5000",
        "OTEL_BLRP_MAX_QUEUE_SIZE": "4096",
        "OTEL_ATTRIBUTE_COUNT_LIMIT": "50",
        "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT": "300",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "999",
        "OTEL_SDK_DISABLED": "false",
    }
    s = resolve({}, environ=env)
    assert (s.project_id, s.service_name) == ("p", "svc")
    assert s.endpoint == "http://c:4317" and s.traces_endpoint == "http://t:4317"
    assert dict(s.headers) == {"c": "3"}  # the signal-specific variable wins whole
    assert s.compression == "none" and s.insecure is True
    assert s.request_timeout == 2.5 and s.certificate_file == "/ca.pem"
    assert s.schedule_delay == 0.2 and s.max_export_batch_size == 100
    assert s.export_timeout == 5.0 and s.max_queue_size == 4096
    assert s.attribute_count_limit == 50 and s.attribute_value_length_limit == 300
    assert s.disabled is False


def test_empty_means_unset_and_invalid_warns_once(capfd: pytest.CaptureFixture[str]) -> None:
    """An empty variable is unset; an invalid one gives one warning and is ignored."""
    env = {
        "OTEL_SERVICE_NAME": "",
        "OTEL_BLRP_MAX_QUEUE_SIZE": "lots",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "zip",
    }
    for _ in range(3):
        s = resolve({}, environ=env)
    assert s.service_name is None and s.max_queue_size == 100_000 and s.compression == "gzip"
    err = capfd.readouterr().err
    assert err.count("OTEL_BLRP_MAX_QUEUE_SIZE") == 1 and err.count("OTEL_EXPORTER_OTLP_COMPRESSION") == 1


def test_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyword beats configure(), configure() beats the environment."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "env")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://env-logs:4317")
    assert resolve({}).service_name == "env"
    highlight_logging.configure(service_name="configured", endpoint="http://conf:4317")
    s = resolve({})
    assert s.service_name == "configured"
    assert s.endpoint == "http://conf:4317" and s.logs_endpoint is None  # explicit endpoint covers both
    assert resolve({"service_name": "kw"}).service_name == "kw"


def test_configure_reaches_existing_handlers() -> None:
    """A handler built before configure() uses the new defaults from its next record."""
    handler = HighlightHandler()
    highlight_logging.configure(service_name="late", endpoint="127.0.0.1:1")
    pipeline = handler._binding.get()
    assert pipeline is not None and pipeline.settings.service_name == "late"


def test_bad_keywords_raise_at_construction() -> None:
    """Unknown settings and bad values are programming errors, raised before anything is logged."""
    with pytest.raises(TypeError, match="unknown highlight_logging setting 'endpont'"):
        HighlightHandler(endpont="x")
    with pytest.raises(ValueError, match="compression"):
        HighlightHandler(compression="zip")
    with pytest.raises(ValueError, match="max_queue_size"):
        HighlightHandler(max_queue_size=-1)


def test_string_values_from_fileconfig_are_accepted() -> None:
    """Numbers and booleans given as strings (fileConfig, env-driven config) are parsed."""
    s = resolve({"max_queue_size": "5000", "insecure": "yes", "schedule_delay": "0.5"})
    assert (s.max_queue_size, s.insecure, s.schedule_delay) == (5000, True, 0.5)


def test_disabled_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SDK_DISABLED=true turns every front end into a no-op."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    handler = HighlightHandler(endpoint="127.0.0.1:1")
    assert handler._binding.get() is None


def test_equal_settings_share_one_pipeline_and_worker() -> None:
    """One pipeline, one worker per distinct settings, whatever the front end."""
    from highlight_logging import LoguruSink, StructlogProcessor

    a = HighlightHandler(endpoint="127.0.0.1:1")
    b = StructlogProcessor(endpoint="127.0.0.1:1")
    c = LoguruSink(endpoint="127.0.0.1:1")
    assert a._binding.pipeline is b._binding.pipeline is c._binding.pipeline
    assert HighlightHandler(endpoint="127.0.0.1:2")._binding.pipeline is not a._binding.pipeline


def test_grpc_client_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """gRPC goes through the h2 client unless grpcio is asked for; a proxy changes nothing (both
    clients go through it, see test_proxy.py)."""
    from highlight_logging import _transport
    from highlight_logging._h2transport import H2Transport

    assert resolve({}, environ={}).grpc_client == "auto"
    assert isinstance(_transport.make(resolve({}, environ={})), H2Transport)
    assert type(_transport.make(resolve({"grpc_client": "grpcio"}, environ={}))) is _transport.GrpcTransport
    assert resolve({}, environ={"HIGHLIGHT_GRPC_CLIENT": " GRPCIO "}).grpc_client == "grpcio"
    for name in ("https_proxy", "HTTPS_PROXY", "GRPC_PROXY", "http_proxy"):
        monkeypatch.setenv(name, "http://proxy:3128")
    assert isinstance(_transport.make(resolve({}, environ={})), H2Transport)
    assert isinstance(_transport.make(resolve({"grpc_client": "h2"}, environ={})), H2Transport)
    assert isinstance(
        _transport.make(resolve({"protocol": "http/protobuf"}, environ={})), _transport.HttpTransport
    )
    for target in ("unix:/run/otel.sock", "dns:///collector:4317", "ipv4:10.0.0.1:4317"):
        assert type(_transport.make(resolve({"endpoint": target}, environ={}))) is _transport.GrpcTransport
    with pytest.raises(ValueError, match="grpc_client"):
        HighlightHandler(grpc_client="curl")
