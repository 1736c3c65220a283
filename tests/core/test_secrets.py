"""Secrets in values: the scrubber's named rules (provider tokens, private keys, URL passwords, secret
key/value pairs in text, JWTs, Bearer/Basic, cards), with samples made at test time in the published
shapes (tests/secret_samples.py), look-alikes and a corpus that must arrive unchanged, and the
pre-filter's C twin against its Python definition."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from secret_samples import Sample, corpus, look_alikes, positives

from highlight_logging._core import native as _native
from highlight_logging._core import scrub as _scrub
from highlight_logging._core.record import Attributes
from highlight_logging._core.scrub import MARKER, OPTIONAL_RULES, RULES, TRIGGERS, RuleScrubber

SCRUBBER = RuleScrubber()
POSITIVES = positives()
SEPARATORS = [" ", "\n", "\t", ", ", "; ", "(", ")", "'", '"', "<", ">", " | "]


def _id(sample: Sample) -> str:
    return f"{sample.rule}:{sample.text[:12]}"


@pytest.mark.parametrize("sample", POSITIVES, ids=_id)
def test_every_family_is_scrubbed_in_text_keeping_its_context(sample: Sample) -> None:
    """A sample inside a sentence: its secret part is gone, its context and the sentence are kept,
    and the entry names the rule."""
    text = f"startup failed: {sample.text} (retrying)"
    out, entries = SCRUBBER.scrub_text(text, "body")
    assert sample.secret not in out
    assert MARKER in out
    assert sample.kept in out
    assert out.startswith("startup failed: ") and out.endswith(" (retrying)")
    assert entries == [f"body:{sample.rule}"]


@pytest.mark.parametrize("sample", POSITIVES, ids=_id)
def test_every_family_is_scrubbed_in_attributes_at_any_depth(sample: Sample) -> None:
    """Under an innocent key, top-level, nested and in a list."""
    attrs: Attributes = {
        "note": sample.text,
        "ctx": {"detail": {"text": f"got {sample.text}"}},
        "lines": ["ok", sample.text],
    }
    out, entries = SCRUBBER.scrub_attributes(attrs)
    assert sample.secret not in repr(out)
    assert {f"note:{sample.rule}", f"ctx.detail.text:{sample.rule}", f"lines:{sample.rule}"} <= set(entries)


@pytest.mark.parametrize(("family", "text"), look_alikes())
def test_look_alikes_are_untouched(family: str, text: str) -> None:
    """Close to a family's shape, not a secret: arrives as it was."""
    out, entries = SCRUBBER.scrub_text(text, "body")
    assert (out, entries) == (text, []), family
    attrs: Attributes = {"note": text}
    assert SCRUBBER.scrub_attributes(attrs) == (attrs, [])


def test_the_corpus_arrives_unchanged() -> None:
    """UUIDs, git SHAs, digests, URLs without a password, e-mails, base64 images, timestamps, IPs,
    sk-1042, the word password: no false positive, alone or all in one text."""
    texts = corpus()
    for text in [*texts, "\n".join(texts)]:
        assert SCRUBBER.scrub_text(text, "body") == (text, []), text
    attrs: Attributes = {f"k{i}": t for i, t in enumerate(texts)}
    assert SCRUBBER.scrub_attributes(attrs) == (attrs, [])


def test_every_rule_has_a_sample_and_a_look_alike() -> None:
    """No rule goes untested."""
    names = {r.name for r in RULES}
    assert {s.rule for s in POSITIVES} == names
    assert {family for family, _ in look_alikes()} == names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgres://user:pa55word@db:5432/app", f"postgres://user:{MARKER}@db:5432/app"),
        (
            "mongodb+srv://svc:s3cr3t@cluster0.example.net/db",
            f"mongodb+srv://svc:{MARKER}@cluster0.example.net/db",
        ),
        ("amqp://guest:guest@rabbit//", f"amqp://guest:{MARKER}@rabbit//"),
        ("proxy http://u:p%40ss@proxy:3128 down", f"proxy http://u:{MARKER}@proxy:3128 down"),
        ("password=hunter2&next=/home", f"password={MARKER}&next=/home"),
        ('{"password": "two words"}', f'{{"password": "{MARKER}"}}'),
        ("passwd: 'x y z'", f"passwd: '{MARKER}'"),
        ("Authorization: token abc123", f"Authorization: token {MARKER}"),
        ("note: password=x1, retry", f"note: password={MARKER}, retry"),
        ("api-key => abcdef", f"api-key => {MARKER}"),
        ("refreshToken:abcdef", f"refreshToken:{MARKER}"),
        ("dsn=https://k:v@sentry.io/1", f"dsn=https://k:{MARKER}@sentry.io/1"),
        ("token_type=bearer expires_in=3600", f"token_type={MARKER} expires_in=3600"),
        ("token_type: Bearer, password=x1", f"token_type: {MARKER}, password={MARKER}"),
        ("Proxy-Authorization: Basic abc", f"Proxy-Authorization: Basic {MARKER}"),
    ],
)
def test_urls_and_assignments_keep_what_makes_the_log_useful(text: str, expected: str) -> None:
    """URL passwords: scheme, user and host kept; assignments: the key and its quotes kept."""
    assert SCRUBBER.scrub_text(text, "body")[0] == expected


