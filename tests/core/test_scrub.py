"""Tests for the secret scrubber (highlight_logging._core.scrub)."""

from __future__ import annotations

import copy
import re
import sys
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from highlight_logging._core import scrub as _scrub
from highlight_logging._core.record import Attributes, Value
from highlight_logging._core.scrub import DEFAULT_KEYS, MARKER, TOO_DEEP
from highlight_logging._core.scrub import RuleScrubber as RuleScrubber


def _paths(entries: list[str]) -> list[str]:
    """The paths of ``"<path>:<rule>"`` entries, each once, in order."""
    return list(dict.fromkeys(e.rsplit(":", 1)[0] for e in entries))


class RuleScrubber(RuleScrubber):
    """The scrubber, reporting paths only: these tests are about what is scrubbed where; the rule
    names are tested in test_secrets.py."""

    __slots__ = ()

    def scrub_attributes(self, attrs: Attributes) -> tuple[Attributes, list[str]]:
        out, entries = super().scrub_attributes(attrs)
        return out, _paths(entries)

    def scrub_text(self, text: str, path: str) -> tuple[str, list[str]]:
        out, entries = super().scrub_text(text, path)
        return out, _paths(entries)


SCRUBBER = RuleScrubber()

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
VISA = "4111 1111 1111 1111"
MASTERCARD = "5555-5555-5555-4444"
AMEX = "378282246310005"


def _parts(key: str) -> list[str]:
    return [p for p in re.split(r"[_.\-]", key.lower()) if p]


def _camel(key: str) -> str:
    first, *rest = _parts(key)
    return first + "".join(p.capitalize() for p in rest)


def _forms(key: str) -> list[str]:
    return sorted(
        {
            key,
            key.lower(),
            key.upper(),
            key.replace("_", "-"),
            key.upper().replace("_", "-"),
            _camel(key),
            "my_" + key.strip("_"),
            "app." + key.strip("_"),
            key.strip("_") + "-Value",
        }
    )


KEY_FORMS = [form for key in DEFAULT_KEYS for form in _forms(key)]


# -- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEY_FORMS)
def test_default_key_forms_are_scrubbed(key: str) -> None:
    """Every default key, in any case, dashed, camelCase, or as part of a longer key, is scrubbed."""
    attrs: Attributes = {key: "hunter2", "other": 1}
    out, paths = SCRUBBER.scrub_attributes(attrs)
    assert out == {key: MARKER, "other": 1}
    assert paths == [key]


@pytest.mark.parametrize("key", KEY_FORMS)
def test_default_key_forms_are_scrubbed_when_nested(key: str) -> None:
    """Denied keys are matched inside nested dicts too, with a dotted path."""
    out, paths = SCRUBBER.scrub_attributes({"outer": {key: "hunter2"}})
    assert out == {"outer": {key: MARKER}}
    assert paths == [f"outer.{key}"]


@pytest.mark.parametrize(
    "key",
    [
        "github_token",
        "db_password",
        "X-Api-Key",
        "user.session",
        "dbPassword",
        "AWS_SECRET_ACCESS_KEY",
        "clientSecret",
        "aws_credentials_file",
        "user_private_key_pem",
        "http.request.header.authorization",
        "XSRFToken",
        "userSession",
    ],
)
def test_compound_keys_are_scrubbed(key: str) -> None:
    """Keys with a denied part or one of the unambiguous substrings are scrubbed."""
    out, paths = SCRUBBER.scrub_attributes({key: "x"})
    assert out == {key: MARKER}
    assert paths == [key]


@pytest.mark.parametrize(
    "key",
    [
        "user",
        "author",
        "authority",
        "tokens_used",
        "path",
        "count",
        "cards_count",
        "discard",
        "sessions",
        "oauth_provider",
        "keyboard",
        "description",
        "user.id",
        "http.method",
    ],
)
def test_ordinary_keys_are_untouched(key: str) -> None:
    """Keys that merely contain a denied word inside a longer part are left alone."""
    attrs: Attributes = {key: "plain value"}
    out, paths = SCRUBBER.scrub_attributes(attrs)
    assert out is attrs
    assert paths == []


