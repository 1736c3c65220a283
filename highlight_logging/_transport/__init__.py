"""Layer 1: sends encoded OTLP export requests and says what came of each.

Every transport has the :class:`~.base.Transport` interface and returns an :class:`~.base.Outcome`,
never raising.  :func:`make` chooses one for a :class:`~highlight_logging._core.settings.Settings`; each
implementation module is imported only when chosen (grpcio and ``urllib.request`` are costly to
import, and most processes use neither).
"""

from __future__ import annotations

from highlight_logging._core.settings import Settings
from highlight_logging._transport.base import (
    GZIP_LEVEL,
    LOGS,
    RESOLVER_PREFIXES,
    TRACES,
    Outcome,
    StatusCode,
    Transport,
    classify_grpc,
    grpc_target,
    partial_success,
    retry_delay,
)

__all__ = [
    "GZIP_LEVEL",
    "LOGS",
    "TRACES",
    "Outcome",
    "StatusCode",
    "Transport",
    "after_fork_in_child",
    "classify_grpc",
    "make",
    "partial_success",
    "retry_delay",
]

#: Set in a child after fork() (see :func:`after_fork_in_child`): gRPC may be unusable there.
forked_child = False


def after_fork_in_child() -> None:
    """Transports made from now on are for a forked child (see :func:`make`)."""
    global forked_child
    forked_child = True


def _needs_grpcio(settings: Settings) -> bool:
    """A gRPC resolver target (``unix:``, ``dns:///``...): only grpcio resolves these."""
    endpoints = (settings.endpoint, settings.logs_endpoint, settings.traces_endpoint)
    return any(grpc_target(e).lower().startswith(RESOLVER_PREFIXES) for e in endpoints if e)


def _grpcio_fork_support() -> bool:
    from highlight_logging._transport import grpcio  # imports grpcio: only once it is needed

    return grpcio.fork_support()


def make(settings: Settings) -> Transport:
    """The transport for ``settings``: OTLP/HTTP, or OTLP/gRPC through the built-in client or grpcio.

    ``grpc_client="auto"`` (the default) speaks gRPC through the built-in client (:mod:`.h2`, our
    own HTTP/2 framing in :mod:`.h2wire`): it uses less CPU than grpcio, and ``make interop`` holds
    both to the same results against grpc-js, grpc-go and nginx.  A gRPC resolver target needs
    grpcio.  A proxy does not change the client: both go through the one :mod:`.proxy` chooses.  A
    forked child uses the built-in client unless only grpcio can reach the endpoint, and then only
    with gRPC's fork support on: grpcio's first channel in a child can deadlock holding the GIL.
    """
    # Each module is imported here, when chosen: grpcio and urllib.request are costly to import.
    if settings.protocol == "http/protobuf":
        from highlight_logging._transport.http import HttpTransport

        return HttpTransport(settings)
    client = settings.grpc_client
    if client == "auto":
        client = "grpcio" if _needs_grpcio(settings) else "h2"
    if client != "h2" and forked_child and not (_needs_grpcio(settings) and _grpcio_fork_support()):
        client = "h2"
    if client == "h2":
        from highlight_logging._transport.h2 import H2Transport

        return H2Transport(settings)
    from highlight_logging._transport.grpcio import GrpcTransport

    return GrpcTransport(settings)