@pytest.mark.parametrize(
    "text", ["postgres://u:***@h/db", "password=*** next", '{"password": "***"}', f"token: {MARKER}"]
)
def test_values_already_masked_are_left_as_they_are(text: str) -> None:
    """What a library or an earlier pass already masked is not reported again."""
    assert SCRUBBER.scrub_text(text, "body") == (text, [])


def test_a_private_key_cut_short_is_scrubbed_to_the_end() -> None:
    """A truncated key block (a cut log line) is replaced from BEGIN to the end of the text."""
    text = "loaded -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx7\nabcdef"
    assert SCRUBBER.scrub_text(text, "body")[0] == f"loaded {MARKER}"


def test_a_key_block_in_json_is_scrubbed_whole() -> None:
    """A service-account JSON with an escaped PEM: the whole block goes, the JSON stays."""
    text = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEv\\nQ==\\n-----END PRIVATE KEY-----\\n"}'
    out, entries = SCRUBBER.scrub_text(text, "body")
    assert "MIIEv" not in out and '"type": "service_account"' in out
    assert "body:private_key" in entries


def test_several_rules_in_one_text_are_all_named() -> None:
    pw = "Zq8" + "x" * 10
    text = f"connect postgres://a:{pw}@h failed; Authorization: Bearer abcdefgh12345678"
    out, entries = SCRUBBER.scrub_text(text, "exception.message")
    assert pw not in out and "abcdefgh12345678" not in out
    assert entries == ["exception.message:url_password", "exception.message:bearer"]


# -- configuration -----------------------------------------------------------------------------------


def test_rules_can_be_turned_off_by_name() -> None:
    """disable_rules keeps every other rule."""
    scrubber = RuleScrubber(disable_rules=["credit_card", "url_password"])
    text = "card 4111 1111 1111 1111 at postgres://a:b1234@h, password=x"
    assert (
        scrubber.scrub_text(text, "body")[0]
        == f"card 4111 1111 1111 1111 at postgres://a:b1234@h, password={MARKER}"
    )


def test_optional_rules_are_off_by_default_and_can_be_turned_on() -> None:
    """E-mail and IP addresses are personal data, not secrets: opt-in."""
    text = "ada@example.com from 10.1.2.3 and 2001:db8::1"
    assert SCRUBBER.scrub_text(text, "body") == (text, [])
    scrubber = RuleScrubber(enable_rules=["email", "ip_address"])
    out, entries = scrubber.scrub_text(text, "body")
    assert out == f"{MARKER} from {MARKER} and {MARKER}"
    assert entries == ["body:email", "body:ip_address"]
    assert {r.name for r in OPTIONAL_RULES} == {"email", "ip_address"}


def test_user_patterns_are_named() -> None:
    """A (name, regex) pair or a {name: regex} dict reports its name; a bare regex reports custom."""
    scrubber = RuleScrubber(extra_patterns={"order_secret": r"OS-\d{6}"})
    assert scrubber.scrub_text("got OS-123456", "body") == (f"got {MARKER}", ["body:order_secret"])
    scrubber = RuleScrubber(extra_patterns=[("pin", r"PIN \d{4}"), r"acct-\d+"])
    assert scrubber.scrub_text("PIN 1234 acct-9", "body")[1] == ["body:pin", "body:custom"]


def test_unknown_rule_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown scrub rule"):
        RuleScrubber(disable_rules=["github"])
    with pytest.raises(ValueError, match="unknown scrub rule"):
        RuleScrubber(enable_rules=["phone"])


# -- property: a secret anywhere in any text never arrives -------------------------------------------

_SECRETS = st.sampled_from([s for seed in (31, 32) for s in positives(seed)])
_AROUND = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(
    sample=_SECRETS,
    before=_AROUND,
    after=_AROUND,
    left=st.sampled_from(SEPARATORS),
    right=st.sampled_from(SEPARATORS),
)
def test_property_a_secret_embedded_in_random_text_never_arrives(
    sample: Sample, before: str, after: str, left: str, right: str
) -> None:
    """Random text either side (a separator between, as any real text has): the secret is gone,
    the pre-filter flags the text in C and in Python, and the rule is named."""
    text = before + left + sample.text + right + after
    assert _scrub._maybe_secret(text) and _scrub._maybe_secret_py(text)
    out, entries = SCRUBBER.scrub_text(text, "body")
    assert sample.secret not in out
    assert any(e.startswith("body:") for e in entries)
    out_attrs, _ = SCRUBBER.scrub_attributes({"note": text, "deep": {"x": [text]}})
    assert sample.secret not in repr(out_attrs)