def test_denied_key_replaces_whole_value_of_any_type() -> None:
    """A denied key's value is replaced whatever its type, containers included."""
    attrs: Attributes = {"token": 123, "auth": {"user": "bob"}, "cookie": ["a", "b"], "secret": None}
    out, paths = SCRUBBER.scrub_attributes(attrs)
    assert out == {"token": MARKER, "auth": MARKER, "cookie": MARKER, "secret": MARKER}
    assert sorted(paths) == ["auth", "cookie", "secret", "token"]


def test_semantic_convention_keys_are_not_scrubbed_by_key() -> None:
    """Our own highlight./exception./service./... keys are exempt from key matching."""
    attrs: Attributes = {
        "highlight.session_id": "abc",
        "service.token": "svc",
        "telemetry.sdk.name": "x",
        "process.pid": 12,
        "exception.secret": "e",
    }
    out, paths = SCRUBBER.scrub_attributes(attrs)
    assert out is attrs
    assert paths == []


def test_semantic_convention_values_are_still_checked() -> None:
    """Exempt keys still have their string values checked by the value patterns."""
    out, paths = SCRUBBER.scrub_attributes({"exception.message": f"bad card {VISA}"})
    assert out == {"exception.message": f"bad card {MARKER}"}
    assert paths == ["exception.message"]


def test_code_and_thread_keys_are_never_touched() -> None:
    """code.* and thread.* attributes are neither key- nor value-scrubbed."""
    attrs: Attributes = {"code.token": JWT, "thread.name": f"Bearer {JWT}", "code.ns": {"password": "x"}}
    out, paths = SCRUBBER.scrub_attributes(attrs)
    assert out is attrs
    assert paths == []


# -- nesting, identity, safety -------------------------------------------------------------


def test_nested_dicts_and_lists_report_dotted_paths() -> None:
    """Nested matches are scrubbed in place of the value and reported as dotted paths."""
    attrs: Attributes = {
        "user": {"name": "ann", "password": "p", "profile": {"api_key": "k", "age": 3}},
        "headers": {"authorization": "Basic dXNlcjpwYXNz", "accept": "*/*"},
        "items": [{"token": "t1"}, {"token": "t2", "id": 1}, "ok", f"card {AMEX}"],
    }
    out, paths = SCRUBBER.scrub_attributes(attrs)
    assert out == {
        "user": {"name": "ann", "password": MARKER, "profile": {"api_key": MARKER, "age": 3}},
        "headers": {"authorization": MARKER, "accept": "*/*"},
        "items": [{"token": MARKER}, {"token": MARKER, "id": 1}, "ok", f"card {MARKER}"],
    }
    assert paths == ["user.password", "user.profile.api_key", "headers.authorization", "items.token", "items"]


def test_input_is_never_mutated() -> None:
    """Scrubbing returns new containers and leaves the input exactly as it was."""
    attrs: Attributes = {
        "user": {"password": "p", "tags": ["a", f"Bearer {JWT}"]},
        "n": 1,
        "keep": {"a": [1]},
    }
    before = copy.deepcopy(attrs)
    out, _ = SCRUBBER.scrub_attributes(attrs)
    assert attrs == before
    assert out is not attrs
    assert out["keep"] is attrs["keep"]  # untouched branches are shared, not copied


def test_clean_attributes_return_the_same_object() -> None:
    """With nothing to scrub, the very same dict comes back with no paths."""
    attrs: Attributes = {
        "http.method": "GET",
        "http.route": "/api/v1/users/{id}",
        "request_id": "a1b2c3d4-e5f6-4711-8899-aabbccddeeff",
        "n": 12,
        "ratio": 0.5,
        "ok": True,
        "none": None,
        "raw": b"\x00\x01",
        "nested": {"a": [1, "two", {"b": "c"}]},
    }
    out, paths = SCRUBBER.scrub_attributes(attrs)
    assert out is attrs
    assert paths == []


def test_empty_attributes() -> None:
    """An empty dict is returned as is."""
    attrs: Attributes = {}
    assert SCRUBBER.scrub_attributes(attrs) == ({}, [])


def test_too_deep_containers_are_replaced() -> None:
    """Containers nested beyond the depth limit become the too-deep marker."""
    deep: Value = "leaf"
    for _ in range(_scrub.MAX_DEPTH + 5):
        deep = {"k": deep}
    out, _ = SCRUBBER.scrub_attributes({"deep": deep})
    node: Any = out["deep"]
    depth = 1
    while isinstance(node, dict):
        node = node["k"]
        depth += 1
    assert node == TOO_DEEP
    assert depth == _scrub.MAX_DEPTH + 1


