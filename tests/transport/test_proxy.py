"""Proxies, read the way curl and urllib read them, for both gRPC clients, OTLP/HTTP and forked children.

The collector's name (``collector.internal``) resolves only inside the proxy, so an export that
does not go through the proxy cannot arrive.  The scripted proxy (tests/connect_proxy.py) covers
every case, faults included; tinyproxy, a proxy nobody here wrote, repeats the main ones.
"""

from __future__ import annotations

import base64
import collections
import logging
import os
import subprocess
import sys
import textwrap
import urllib.parse
from collections.abc import Iterator

import pytest
from connect_proxy import ConnectProxy, TinyProxy, tinyproxy_path
from otlp_receiver import FaultyReceiver, free_port

import highlight_logging
from highlight_logging import _transport
from highlight_logging._core.settings import resolve
from highlight_logging._devtools.receiver import Receiver
from highlight_logging._export import process as _process
from highlight_logging._transport import proxy as _proxy
from highlight_logging._transport.grpcio import GrpcTransport
from highlight_logging._transport.h2 import H2Transport
from highlight_logging._transport.proxy import Proxy, UnsupportedProxy, for_grpc, for_http, proxy_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
NAME = "collector.internal"  # only the scripted proxy resolves it
USER, PASSWORD = "svc", "p@ss w:rd-9f3k"  # characters that must be percent-encoded in a URL
QUOTED = f"{USER}:{urllib.parse.quote(PASSWORD, safe='')}"


# --- the rules (pure) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["grpc_proxy", "GRPC_PROXY", "https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy"],
)
def test_grpc_reads_every_spelling(name: str) -> None:
    """Each variable, in either case, with a scheme-less address (curl and urllib accept it)."""
    assert for_grpc("collector:4317", {name: "127.0.0.1:3128"}) == Proxy("127.0.0.1", 3128, name)


def test_which_variable_wins() -> None:
    """grpcio's order (grpc, https, http, then curl's all_proxy); lower case over upper; empty is unset."""
    env = {
        "http_proxy": "h:1",
        "HTTPS_PROXY": "s:2",
        "grpc_proxy": "",
        "GRPC_PROXY": "g:3",
        "ALL_PROXY": "a:4",
    }
    assert for_grpc("c:4317", env) == Proxy("g", 3, "GRPC_PROXY")
    del env["GRPC_PROXY"]
    assert for_grpc("c:4317", env) == Proxy("s", 2, "HTTPS_PROXY")
    env["https_proxy"] = "s2:5"
    assert for_grpc("c:4317", env) == Proxy("s2", 5, "https_proxy")
    assert for_grpc("c:4317", {"ALL_PROXY": "a:4"}) == Proxy("a", 4, "ALL_PROXY")
    assert for_grpc("c:4317", {"https_proxy": "  "}) is None
    # In a CGI request HTTP_PROXY is the client's Proxy: header ("httpoxy"): ignored, as urllib does.
    assert for_grpc("c:4317", {"HTTP_PROXY": "evil:1", "REQUEST_METHOD": "GET"}) is None
    assert for_grpc("c:4317", {"http_proxy": "ok:1", "REQUEST_METHOD": "GET"}) == Proxy("ok", 1, "http_proxy")


def test_otlp_http_reads_the_variable_of_its_scheme() -> None:
    env = {"HTTPS_PROXY": "s:1", "HTTP_PROXY": "h:2"}
    assert for_http("https://c:4318/v1/logs", env) == Proxy("s", 1, "HTTPS_PROXY")
    assert for_http("http://c:4318/v1/logs", env) == Proxy("h", 2, "HTTP_PROXY")
    assert for_http("http://c:4318/v1/logs", {"HTTPS_PROXY": "s:1"}) is None
    assert for_http("http://c:4318/v1/logs", {"all_proxy": "a:3"}) == Proxy("a", 3, "all_proxy")