# -- the pre-filter: the rules' triggers, and its C twin -----------------------------------------------


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_every_match_holds_one_of_its_rules_triggers(rule: Any) -> None:
    """The pre-filter is a necessary condition: each sample's match folds to hold a trigger of its rule."""
    for sample in positives(41):
        if sample.rule == rule.name:
            folded = _scrub._fold(sample.text)
            assert rule.fires(folded), sample.text


_TRIGGER_PIECES = sorted({p for t in TRIGGERS for p in (t, t[:2], t[2:], t.upper())})
_PIECES = [*_TRIGGER_PIECES, "://", "@", ":/", "/", "sk", "key", "SK", "0123456789abcdef", "ABCDEF"]
_PIECES += [" ", "-", "\n", "\t", "_", ".", "é", "€", "\ud800", "x", "4111", "1234567890123"]
prefilter_text = st.lists(st.sampled_from(_PIECES), max_size=20).map("".join)


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(text=prefilter_text)
def test_the_c_pre_filter_agrees_with_its_python_definition(text: str) -> None:
    """Text made of the triggers' pieces, whole, split and cased: the C scan answers as the
    Python reference does."""
    if _native.speedups is None:
        pytest.skip("no C speedups in this install")
    assert _native.speedups.maybe_secret(text) is _scrub._maybe_secret_py(text)


@pytest.mark.parametrize("sample", [*POSITIVES[:3], POSITIVES[-1]], ids=_id)
def test_the_c_pre_filter_flags_each_sample(sample: Sample) -> None:
    if _native.speedups is None:
        pytest.skip("no C speedups in this install")
    assert _native.speedups.maybe_secret(f"x {sample.text} y")


def test_the_c_pre_filter_reads_every_trigger() -> None:
    """Every plain trigger, alone and inside text, cased either way; clean text is clean."""
    if _native.speedups is None:
        pytest.skip("no C speedups in this install")
    check = _native.speedups.maybe_secret
    for t in TRIGGERS:
        if t in (_scrub.URL_TRIGGER, _scrub.HEX_TRIGGER):
            continue
        assert check(t) and check(f"é {t.upper()} x") and _scrub._maybe_secret_py(t), t
    assert check("a://b@c") and not check("a://b\n@c") and check("a://b\n://c@d")
    assert check("SK" + "0a" * 16) and check("key-" + "f" * 32) and not check("sk" + "ab" * 15 + "a")
    assert not check("user 42 did login from the main page") and not check("")


def test_the_c_pre_filter_rejects_bad_triggers() -> None:
    if _native.speedups is None:
        pytest.skip("no C speedups in this install")
    speedups = _native.speedups
    try:
        with pytest.raises(ValueError):
            speedups.set_triggers(("x" * 25,), _scrub.URL_TRIGGER, _scrub.HEX_TRIGGER)
        with pytest.raises(ValueError):
            speedups.set_triggers(("é",), _scrub.URL_TRIGGER, _scrub.HEX_TRIGGER)
        # Until triggers are set again, every text is a possible secret (never a silent pass).
        assert speedups.maybe_secret("plain")
    finally:
        speedups.set_triggers(TRIGGERS, _scrub.URL_TRIGGER, _scrub.HEX_TRIGGER)
    assert not speedups.maybe_secret("plain")


def test_rule_names_are_identifiers() -> None:
    """Names go into highlight.scrubbed and settings: short snake_case, unique."""
    names = [r.name for r in (*RULES, *OPTIONAL_RULES)]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)


def test_source_lines_of_a_traceback_keep_their_code() -> None:
    """A traceback shows code: ``password=password`` there is an expression, not a secret; a quoted
    literal on such a line, or a value in the message, is still replaced."""
    value = "Xy7" + "q" * 12
    stack = (
        "Traceback (most recent call last):\n"
        '  File "/app/views.py", line 42, in login\n'
        "    user = authenticate(username=username, password=password)\n"
        '  File "/app/auth.py", line 7, in authenticate\n'
        f'    conn = connect(dsn, password="{value}", token=settings.TOKEN)\n'
        f"app.AuthError: rejected password={value}\n"
    )
    out, entries = SCRUBBER.scrub_text(stack, "exception.stacktrace")
    assert "authenticate(username=username, password=password)" in out
    assert "token=settings.TOKEN)" in out
    assert value not in out
    assert entries == ["exception.stacktrace:secret_assignment"]


def test_an_exception_line_right_after_a_file_line_is_not_code() -> None:
    """With no source to show (python -c, a zip), the exception's line follows the File line."""
    stack = 'Traceback (most recent call last):\n  File "<string>", line 8, in f\nPermissionError: bad password=hunter2xyz\n'
    out, _ = SCRUBBER.scrub_text(stack, "exception.stacktrace")
    assert "hunter2xyz" not in out