def test_cycles_do_not_hang() -> None:
    """A cyclic container (never produced by snapshots) is cut off, not followed forever."""
    loop: dict[str, Any] = {"name": "x"}
    loop["self"] = loop
    loop["again"] = loop
    items: list[Any] = ["a"]
    items.append(items)
    out, _ = SCRUBBER.scrub_attributes({"loop": loop, "items": items})
    assert out["loop"] == {"name": "x", "self": TOO_DEEP, "again": TOO_DEEP}
    assert out["items"] == ["a", TOO_DEEP]


def test_internal_error_replaces_value_with_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    """If scrubbing a value fails, the value becomes the marker rather than leaking."""

    def boom(run: str) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(_scrub, "_scrub_card_run", boom)
    scrubber = RuleScrubber()
    assert scrubber.scrub_text(f"card {VISA}", "body") == (MARKER, ["body"])
    out, paths = scrubber.scrub_attributes(
        {"note": f"card {VISA}", "nested": {"n": f"card {VISA}"}, "ok": "fine"}
    )
    assert out == {"note": MARKER, "nested": {"n": MARKER}, "ok": "fine"}
    assert paths == ["nested.n", "note"]


def test_non_string_keys_do_not_raise() -> None:
    """Malformed snapshots with non-str keys are still handled without raising."""
    attrs: Any = {"outer": {1: "one", ("t",): "tuple", "password": "p"}, 2: "two"}
    out, paths = SCRUBBER.scrub_attributes(attrs)
    assert out == {"outer": {1: "one", ("t",): "tuple", "password": MARKER}, 2: "two"}
    assert paths == ["outer.password"]


def test_key_verdict_cache_is_bounded() -> None:
    """The per-key verdict caches are cleared rather than growing without bound."""
    scrubber = RuleScrubber()
    for i in range(3 * _scrub._CACHE_MAX):
        scrubber.scrub_attributes({f"key_{i}": 1, f"token_{i}": 2, "outer": {f"inner_{i}": 3}})
    assert len(scrubber._safe_keys) + len(scrubber._deny_keys) <= _scrub._CACHE_MAX
    assert len(scrubber._key_cache) <= _scrub._CACHE_MAX
    assert scrubber.scrub_attributes({"token_5": 1}) == ({"token_5": MARKER}, ["token_5"])
    attrs: Attributes = {"code.function": JWT}
    assert scrubber.scrub_attributes(attrs) == (attrs, [])


def test_scrub_text_never_raises_on_malformed_input() -> None:
    """A non-str text (a caller bug) yields the marker instead of an exception."""
    bad: Any = None
    assert SCRUBBER.scrub_text(bad, "body") == (MARKER, ["body"])


# -- value patterns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "card", [VISA, MASTERCARD, AMEX, "4242424242424242", "6011111111111117", "2223003122003222"]
)
def test_luhn_valid_cards_are_scrubbed_in_text(card: str) -> None:
    """Luhn-valid card numbers are replaced, keeping the surrounding text."""
    assert SCRUBBER.scrub_text(f"paid with {card}, thanks", "body") == (
        f"paid with {MARKER}, thanks",
        ["body"],
    )


def test_luhn_valid_cards_are_scrubbed_in_attributes() -> None:
    """Card numbers in attribute strings are replaced at any depth."""
    out, paths = SCRUBBER.scrub_attributes({"note": VISA, "order": {"lines": [f"pan={MASTERCARD};"]}})
    assert out == {"note": MARKER, "order": {"lines": [f"pan={MARKER};"]}}
    assert paths == ["order.lines", "note"]


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112 shipped",  # Luhn-invalid 16 digits
        "order 1234-5678-9012-3456 shipped",  # Luhn-invalid, dashed
        "ts=1712345678901 ns=1712345678901234567",  # timestamps: start with 1, not a card
        "id 4111111111111111abc",  # glued to letters: part of an identifier
        "span a1b2c3d4-e5f6-4711-8899-aabbccddeeff",
        "41111111111111111111111 is too long",
        "short 4111 1111",
    ],
)
def test_non_card_numbers_are_untouched(text: str) -> None:
    """Numbers that are not plausible, Luhn-valid cards are kept."""
    out, paths = SCRUBBER.scrub_text(text, "body")
    assert out is text
    assert paths == []