@pytest.mark.parametrize("spelling", ["no_proxy", "NO_PROXY"])
@pytest.mark.parametrize(
    ("no_proxy", "target", "bypassed"),
    [
        ("*", "anything:4317", True),
        ("example.com", "example.com:4317", True),
        ("example.com", "otel.example.com:4317", True),
        (".example.com", "otel.example.com:4317", True),
        (".example.com", "example.com:4317", True),
        ("example.com", "notexample.com:4317", False),
        (" other.org , EXAMPLE.com ", "otel.example.com:4317", True),
        ("example.com:4318", "example.com:4317", False),
        ("example.com:4317", "example.com:4317", True),
        ("10.0.0.0/8", "10.1.2.3:4317", True),
        ("10.0.0.0/8", "11.1.2.3:4317", False),
        ("127.0.0.1", "127.0.0.1:4317", True),
        ("::1", "[::1]:4317", True),
        ("[::1]:4317", "[::1]:4317", True),
        ("localhost", "127.0.0.1:4317", False),  # names are not resolved (curl neither)
        ("", "example.com:4317", False),
    ],
)
def test_no_proxy(spelling: str, no_proxy: str, target: str, bypassed: bool) -> None:
    env = {"HTTPS_PROXY": "proxy:3128", spelling: no_proxy}
    assert (for_grpc(target, env) is None) is bypassed
    assert (for_http(f"https://{target}/v1/logs", env) is None) is bypassed


def test_no_grpc_proxy_replaces_no_proxy_for_grpc() -> None:
    env = {"https_proxy": "p:1", "no_proxy": "c", "no_grpc_proxy": "other"}
    assert for_grpc("c:4317", env) == Proxy("p", 1, "https_proxy")
    assert for_http("https://c:4318", env) is None


def test_addresses_and_credentials_never_shown() -> None:
    proxy = for_grpc("c:4317", {"HTTPS_PROXY": f"http://{QUOTED}@proxy.corp:8080/"})
    assert proxy is not None
    assert (proxy.host, proxy.port, proxy.username, proxy.password) == ("proxy.corp", 8080, USER, PASSWORD)
    assert proxy.authorization() == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for text in (str(proxy), repr(proxy), f"{proxy!r}"):
        assert PASSWORD not in text and "p%40ss" not in text, text
    assert str(proxy) == "proxy http://proxy.corp:8080 (from HTTPS_PROXY with credentials)"
    assert for_grpc("c:1", {"https_proxy": "proxy.corp"}) == Proxy("proxy.corp", 80, "https_proxy")
    assert for_grpc("c:1", {"https_proxy": "[::1]:3128"}) == Proxy("::1", 3128, "https_proxy")
    assert str(for_grpc("c:1", {"https_proxy": "[::1]:3128"})) == "proxy http://[::1]:3128 (from https_proxy)"
    # grpcio is handed the credentials percent-encoded, and decodes them back (see the live tests)
    assert proxy.url_with_credentials() == f"http://{QUOTED}@proxy.corp:8080"


@pytest.mark.parametrize(
    "value", [f"https://{QUOTED}@proxy:443", f"socks5://{QUOTED}@proxy:1080", "http://:3128"]
)
def test_unusable_proxy_is_named_without_credentials(value: str, capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnsupportedProxy) as info:
        for_grpc("c:4317", {"HTTPS_PROXY": value})
    assert (
        "HTTPS_PROXY" in str(info.value)
        and PASSWORD not in str(info.value)
        and "p%40ss" not in str(info.value)
    )
    os.environ["HTTPS_PROXY"] = value
    try:
        assert proxy_for("c:4317") is None  # reported once, then direct
        assert proxy_for("c:4317") is None
    finally:
        del os.environ["HTTPS_PROXY"]
    err = capfd.readouterr().err
    assert err.count("HTTPS_PROXY") == 1 and "connecting directly" in err and "p%40ss" not in err


# --- live: both gRPC clients through a proxy --------------------------------------------------------

CLIENTS = ["auto", "grpcio"]


@pytest.fixture
def rx() -> Iterator[FaultyReceiver]:
    with FaultyReceiver() as receiver:
        yield receiver
        _process.reset_for_tests()


def _logger(name: str, **settings: object) -> logging.Logger:
    log = logging.getLogger(f"proxy.{name}")
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(highlight_logging.HighlightHandler(**settings))  # type: ignore[arg-type]
    return log


