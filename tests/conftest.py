"""Make test helper modules (e.g. ``otlp_receiver``) importable from any test file."""

import os
import sys

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from otlp_receiver import FaultyReceiver  # noqa: E402
from recipes import run  # noqa: E402, F401 - the recipe fixture, for tests at any depth

from highlight_logging._core import settings as _settings  # noqa: E402
from highlight_logging._devtools.receiver import Receiver  # noqa: E402
from highlight_logging._export import process as _process  # noqa: E402


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no OTEL_*/HIGHLIGHT_*/*_proxy environment, no configure(), no pipelines."""
    import os

    for name in list(os.environ):
        # Proxy variables too (every spelling): a test sets the ones it means.
        if name.startswith(("OTEL_", "HIGHLIGHT_")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    _settings.configure()
    yield
    _process.reset_for_tests()
    _settings.configure()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real in-process OTLP/gRPC receiver on a free loopback port (``receiver.endpoint``)."""
    with Receiver() as rx:
        yield rx
        _process.reset_for_tests()  # deliver before the receiver goes away


@pytest.fixture
def faulty() -> Iterator[FaultyReceiver]:
    """A real receiver (gRPC and OTLP/HTTP) that a test can tell to fail, delay or go down."""
    with FaultyReceiver() as rx:
        yield rx
        rx.clear_faults()
        _process.reset_for_tests()  # deliver before the receiver goes away