def test_card_inside_a_longer_digit_run_is_found() -> None:
    """A card next to other separated numbers is still found and only it is replaced."""
    assert SCRUBBER.scrub_text(f"ids 12 {VISA} 7", "body") == (f"ids 12 {MARKER} 7", ["body"])


def test_jwt_is_scrubbed_with_surrounding_text_kept() -> None:
    """A JWT is replaced wherever it appears in a string."""
    text = f"token={JWT}; next"
    assert SCRUBBER.scrub_text(text, "body") == (f"token={MARKER}; next", ["body"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc123.def-456", f"Authorization: Bearer {MARKER}"),
        ("auth=bearer xyzXYZ123 ok", f"auth=bearer {MARKER} ok"),
        ("BEARER sk_live_0123456789", f"BEARER {MARKER}"),
        (f"got Bearer {JWT} here", f"got Bearer {MARKER} here"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {MARKER}"),
        ("basic dXNlcjpwYXNzd29yZA== sent", f"basic {MARKER} sent"),
    ],
)
def test_bearer_and_basic_credentials_are_scrubbed(text: str, expected: str) -> None:
    """Bearer/Basic credentials are replaced, keeping the scheme word and surrounding text."""
    assert SCRUBBER.scrub_text(text, "exception.message") == (expected, ["exception.message"])


@pytest.mark.parametrize(
    "text",
    [
        "missing bearer token",
        "basic auth failed",
        "Basic settings saved",
        "the bearer of bad news",
        "hello world",
        "",
    ],
)
def test_prose_is_untouched(text: str) -> None:
    """Ordinary prose mentioning bearer/basic is not mistaken for a credential."""
    out, paths = SCRUBBER.scrub_text(text, "body")
    assert out is text
    assert paths == []


# -- configuration -------------------------------------------------------------------------


def test_extra_keys_extend_the_defaults() -> None:
    """extra_keys adds to the default denylist."""
    scrubber = RuleScrubber(extra_keys=["tenant", "Account-Number"])
    out, paths = scrubber.scrub_attributes(
        {"tenant_id": "t", "accountNumber": "1", "password": "p", "user": "u"}
    )
    assert out == {"tenant_id": MARKER, "accountNumber": MARKER, "password": MARKER, "user": "u"}
    assert sorted(paths) == ["accountNumber", "password", "tenant_id"]


def test_keys_replace_the_defaults() -> None:
    """keys replaces the default denylist, including the default substring rule."""
    scrubber = RuleScrubber(keys=["tenant"])
    out, paths = scrubber.scrub_attributes({"tenant": "t", "password": "p", "dbPassword": "q"})
    assert out == {"tenant": MARKER, "password": "p", "dbPassword": "q"}
    assert paths == ["tenant"]


def test_empty_keys_disable_key_matching() -> None:
    """An empty key list scrubs by value only."""
    scrubber = RuleScrubber(keys=[])
    attrs: Attributes = {"password": "p"}
    assert scrubber.scrub_attributes(attrs) == ({"password": "p"}, [])


def test_extra_patterns_extend_the_defaults() -> None:
    """extra_patterns are applied (whole match replaced) alongside the default patterns."""
    scrubber = RuleScrubber(extra_patterns=[r"acct-\d+", re.compile(r"(?i)ssn:\s*\d{3}-\d{2}-\d{4}")])
    text = f"acct-42 paid {VISA}, SSN: 123-45-6789"
    assert scrubber.scrub_text(text, "body") == (f"{MARKER} paid {MARKER}, {MARKER}", ["body"])
    out, paths = scrubber.scrub_attributes({"note": "acct-7", "short": "acct-1"})
    assert out == {"note": MARKER, "short": MARKER}
    assert paths == ["note", "short"]


def test_patterns_replace_the_defaults() -> None:
    """patterns replaces the default value patterns entirely."""
    scrubber = RuleScrubber(patterns=[r"acct-\d+"])
    assert scrubber.scrub_text(f"acct-42 paid {VISA}", "body") == (f"{MARKER} paid {VISA}", ["body"])


def test_empty_patterns_disable_value_scrubbing() -> None:
    """An empty pattern list scrubs by key only."""
    scrubber = RuleScrubber(patterns=[])
    text = f"Bearer {JWT}"
    assert scrubber.scrub_text(text, "body") == (text, [])
    assert scrubber.scrub_attributes({"note": text, "token": "t"}) == (
        {"note": text, "token": MARKER},
        ["token"],
    )


def test_empty_matching_user_pattern_does_not_sprinkle_markers() -> None:
    """A user pattern that can match the empty string only replaces non-empty matches."""
    scrubber = RuleScrubber(patterns=[r"x*"])
    assert scrubber.scrub_text("abxxc", "body") == (f"ab{MARKER}c", ["body"])
    assert scrubber.scrub_text("abc", "body") == ("abc", [])


def test_invalid_user_pattern_is_rejected_at_construction() -> None:
    """A pattern that does not compile fails fast in __init__, not on the worker."""
    with pytest.raises(ValueError, match="invalid scrub pattern"):
        RuleScrubber(extra_patterns=["("])


def test_disabled_scrubber_returns_inputs_untouched() -> None:
    """enabled=False returns the very same objects and no paths."""
    scrubber = RuleScrubber(enabled=False)
    attrs: Attributes = {"password": "p", "note": VISA}
    text = f"Bearer {JWT}"
    out, paths = scrubber.scrub_attributes(attrs)
    assert out is attrs
    assert paths == []
    out_text, text_paths = scrubber.scrub_text(text, "body")
    assert out_text is text
    assert text_paths == []


# -- property ------------------------------------------------------------------------------

_SECRET_KEYS = st.sampled_from(KEY_FORMS)
_KEYS = st.one_of(
    _SECRET_KEYS,
    st.sampled_from(
        ["user", "author", "tokens_used", "path", "count", "id", "highlight.x", "code.x", "thread.x"]
    ),
    st.text(max_size=12),
)
_STRINGS = st.one_of(
    st.text(max_size=40),
    st.sampled_from([VISA, AMEX, f"Bearer {JWT}", "Basic dXNlcjpwYXNz", "4111111111111112", "basic auth"]),
)
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.binary(max_size=8),
    _STRINGS,
)
_VALUES: st.SearchStrategy[Value] = st.recursive(
    _LEAVES,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=4)),
    max_leaves=20,
)
_DENIED = frozenset(KEY_FORMS)
_EXEMPT = ("highlight.", "code.", "thread.", "exception.", "service.", "telemetry.", "process.")


