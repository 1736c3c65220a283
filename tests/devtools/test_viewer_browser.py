"""The viewer in a real browser: ``highlight-logging serve --ui`` as users run it, an app logging through
all three front ends inside its own OpenTelemetry spans, and Debian's headless Chromium reading the page.

Set ``HL_VIEWER_SCREENSHOTS=docs/viewer`` to write the screenshots that docs/viewer.md shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, unavailable
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from paths import TESTS

_REASON = unavailable()
if _REASON is not None and os.environ.get("CI"):
    raise RuntimeError(f"the browser tests must run in CI: {_REASON}")
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

TESTS = TESTS
WAIT = 20.0


class Served:
    def __init__(self, grpc: str, http: str, ui: str, proc: subprocess.Popen[bytes]) -> None:
        self.grpc, self.http, self.ui, self.proc = grpc, http, ui, proc


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """``serve --ui`` on free ports, with the test app's records in it."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp, "ready")
        proc = subprocess.Popen(
            [sys.executable, "-m", "highlight_logging", "serve", "--ui", "--port", "0", "--http-port", "0",
             "--ui-port", "0", "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + WAIT
            while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            assert ready.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no ready file"
            lines = ready.read_text().split("\n")
            s = Served(
                f"127.0.0.1:{lines[0]}", f"http://127.0.0.1:{lines[1].split()[1]}", lines[2].split()[1], proc
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HIGHLIGHT_"))}
            subprocess.run(
                [sys.executable, str(TESTS / "viewer_app.py"), s.grpc], check=True, timeout=60, env=env
            )
            _wait_stats(s.ui, lambda st: st["logs"] >= 16 and st["spans"] >= 6)
            yield s
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def _wait_stats(ui: str, ok: Callable[[dict[str, int]], bool]) -> None:
    import json

    deadline = time.monotonic() + WAIT
    while True:
        with urllib.request.urlopen(ui + "api/stats", timeout=5) as r:
            stats = json.load(r)
        if ok(stats) or time.monotonic() > deadline:
            assert ok(stats), stats
            return
        time.sleep(0.05)


def _wait(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition, what)


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _texts(driver: Any, selector: str) -> list[str]:
    return [str(t) for t in driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent)", selector)]  # fmt: skip


def _open(driver: Any, url: str, ready_selector: str) -> None:
    driver.get(url)
    _wait(driver, lambda d: _css(d, ready_selector), f"{ready_selector} on {url}")


def _screenshot(driver: Any, name: str) -> None:
    folder = os.environ.get("HL_VIEWER_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(Path(folder, name)))


def _no_script_ran(driver: Any) -> None:
    """None of the hostile values ran, became an element, or became a link."""
    assert driver.execute_script("return window.__xss === undefined")
    assert not _css(driver, "#main img, #main script, #main iframe, #main [onerror]")
    hrefs = driver.execute_script(
        "return Array.from(document.querySelectorAll('a'), a => a.getAttribute('href'))"
    )
    assert all(h.startswith("#/") or h == "#main" for h in hrefs), hrefs


def test_logs_from_three_front_ends_filter_and_tail(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    def press(*keys: str) -> None:  # to whatever has the focus, as a person's keyboard does
        ActionChains(browser).send_keys(*keys).perform()

    _open(browser, served.ui + "#/logs", "#log-list .row")
    bodies = _texts(browser, "#log-list .row .body")
    assert any("loading order 42" in b for b in bodies)  # HighlightHandler
    assert any("cart loaded" in b for b in bodies)  # StructlogProcessor
    assert any("payment provider slow: 120 ms" in b for b in bodies)  # LoguruSink
    long_body = next(e for e in _css(browser, "#log-list .row .body") if "lorem ipsum" in e.text)
    assert "folded" in long_body.get_attribute("class")
    _screenshot(browser, "logs.png")

    Select(browser.find_element("id", "f-level")).select_by_value("ERROR")
    shown = {"ERROR", "CRITICAL", "FATAL"}
    # The URL changes first; the rows once the new view has its answer.
    _wait(
        browser,
        lambda d: "level=ERROR" in d.current_url and set(_texts(d, "#log-list .row .lvl") or ["-"]) <= shown,
        "ERROR filter",
    )
    levels = set(_texts(browser, "#log-list .row .lvl"))
    assert levels and levels <= shown, levels
    assert any("order 1337 failed" in b for b in _texts(browser, "#log-list .row .body"))

    # The keyboard: "/" to the text filter, Enter applies, "j" to the first row, Enter opens it.
    browser.find_element("id", "main").click()
    press("/")
    assert browser.switch_to.active_element.get_attribute("id") == "f-q"
    press("order 42", Keys.ENTER)
    _wait(
        browser, lambda d: "q=order" in d.current_url and len(_css(d, "#log-list .row")) == 1, "text filter"
    )
    press(Keys.ESCAPE, "j")
    row = browser.switch_to.active_element
    assert "row" in row.get_attribute("class")
    press(Keys.ENTER)
    _wait(browser, lambda d: _css(d, "#log-list .row .detail table.kv"), "record detail")
    detail = _css(browser, "#log-list .row .detail")[0].text
    assert "exception.type" in detail and "__main__.OrderError" in detail
    assert "service.name" in detail and "shop" in detail  # the resource
    _screenshot(browser, "log-detail.png")

    # Live tail: a record sent over OTLP/HTTP by a client that is not this package shows without a reload.
    _open(browser, served.ui + "#/logs", "#log-list .row")
    _post_log(served.http, "hello from another OTLP client over HTTP")
    _wait(
        browser,
        lambda d: any("another OTLP client" in b for b in _texts(d, "#log-list .row .body")),
        "live tail",
    )
    _no_script_ran(browser)


def test_error_group_to_log_line_and_request_and_back(served: Served, browser: Any) -> None:
    _open(browser, served.ui + "#/errors", "#error-list .row")
    groups = _css(browser, "#error-list .row")
    assert len(groups) == 1  # two orders, one exception kind: one group, each exception counted once
    assert "2\u00d7" in groups[0].text and "card declined for order <n>" in groups[0].text
    _screenshot(browser, "errors.png")
    groups[0].click()
    _wait(browser, lambda d: _css(d, "#error-group details.occ table.frames"), "error group")
    frames = _texts(browser, "#error-group details.occ[open] table.frames tbody tr")
    assert any("viewer_app.py" in f and "charge" in f for f in frames), frames
    top = _texts(browser, "#error-group details.occ[open] table.frames tr.innermost td")
    assert top[0].endswith("viewer_app.py") and top[1].isdigit() and top[2] == "charge", top
    assert "first seen" in browser.find_element("id", "error-group").text
    _screenshot(browser, "error-group.png")
    group_url = browser.current_url

    # error -> its log line -> back to the group
    browser.find_element("link text", "Log line").click()
    _wait(browser, lambda d: _css(d, "#item-detail"), "log line")
    assert "order 1337 failed" in browser.find_element("id", "item-detail").text
    browser.find_element("link text", "Error group").click()
    _wait(browser, lambda d: d.current_url == group_url and _css(d, "#error-group"), "back to the group")

    # error -> its request: logs of all three front ends, the app's spans and the exception span, in time order
    browser.find_element("link text", "Request").click()
    _wait(browser, lambda d: _css(d, "#trace-list .row"), "request")
    rows = _css(browser, "#trace-list .row")
    text = [r.text for r in rows]
    assert any("GET /orders/1337" in t for t in text) and any("SELECT orders" in t for t in text)
    assert any("loading order 1337" in t for t in text) and any("cart loaded" in t for t in text)
    assert any("payment provider slow: 121 ms" in t for t in text) and any(
        "order 1337 failed" in t for t in text
    )
    assert not any("order 42" in t for t in text)
    offsets = [float(x.lstrip("+").split()[0]) * {"µs": 1e-3, "ms": 1, "s": 1e3}[x.split()[1]]
               for x in _texts(browser, "#trace-list .row .offset")]  # fmt: skip
    assert offsets == sorted(offsets)
    assert any(d.strip() for d in _texts(browser, "#trace-list .row .dur"))  # spans have durations
    assert _css(browser, "#trace-list .row .badge")  # and back to the error group
    _screenshot(browser, "request.png")
    _css(browser, "#trace-list .row .badge")[0].click()
    _wait(browser, lambda d: _css(d, "#error-group"), "request -> error group")

    _open(browser, served.ui + "#/requests", "#request-list .row")
    rows = [r.text for r in _css(browser, "#request-list .row")]
    assert any("request-0" in r and "GET /orders/42" in r for r in rows), rows
    assert any("request-1" in r and "GET /orders/1337" in r for r in rows), rows
    _screenshot(browser, "requests.png")


def test_hostile_values_are_text(served: Served, browser: Any) -> None:
    _open(browser, served.ui + "#/logs?q=__xss", "#log-list .row")
    rows = _css(browser, "#log-list .row")
    assert len(rows) == 3  # one per front end
    page = browser.find_element("id", "log-list").text
    assert "<script>window.__xss = 'script'</script>" in page
    assert "<img src=x onerror=\"window.__xss = 'img'\">" in page
    assert "javascript:window.__xss='href'" in page
    for row in rows:
        row.click()
    _wait(browser, lambda d: len(_css(d, "#log-list .detail table.kv")) >= 3, "details")
    _no_script_ran(browser)
    _screenshot(browser, "hostile.png")
    for item_id in [r.get_attribute("data-id") for r in rows]:
        _open(browser, served.ui + f"#/item/{item_id}", "#item-detail")
        _no_script_ran(browser)
    logs = [e for e in browser.get_log("browser") if "__xss" in e.get("message", "")]
    assert not logs, logs


def test_narrow_window(served: Served, browser: Any) -> None:
    browser.set_window_size(400, 860)
    try:
        for route, selector in (("#/logs", "#log-list .row"), ("#/errors", "#error-list .row")):
            _open(browser, served.ui + route, selector)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 1, f"{route} scrolls sideways by {overflow}px at 400px"
        _open(browser, served.ui + "#/logs", "#log-list .row")
        _screenshot(browser, "logs-narrow.png")
    finally:
        browser.set_window_size(1280, 900)


def _post_log(http: str, text: str) -> None:
    record = LogRecord(
        time_unix_nano=time.time_ns(),
        severity_number=9,
        severity_text="INFO",
        body=AnyValue(string_value=text),
    )
    request = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=AnyValue(string_value="other"))]
                ),
                scope_logs=[ScopeLogs(scope=InstrumentationScope(name="other.client"), log_records=[record])],
            )
        ]
    )
    req = urllib.request.Request(
        http + "/v1/logs",
        data=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
