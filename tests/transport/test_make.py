"""make(): which transport a Settings gets, in a parent and in a forked child."""

from __future__ import annotations

import pytest

from highlight_logging import _transport
from highlight_logging._core.settings import resolve
from highlight_logging._transport.grpcio import GrpcTransport
from highlight_logging._transport.h2 import H2Transport
from highlight_logging._transport.http import HttpTransport


@pytest.mark.parametrize(
    ("options", "parent", "child_without_fork_support", "child_with_fork_support"),
    [
        ({}, H2Transport, H2Transport, H2Transport),
        ({"grpc_client": "grpcio"}, GrpcTransport, H2Transport, H2Transport),
        ({"endpoint": "unix:/run/otel.sock"}, GrpcTransport, H2Transport, GrpcTransport),
        (
            {"endpoint": "dns:///collector:4317", "grpc_client": "grpcio"},
            GrpcTransport,
            H2Transport,
            GrpcTransport,
        ),
        ({"protocol": "http/protobuf"}, HttpTransport, HttpTransport, HttpTransport),
    ],
)
def test_make_in_parent_and_forked_child(
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, str],
    parent: type,
    child_without_fork_support: type,
    child_with_fork_support: type,
) -> None:
    """A forked child keeps off grpcio unless only grpcio reaches the endpoint and gRPC's fork
    support is on (grpcio's first channel in a child can deadlock holding the GIL)."""
    settings = resolve(options, environ={})
    monkeypatch.setattr(_transport, "forked_child", False)
    assert type(_transport.make(settings)) is parent
    _transport.after_fork_in_child()
    assert _transport.forked_child
    monkeypatch.setattr(_transport, "_grpcio_fork_support", lambda: False)
    assert type(_transport.make(settings)) is child_without_fork_support
    monkeypatch.setattr(_transport, "_grpcio_fork_support", lambda: True)
    assert type(_transport.make(settings)) is child_with_fork_support