def _assert_no_denied_survivor(value: Value) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            if key in _DENIED:
                assert child == MARKER, key
            else:
                _assert_no_denied_survivor(child)
    elif isinstance(value, list):
        for child in value:
            _assert_no_denied_survivor(child)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=6))
def test_property_never_raises_never_mutates_never_leaks(attrs: Attributes) -> None:
    """For arbitrary snapshots: no exception, input unchanged, no value under a denied key survives."""
    before = copy.deepcopy(attrs)
    out, paths = SCRUBBER.scrub_attributes(attrs)
    assert attrs == before
    assert (out is attrs) == (paths == [])
    for key, value in out.items():
        if key.startswith(("code.", "thread.")):
            continue  # never touched, by design
        if key.startswith(_EXEMPT):
            _assert_no_denied_survivor(value)  # the key itself is exempt, not what is under it
        elif key in _DENIED:
            assert value == MARKER, key
        else:
            _assert_no_denied_survivor(value)
    again, _ = SCRUBBER.scrub_attributes(out)
    assert again == out  # idempotent


# --- the worker's chunk check and its C twin -------------------------------------------------------

try:
    from highlight_logging import _speedups

    # Built but not used (HIGHLIGHT_LOGGING_PURE_PYTHON): _core.scrub did not give it its triggers.
    _speedups.set_triggers(_scrub.TRIGGERS, _scrub.URL_TRIGGER, _scrub.HEX_TRIGGER)
except ImportError:
    _speedups = None

CHUNK_CHECKS = [pytest.param(_scrub.chunk_clean_py, id="python")]
if _speedups is not None:
    CHUNK_CHECKS.append(pytest.param(_speedups.chunk_clean, id="c"))