def _bodies(receiver: Receiver) -> list[str]:
    return [str(r.body) for r in receiver.log_records()]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    "variable", ["HTTPS_PROXY", "https_proxy", "GRPC_PROXY", "grpc_proxy", "HTTP_PROXY", "http_proxy"]
)
def test_every_spelling_delivers_through_the_proxy(
    rx: FaultyReceiver,
    client: str,
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Scheme-less address with Basic credentials; the collector's name resolves only in the proxy.
    The default client stays the built-in one: a proxy is no reason to switch."""
    with ConnectProxy(credentials=(USER, PASSWORD), names={NAME: "127.0.0.1"}) as proxy:
        monkeypatch.setenv(variable, f"{QUOTED}@{proxy.address}")
        log = _logger(f"spell.{client}.{variable}", endpoint=f"http://{NAME}:{rx.port}", grpc_client=client)
        for i in range(300):
            log.info("rec %d", i)
        assert highlight_logging.flush(10)
        assert sorted(_bodies(rx)) == sorted(f"rec {i}" for i in range(300))
        assert proxy.tunnels and all(t == f"{NAME}:{rx.port}" for t in proxy.tunnels)
        assert proxy.accepted == 1  # one connection, kept
        transport = _process.pipelines()[0]._transport
        assert isinstance(transport, H2Transport if client == "auto" else GrpcTransport)
    err = capfd.readouterr().err
    assert PASSWORD not in err and "p%40ss" not in err
    assert "E1" not in err and "proxy" not in err.lower(), err  # grpcio printed nothing of its own


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    "no_proxy", [("NO_PROXY", "127.0.0.1"), ("no_proxy", "*"), ("NO_PROXY", ".example.com,127.0.0.0/8")]
)
def test_no_proxy_goes_direct_without_switching_clients(
    rx: FaultyReceiver,
    client: str,
    no_proxy: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{free_port()}")  # nothing there
    monkeypatch.setenv(*no_proxy)
    log = _logger(f"noproxy.{client}", endpoint=rx.endpoint, grpc_client=client)
    for i in range(50):
        log.info("direct %d", i)
    assert highlight_logging.flush(10)
    assert len(_bodies(rx)) == 50
    transport = _process.pipelines()[0]._transport
    assert isinstance(transport, H2Transport if client == "auto" else GrpcTransport)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("client", CLIENTS)
def test_407_is_one_configuration_error_not_retried(
    rx: FaultyReceiver, client: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    with ConnectProxy(credentials=(USER, PASSWORD), names={NAME: "127.0.0.1"}) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://{USER}:wrong-{QUOTED}@{proxy.address}")
        log = _logger(f"407.{client}", endpoint=f"http://{NAME}:{rx.port}", grpc_client=client)
        for _batch in range(3):
            for i in range(10):
                log.info("lost %d", i)
            assert not highlight_logging.flush(10)  # at once: nothing waits for a retry
        # One attempt a batch, never retried (grpcio may answer later batches from its channel's
        # failed state without asking the proxy again).
        assert proxy.refused == [407] * 3 if client == "auto" else 1 <= len(proxy.refused) <= 3
        dropped = highlight_logging.stats()["logs"]["dropped"]
        assert dropped["non_retryable"] == 30 and sum(dropped.values()) == 30
    err = capfd.readouterr().err
    assert err.count("configuration error") == 1, err
    assert f"proxy http://{proxy.address} (from HTTPS_PROXY with credentials) answered 407" in err
    assert PASSWORD not in err and "p%40ss" not in err and "wrong-" not in err


@pytest.mark.parametrize("client", CLIENTS)
def test_a_proxy_that_is_down_is_named(
    rx: FaultyReceiver, client: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    monkeypatch.setenv("https_proxy", f"{QUOTED}@127.0.0.1:{port}")
    log = _logger(
        f"down.{client}", endpoint=f"http://{NAME}:{rx.port}", grpc_client=client, request_timeout=1
    )
    log.info("kept while the proxy is down")
    assert not highlight_logging.flush(1.0)
    err = capfd.readouterr().err
    assert f"proxy http://127.0.0.1:{port} (from https_proxy with credentials)" in err, err
    assert "retrying" in err and PASSWORD not in err and "p%40ss" not in err


@pytest.mark.parametrize("client", CLIENTS)
def test_a_proxy_that_never_answers_is_named_at_exit(
    rx: FaultyReceiver, client: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Default request timeout (10 s) longer than the shutdown's: the exit line still names it."""
    with ConnectProxy(mode="silent") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://{QUOTED}@{proxy.address}")
        log = _logger(f"silent.{client}", endpoint=f"http://{NAME}:{rx.port}", grpc_client=client)
        log.info("lost at exit")
        assert proxy.wait_for_connections(1, 10)
        _process.shutdown_all(1.0)
    err = capfd.readouterr().err
    line = next(line for line in err.splitlines() if "at exit" in line)
    assert "1 logs lost (shutdown: 1)" in line and f"proxy http://{proxy.address}" in line, err
    assert PASSWORD not in err and "p%40ss" not in err


@pytest.mark.parametrize("client", CLIENTS)
def test_a_proxy_refusing_the_tunnel_is_named_with_its_status(
    rx: FaultyReceiver, client: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    with ConnectProxy(mode="502") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.address)
        log = _logger(
            f"502.{client}", endpoint=f"http://{NAME}:{rx.port}", grpc_client=client, request_timeout=1
        )
        log.info("kept")
        assert not highlight_logging.flush(1.0)
    err = capfd.readouterr().err
    assert f"proxy http://{proxy.address} (from HTTPS_PROXY)" in err, err
    if client == "auto":
        assert "HTTP 502" in err


FORK_SCRIPT = """
import logging, os, sys
import highlight_logging

log = logging.getLogger("fork")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(highlight_logging.HighlightHandler(endpoint=sys.argv[1]))
for i in range(10):
    log.info("parent %d", i)
assert highlight_logging.flush(10)
pid = os.fork()
if pid == 0:
    for i in range(100):
        log.info("child %d", i)
    highlight_logging.flush(10)
    os._exit(0)
os.waitpid(pid, 0)
"""


@pytest.mark.parametrize(
    ("client", "variable"),
    [("h2", "HTTPS_PROXY"), ("h2", "grpc_proxy"), ("grpcio", "HTTPS_PROXY"), ("grpcio", "http_proxy")],
)
@pytest.mark.parametrize("fork_support", [None, "0"])
def test_forked_children_go_through_the_proxy(
    rx: FaultyReceiver, client: str, variable: str, fork_support: str | None
) -> None:
    """A child without gRPC fork support uses the built-in client: through the proxy too."""
    with ConnectProxy(credentials=(USER, PASSWORD), names={NAME: "127.0.0.1"}) as proxy:
        env = {
            **os.environ,
            "PYTHONPATH": ROOT,
            "HIGHLIGHT_GRPC_CLIENT": client,
            variable: f"{QUOTED}@{proxy.address}",
        }
        env.pop("GRPC_ENABLE_FORK_SUPPORT", None)
        if fork_support is not None:
            env["GRPC_ENABLE_FORK_SUPPORT"] = fork_support
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(FORK_SCRIPT), f"http://{NAME}:{rx.port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert rx.wait_for_logs(110, 15)
        counts = collections.Counter(b.split(" ")[0] for b in _bodies(rx))
        assert counts == {"parent": 10, "child": 100} and len(set(_bodies(rx))) == 110
        assert len(proxy.tunnels) >= 2  # the parent's and the child's own
        assert PASSWORD not in proc.stderr


# --- OTLP/HTTP -------------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_otlp_http_through_the_proxy(
    rx: FaultyReceiver, variable: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    with ConnectProxy(credentials=(USER, PASSWORD), names={NAME: "127.0.0.1"}) as proxy:
        monkeypatch.setenv(variable, f"{QUOTED}@{proxy.address}")
        endpoint = f"http://{NAME}:{rx.http_port}"
        log = _logger(f"http.{variable}", endpoint=endpoint, protocol="http/protobuf")
        for i in range(20):
            log.info("http %d", i)
        assert highlight_logging.flush(10)
        assert len(_bodies(rx)) == 20 and proxy.tunnels
    assert capfd.readouterr().err == ""


def test_otlp_http_407_and_no_proxy(
    rx: FaultyReceiver, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    with ConnectProxy(credentials=(USER, PASSWORD), names={NAME: "127.0.0.1"}) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://{USER}:nope@{proxy.address}")
        log = _logger("http.407", endpoint=f"http://{NAME}:{rx.http_port}", protocol="http/protobuf")
        log.info("refused")
        assert not highlight_logging.flush(5)
        assert proxy.refused == [407]
        assert highlight_logging.stats()["logs"]["dropped"]["non_retryable"] == 1
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = _logger("http.direct", endpoint=f"http://127.0.0.1:{rx.http_port}", protocol="http/protobuf")
        direct.info("direct")
        assert highlight_logging.flush(5)
        assert _bodies(rx) == ["direct"] and proxy.refused == [407]
    err = capfd.readouterr().err
    assert err.count("configuration error") == 1 and "nope" not in err


def test_otlp_https_tunnel_refused_407_is_one_configuration_error(
    rx: FaultyReceiver, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """An https:// endpoint goes through CONNECT (urllib's tunnel); its 407 is the same error."""
    with ConnectProxy(credentials=(USER, PASSWORD)) as proxy:
        monkeypatch.setenv("https_proxy", f"{USER}:nope@{proxy.address}")
        log = _logger("https.407", endpoint=f"https://{NAME}:{rx.http_port}", protocol="http/protobuf")
        for _batch in range(2):
            log.info("refused")
            assert not highlight_logging.flush(5)
        assert proxy.refused == [407, 407]  # once a batch, never retried
        assert highlight_logging.stats()["logs"]["dropped"]["non_retryable"] == 2
    err = capfd.readouterr().err
    assert err.count("configuration error") == 1 and "nope" not in err, err
    assert f"proxy http://{proxy.address} (from https_proxy with credentials) answered 407" in err


# --- tinyproxy: a proxy nobody here wrote -----------------------------------------------------------

needs_tinyproxy = pytest.mark.skipif(
    tinyproxy_path() is None and not os.environ.get("CI"),
    reason="tinyproxy not installed (tests/install-proxy.sh installs it; CI requires it)",
)


@needs_tinyproxy
@pytest.mark.parametrize("client", ["auto", "grpcio", "http"])
@pytest.mark.parametrize("auth", ["none", "basic", "wrong"])
def test_tinyproxy(
    client: str, auth: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Through tinyproxy, to the collector as localhost (with the wrong password nothing arrives:
    the export did go through the proxy)."""
    with FaultyReceiver() as receiver, TinyProxy(("svc", "s3cret") if auth != "none" else None) as proxy:
        password = "s3cret" if auth == "basic" else "bad"
        creds = f"svc:{password}@" if auth != "none" else ""
        http = client == "http"
        monkeypatch.setenv("HTTP_PROXY" if http else "HTTPS_PROXY", f"{creds}{proxy.address}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # not the collector's name: still proxied
        port = receiver.http_port if http else receiver.port
        settings: dict[str, object] = {"endpoint": f"http://localhost:{port}"}
        settings.update({"protocol": "http/protobuf"} if http else {"grpc_client": client})
        log = _logger(f"tiny.{client}.{auth}", **settings)
        for i in range(100):
            log.info("tiny %d", i)
        delivered = highlight_logging.flush(10)
        if auth == "wrong":
            assert not delivered and receiver.log_records() == []
            assert highlight_logging.stats()["logs"]["dropped"]["non_retryable"] == 100
        else:
            assert delivered and len(_bodies(receiver)) == 100
        _process.reset_for_tests()
    err = capfd.readouterr().err
    assert "bad" not in err and "s3cret" not in err
    if auth == "wrong" and client != "http":
        assert (
            sum("configuration error" in line and "at exit" not in line for line in err.splitlines()) == 1
        ), err
    elif auth == "wrong":  # forwarded, its 401 could be the collector's: named with the proxy
        assert "HTTP 401 (through proxy http://" in err, err


def test_resolver_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    """grpcio's resolver targets: a socket path never goes through a proxy; dns:/// and ipv4:
    targets are matched to no_proxy by their host."""
    monkeypatch.setenv("HTTPS_PROXY", "proxy:3128")
    monkeypatch.setenv("NO_PROXY", "internal")
    assert proxy_for("unix:/run/otel.sock") is None
    assert proxy_for("dns:///collector.internal:4317") is None
    assert proxy_for("dns:///collector.example:4317") == Proxy("proxy", 3128, "HTTPS_PROXY")
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8")
    assert proxy_for("ipv4:10.0.0.1:4317,10.0.0.2:4317") is None


def test_make_never_switches_to_grpcio_for_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "GRPC_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1:3128")
    assert isinstance(
        _transport.make(resolve({"endpoint": "http://collector:4317"}, environ={})), H2Transport
    )
    assert _proxy.for_grpc("collector:4317", os.environ) is not None