def _queued(body: str, extras: tuple[tuple[Any, Any], ...] = ()) -> Any:
    from highlight_logging._core import convert as _convert
    from highlight_logging._core.settings import Settings

    return _convert.capture_record_py(Settings(), 1, 20, "INFO", "s", body, {}, [])._replace(extras=extras)


# Text made of the pre-filter's pieces, whole and split: pattern letters in both cases, digit runs
# either side of thirteen, the separators it deletes, a line break, non-ASCII (a lone surrogate too).
_PIECES = ["eyJ", "ey", "J", "bearer", "Bea", "rer", "basic", "BAS", "ic", "0", "1234", "567890123"]
_PIECES += [" ", "-", "\n", "\t", "_", ".", "é", "€", "\ud800", "x", "4111"]
prefilter_text = st.lists(st.sampled_from(_PIECES), max_size=16).map("".join)


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(texts=st.lists(prefilter_text, min_size=1, max_size=4))
def test_the_c_chunk_check_folds_text_as_the_pre_filter(texts: list[str]) -> None:
    """For generated text, the C check clears a chunk exactly when the Python pre-filter does."""
    if _speedups is None:
        pytest.skip("no C speedups in this install")
    chunk = [_queued(t) for t in texts]
    expected = not _scrub._maybe_secret("\n".join(texts))
    assert _scrub.chunk_clean_py(chunk, set()) is expected
    assert _speedups.chunk_clean(chunk, set()) is expected


@pytest.mark.parametrize("check", CHUNK_CHECKS)
@pytest.mark.parametrize(
    ("extras", "clean"),
    [
        ((), True),
        ((("user", 7), ("ok", True), ("ratio", 0.5), ("none", None), ("name", "ann")), True),
        ((("user", 7), ("unknown", 1)), False),  # a key the scrubber has not judged yet
        ((("user", [1]),), False),  # a container: scrubbed record by record
        ((("name", "Bearer abcdefgh"),), False),
        ((("name", "4111 1111 1111 1111"),), False),
        ((("name", "eyJhbGciOi.x.y"),), False),
    ],
)
def test_the_chunk_check_reads_keys_values_and_text(check: Any, extras: Any, clean: bool) -> None:
    """Known keys, scalar or clean string values: clear; an unknown key, a container, a secret: not."""
    safe = {"user", "ok", "ratio", "none", "name"}
    assert check([_queued("user 7 did login", extras), _queued("fine")], safe) is clean


def test_the_scrubber_asks_the_chunk_check_only_when_it_applies() -> None:
    """Scrubbing off: every chunk is clear; user patterns: none is (no shared pre-filter)."""
    chunk = [_queued("Bearer abcdefgh")]
    assert RuleScrubber(enabled=False).chunk_clean(chunk)
    assert not RuleScrubber(extra_patterns=[r"\d+"]).chunk_clean([_queued("fine")])
    assert not RuleScrubber().chunk_clean(chunk)
    assert RuleScrubber().chunk_clean([_queued("fine")])


def _legacy_str(text: str) -> str:
    """``text`` as an old C extension builds it (PyUnicode_FromUnicode, before 3.12): not yet "ready"."""
    import ctypes

    api = ctypes.pythonapi
    if sys.version_info >= (3, 12) or not hasattr(api, "PyUnicode_FromUnicode"):
        pytest.skip("no legacy strings in this Python")
    api.PyUnicode_FromUnicode.restype = ctypes.py_object
    api.PyUnicode_FromUnicode.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
    api.PyUnicode_AsUnicode.restype = ctypes.c_void_p
    api.PyUnicode_AsUnicode.argtypes = [ctypes.py_object]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        made: str = api.PyUnicode_FromUnicode(None, len(text))
        size = len(text) * ctypes.sizeof(ctypes.c_wchar)
        ctypes.memmove(api.PyUnicode_AsUnicode(made), ctypes.create_unicode_buffer(text), size)
    return made


@pytest.mark.parametrize("check", CHUNK_CHECKS)
def test_a_legacy_string_is_read_whole(check: Any) -> None:
    """A str an old C extension made (not "ready" before 3.12) is scanned, not read as empty."""
    assert check([_queued(_legacy_str("Bearer abcdefghij"))], set()) is False
