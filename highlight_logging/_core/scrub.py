"""Secret scrubbing for records, run once per record on the export worker thread.

Two independent mechanisms, both replacing what they catch with :data:`MARKER`; each
replacement is reported in ``highlight.scrubbed`` as ``"<path>:<rule>"`` (``body:github_token``,
``user.password:denied_key``), never with the secret.  ``docs/security.md`` lists every rule.

**By key** (attributes only, at every nesting level; rule ``denied_key``).  A key is *denied*
when either

1. its parts contain a denylist entry as a contiguous run of parts.  Parts come from splitting
   the key on ``_``, ``.``, ``-`` (empty parts dropped) after lower-casing; this is done twice,
   once as written and once after also splitting camelCase (``userSession`` -> ``user``,
   ``session``; ``XSRFToken`` -> ``xsrf``, ``token``).  Entries are split the same way, so
   ``token`` denies ``github_token`` and ``X-Api-Token``, ``x_api_key`` denies ``X-Api-Key``,
   ``connect.sid`` denies ``connect_sid``, ``_csrf`` is just ``csrf``; or
2. with the default list only: its lower-cased, separator-free form contains one of the
   unambiguous substrings ``password``, ``passwd``, ``secret``, ``apikey``, ``privatekey``,
   ``credential`` (``dbPassword``, ``AWS_SECRET_ACCESS_KEY``, ``clientSecret``).

Whole parts are what keep ordinary keys safe: ``author`` is not ``auth``, ``tokens_used`` is
not ``token``, ``cards_count`` is not ``card``.  Known over-matches, accepted as the safe
direction: any key with a ``token``/``session``/``auth``/``card`` part (``token_count``,
``session_count``, ``OAuthProvider``, ``card_type``), and the substrings inside longer words
(``secretary``, ``password_changed_at``).  A denied key's whole value (any type, containers
included) becomes the marker and is not looked into.

Top-level keys starting with our semantic-convention prefixes (``highlight.``, ``exception.``,
``service.``, ``telemetry.``, ``process.``) are never denied by key, only value-checked;
``code.*`` and ``thread.*`` are not touched at all.

**By value** (every string: attribute values at any depth, and texts such as the body, the
exception message and stacktrace via :meth:`RuleScrubber.scrub_text`): the :data:`RULES`, each a
named pattern.  Only the secret part of a match is replaced: a URL keeps its scheme, user and
host, a ``Bearer`` header its scheme word, ``password=...`` its key.

Every rule has *triggers*: short strings, one of which any text it matches contains once
*folded* (ASCII letters lower-cased, every digit turned into ``0``, spaces and dashes deleted).
:func:`_maybe_secret` looks for all triggers at once, in C where it was built; a text without
any (the common case) is not looked at further, and a text with some runs only the rules whose
triggers it holds.  See ``docs/security.md`` for the cost.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from highlight_logging._core import native as _native
from highlight_logging._core.record import Attributes, Pending, Value

if TYPE_CHECKING:
    from highlight_logging._core.settings import Settings

__all__ = ["DEFAULT_KEYS", "MARKER", "OPTIONAL_RULES", "RULES", "TOO_DEEP", "Rule", "RuleScrubber"]

MARKER = "[scrubbed]"
#: The rule name reported for a value replaced because of its key.
KEY_RULE = "denied_key"
#: The rule name reported for a value replaced because scrubbing it failed.
ERROR_RULE = "scrub_error"
#: Replaces containers nested deeper than :data:`MAX_DEPTH`, or cyclic.
TOO_DEEP = "[too deep]"
MAX_DEPTH = 32

#: Sentry's default denylist plus card, cvv, ssn.
DEFAULT_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "auth",
    "credentials",
    "mysql_pwd",
    "privatekey",
    "private_key",
    "token",
    "session",
    "set_cookie",
    "cookie",
    "authorization",
    "proxy-authorization",
    "x_api_key",
    "x_forwarded_for",
    "csrftoken",
    "sessionid",
    "x_csrftoken",
    "csrf_token",
    "csrf",
    "_csrf",
    "_csrf_token",
    "connect.sid",
    "PHPSESSID",
    "_session",
    "user_session",
    "_xsrf",
    "XSRF-TOKEN",
    "card",
    "cvv",
    "ssn",
)

# Compared against the separator-free key, so ``api_key``/``private_key`` are covered too.
_DEFAULT_SUBSTRINGS = ("password", "passwd", "secret", "apikey", "privatekey", "credential")

_EXEMPT_PREFIXES = ("highlight.", "exception.", "service.", "telemetry.", "process.")
_UNTOUCHED_PREFIXES = ("code.", "thread.")

_CACHE_MAX = 4096

_SEPARATORS = re.compile(r"[_.\-]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

# --- value rules ---------------------------------------------------------------------------------
#
# Our own patterns, written from the shapes secret scanners publish (gitleaks' default rules,
# Yelp's detect-secrets plugins) and from Sentry Relay's @pemkey, @urlauth, @password, @bearer and
# @creditcard.  The lookbehinds stop a provider token from starting mid-token.

# Pre-filter fold, on UTF-8 bytes: ASCII letters lower-cased, every digit folded onto "0"; spaces and
# dashes are deleted by the translate call.  Triggers are written folded.
_FOLD_TABLE = bytes(48 if 48 <= b <= 57 else (b + 32 if 65 <= b <= 90 else b) for b in range(256))
# Two triggers that are conditions rather than substrings (the C twin knows both):
#: "://" with an "@" after it on the same line (a URL that may carry a password).
URL_TRIGGER = "://…@"
#: "sk" or "key" right before 32 folded hex characters (Twilio and Mailgun keys).
HEX_TRIGGER = "sk|key+hex32"
_HEX32 = re.compile(r"(?:sk|key)[0a-f]{32}")


def _fold(s: str) -> str:
    try:
        raw = s.encode()
    except UnicodeEncodeError:  # lone surrogates; the plain call is the faster common case
        raw = s.encode("utf-8", "surrogatepass")
    return raw.translate(_FOLD_TABLE, b" -").decode("latin-1")


def _fires(trigger: str, folded: str) -> bool:
    if trigger == URL_TRIGGER:  # "://", then "@" later on the same line
        i = folded.find("://")
        while i >= 0:
            at = folded.find("@", i + 3)
            if at < 0:
                return False
            newline = folded.find("\n", i + 3, at)
            if newline < 0:
                return True
            i = folded.find("://", newline)
        return False
    if trigger == HEX_TRIGGER:
        return ("sk" in folded or "key" in folded) and _HEX32.search(folded) is not None
    return trigger in folded


class Rule(NamedTuple):
    """One value rule.  ``pattern``'s match is replaced by :data:`MARKER`; when the pattern has a
    group named ``secret``, only that group is (the rest of the match is kept).  ``repl``, when
    given, computes the replacement itself (returning the match unchanged declines it).
    ``triggers``: folded strings (see :func:`_fold`), one of which every match contains."""

    name: str
    pattern: re.Pattern[str]
    triggers: tuple[str, ...]
    repl: Callable[[re.Match[str]], str] | None = None
    description: str = ""

    def fires(self, folded: str) -> bool:
        return any(_fires(t, folded) for t in self.triggers)

    def apply(self, text: str) -> str:
        return self.pattern.sub(self.repl or _replace_secret, text)


def _replace_secret(m: re.Match[str]) -> str:
    if m.re.groupindex.get("secret") is None:
        return MARKER
    whole, start = m.group(), m.start()
    return whole[: m.start("secret") - start] + MARKER + whole[m.end("secret") - start :]


_CARD_GROUPS = re.compile(r"([ -])")


def _luhn_card(digits: str) -> bool:
    """Whether ``digits`` is 13-19 digits, starts like a payment card (2-6) and passes Luhn."""
    if not (13 <= len(digits) <= 19) or digits[0] not in "23456":
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i & 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def _scrub_card_run(run: str) -> str:
    """Scrub the card(s) inside one run of digits/single separators; the run if none."""
    if _luhn_card(run.replace(" ", "").replace("-", "")):
        return MARKER
    pieces = _CARD_GROUPS.split(run)  # digit groups at even indexes, separators at odd
    if len(pieces) == 1:
        return run  # an unseparated run is one number: not a card as a whole, not split
    groups = pieces[0::2]
    out: list[str] = []
    i, found = 0, False
    while i < len(groups):
        # Longest card-like window of whole groups starting here; windows hold <= 19 digits,
        # so this stays linear in the run length.
        best, digits, j = -1, "", i
        while j < len(groups) and len(digits) + len(groups[j]) <= 19:
            digits += groups[j]
            if _luhn_card(digits):
                best = j
            j += 1
        if best < 0:
            out.append(groups[i])
            if i < len(groups) - 1:
                out.append(pieces[2 * i + 1])
            i += 1
            continue
        found = True
        out.append(MARKER)
        if best < len(groups) - 1:
            out.append(pieces[2 * best + 1])
        i = best + 1
    return "".join(out) if found else run


def _card_repl(m: re.Match[str]) -> str:
    end = m.end()
    text = m.string
    if end < len(text) and text[end].isascii() and text[end].isalnum():
        return m.group()  # digits glued to letters: part of an identifier
    return _scrub_card_run(m.group())


def _basic_repl(m: re.Match[str]) -> str:
    cred = m.group("secret")
    try:
        core = cred.rstrip("=")
        decoded = base64.b64decode(core + "=" * (-len(core) % 4), validate=True)
    except (binascii.Error, ValueError):
        return m.group()
    return m.group("scheme") + MARKER if b":" in decoded else m.group()


def _bearer_repl(m: re.Match[str]) -> str:
    cred = m.group("secret")
    if len(cred) < 8 and cred.isalpha() and cred.islower():
        return m.group()  # prose: "missing bearer token"
    return m.group("scheme") + MARKER


# Keys whose value is a secret when they are written ``key=value``, ``key: value`` or
# ``"key": "value"`` inside text.  The pattern finds keys holding one of these words (one
# separator allowed inside the two-word ones); _assignment_repl then asks for a whole part or an
# unambiguous substring, as the attribute key rule does, so "author" or "tokens_used" are not keys.
_TEXT_KEY_WORDS = (
    r"pass|pwd|secret|token|auth|credential|api[_.\-]?key|private[_.\-]?key|account[_.\-]?key"
    r"|session[_.\-]?id"
)
_TEXT_KEY_TRIGGERS = (
    "pass", "pwd", "secret", "token", "auth", "credential", "apikey", "api_key", "api.key",
    "privatekey", "private_key", "private.key", "accountkey", "account_key", "account.key",
    "sessionid", "session_id", "session.id",
)  # fmt: skip
_TEXT_KEY_PARTS = re.compile(
    r"(?:^|_)(?:pass|password|passwd|passphrase|pwd|secret|token|auth|authorization|credentials?"
    r"|api_key|apikey|private_key|privatekey|account_key|accountkey|session_id|sessionid)(?:_|$)"
)
_TEXT_KEY_SUBSTRINGS = ("password", "passwd", "passphrase", "secret", "apikey", "privatekey", "credential")
_SCHEMES = r"(?i:bearer|basic|token|digest|negotiate)[ \t]+"
_ASSIGNMENT_RE = re.compile(
    # A token followed by a separator first (cheap: most words of prose fail here), then the key.
    r"(?<![A-Za-z0-9_.\-])(?=[A-Za-z0-9_.\-]{1,100}\\?[\"']?[ \t]*(?:=|:(?!:)))"
    rf"(?P<key>[A-Za-z0-9_.\-]{{0,40}}(?i:{_TEXT_KEY_WORDS})[A-Za-z0-9_.\-]{{0,40}})"
    r"(?P<sep>\\?[\"']?[ \t]*(?:=>|:=|=|:(?!:))[ \t]*)"
    # an "Authorization: Bearer x" keeps its scheme word; taken atomically (lookahead + backref)
    rf"(?=(?P<scheme>(?:{_SCHEMES})?))(?P=scheme)"
    # not a value already masked, nor a query or format placeholder (%s, ?, $1, {name}, :name)
    r"(?!\\?[\"']?(?:\[scrubbed\]|(?:\*+|%[sdr]|%\([A-Za-z_]\w*\)[sdr]|\?|\$[0-9]+|\{\w*\}|:[A-Za-z_]\w*)"
    r"(?:[\s\"'&;,)\\]|\Z)))"
    r"(?:(?P<q1>\\?\")(?P<dq>[^\"\n]+?)(?=\\?\"|\n|\Z)"
    r"|(?P<q2>\\?')(?P<sq>[^'\n]+?)(?=\\?'|\n|\Z)"
    r"|(?P<bare>[^\s\"'&;,<>\\)}\]]+))"
)


def _text_key_denied(key: str) -> bool:
    plain = _parts(key.lower())
    if _TEXT_KEY_PARTS.search(plain):
        return True
    camel = _parts(_CAMEL.sub("_", key).lower())
    if camel != plain and _TEXT_KEY_PARTS.search(camel):
        return True
    compact = plain.replace("_", "")
    return any(sub in compact for sub in _TEXT_KEY_SUBSTRINGS)


# A traceback's "  File "x.py", line 12, in f" line: the next line is the source line it shows.
_TRACEBACK_FILE_LINE = re.compile(r'[ \t]*File "[^"\n]*", line [0-9]+')


def _in_source_line(m: re.Match[str]) -> bool:
    """Whether ``m`` is on a traceback's source line (``login(user, password=password)``)."""
    text = m.string
    line_start = text.rfind("\n", 0, m.start())
    if line_start < 0 or not text.startswith((" ", "\t"), line_start + 1):
        return False  # source lines are indented; the exception's own line, right after a File
        # line when no source is shown, is not
    return _TRACEBACK_FILE_LINE.match(text, text.rfind("\n", 0, line_start) + 1, line_start) is not None


def _assignment_repl(m: re.Match[str]) -> str:
    key, scheme = m.group("key"), m.group("scheme")
    q = m.group("q1") or m.group("q2") or ""
    value = m.group("dq") or m.group("sq") or m.group("bare")
    denied = _text_key_denied(key)
    if scheme and "auth" not in key.lower():
        # Only an Authorization-like key has a scheme word: in "token_type=bearer x" the word is
        # the value, and what follows it is more text.
        word = scheme.rstrip()
        rest = m.string[m.start("scheme") + len(word) : m.end()]
        return (
            key + m.group("sep") + (MARKER if denied else word) + _ASSIGNMENT_RE.sub(_assignment_repl, rest)
        )
    head = key + m.group("sep") + scheme
    if denied:
        if not q and _in_source_line(m):
            return m.group()  # code: an expression (a quoted literal there is still replaced)
        return head + q + MARKER
    # Not a secret key: its value may still hold one ("note: password=x").
    return head + q + _ASSIGNMENT_RE.sub(_assignment_repl, value)


def _r(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


_B = r"(?<![A-Za-z0-9_\-])"  # a token starts here
_E = r"(?![A-Za-z0-9_\-])"  # and ends here

#: The value rules, in the order they run.  ``docs/security.md`` describes each.
RULES: tuple[Rule, ...] = (
    Rule(
        "private_key",
        _r(
            r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.S,
        ),
        ("privatekey",),
        description="PEM, OpenSSH and PGP private key blocks, BEGIN to END (to the end of the text when cut)",
    ),
    Rule(
        "url_password",
        _r(
            r"[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^\s:/?#@\[\]\"'<>]*:(?!\[scrubbed\]@|\*+@)(?P<secret>[^\s/?#\"'<>]+)@"
        ),
        (URL_TRIGGER,),
        description="the password of scheme://user:password@host; scheme, user and host are kept",
    ),
    Rule(
        "aws_access_key_id",
        _r(_B + r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}" + _E),
        ("akia", "asia", "abia", "acca", "a0t"),
        description="AWS access key ids (AKIA..., ASIA...)",
    ),
    Rule(
        "github_token",
        _r(_B + r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})" + _E),
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        description="GitHub tokens: ghp_, gho_, ghu_, ghs_, ghr_, github_pat_",
    ),
    Rule(
        "gitlab_token",
        _r(_B + r"gl(?:pat|oas|dt|rt|cbt|ptt|ft|imt|agent|soat)-[A-Za-z0-9_\-]{20,255}" + _E),
        ("glpat", "gloas", "gldt", "glrt", "glcbt", "glptt", "glft", "glimt", "glagent", "glsoat"),
        description="GitLab tokens: glpat-, gldt-, glrt-, glptt-, ...",
    ),
    Rule(
        "slack_token",
        _r(_B + r"(?:xox[abeoprs]-[A-Za-z0-9\-]{10,255}|xapp-\d-[A-Za-z0-9\-]{10,255})"),
        ("xox", "xapp0"),
        description="Slack tokens: xoxb-, xoxp-, xoxa-, xoxe-, xapp-",
    ),
    Rule(
        "slack_webhook",
        _r(r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_+/\-]{8,})", re.I),
        ("hooks.slack.com",),
        description="Slack webhook URLs: the path after hooks.slack.com/services/",
    ),
    Rule(
        "stripe_key",
        _r(_B + r"(?:(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,255}|whsec_[A-Za-z0-9]{24,255})" + _E),
        ("k_live_", "k_test_", "k_prod_", "whsec_"),
        description="Stripe secret and restricted keys (sk_live_, rk_live_, sk_test_) and webhook secrets",
    ),
    Rule(
        "google_api_key",
        _r(_B + r"AIza[A-Za-z0-9_\-]{35}" + _E),
        ("aiza",),
        description="Google API keys (AIza...)",
    ),
    Rule(
        "sendgrid_key",
        _r(_B + r"SG\.[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64}" + _E),
        ("sg.",),
        description="SendGrid API keys (SG.x.y)",
    ),
    Rule(
        "anthropic_key",
        _r(_B + r"sk-ant-[a-z0-9]{2,12}-[A-Za-z0-9_\-]{20,255}" + _E),
        ("skant",),
        description="Anthropic API keys (sk-ant-...)",
    ),
    Rule(
        "openai_key",
        _r(
            _B + r"sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,255}"
            r"|[A-Za-z0-9_\-]{0,80}T3BlbkFJ[A-Za-z0-9_\-]{10,255})" + _E
        ),
        ("skproj", "sksvcacct", "skadmin", "t0blbkfj"),
        description="OpenAI API keys (sk-proj-, sk-svcacct-, sk-admin-, and sk-...T3BlbkFJ...)",
    ),
    Rule(
        "npm_token",
        _r(_B + r"npm_[A-Za-z0-9]{36}" + _E),
        ("npm_",),
        description="npm access tokens (npm_...)",
    ),
    Rule(
        "pypi_token",
        _r(_B + r"pypi-AgE[A-Za-z0-9_\-]{50,}"),
        ("pypiage",),
        description="PyPI and TestPyPI upload tokens (pypi-AgE...)",
    ),
    Rule(
        "twilio_key",
        _r(r"(?<![A-Za-z0-9])SK[0-9a-fA-F]{32}(?![A-Za-z0-9])"),
        (HEX_TRIGGER,),
        description="Twilio API key SIDs with their secret (SK + 32 hex)",
    ),
    Rule(
        "mailgun_key",
        _r(r"(?<![A-Za-z0-9])(?:pub)?key-[0-9a-f]{32}(?![A-Za-z0-9])"),
        (HEX_TRIGGER,),
        description="Mailgun API keys (key- or pubkey- + 32 hex)",
    ),
    Rule(
        "shopify_token",
        _r(_B + r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}" + _E),
        ("shpat_", "shpca_", "shppa_", "shpss_"),
        description="Shopify access tokens and shared secrets (shpat_, shpca_, shppa_, shpss_)",
    ),
    Rule(
        "huggingface_token",
        _r(_B + r"hf_[A-Za-z0-9]{34,}" + _E),
        ("hf_",),
        description="Hugging Face tokens (hf_...)",
    ),
    Rule(
        "digitalocean_token",
        _r(_B + r"do[opr]_v1_[a-f0-9]{64}" + _E),
        ("dop_v0_", "doo_v0_", "dor_v0_"),
        description="DigitalOcean tokens (dop_v1_, doo_v1_, dor_v1_)",
    ),
    Rule(
        "hashicorp_vault_token",
        _r(_B + r"hv[sbr]\.[A-Za-z0-9_\-]{24,}" + _E),
        ("hvs.", "hvb.", "hvr."),
        description="HashiCorp Vault tokens (hvs., hvb., hvr.)",
    ),
    Rule(
        "sentry_token",
        _r(_B + r"sntry[su]_[A-Za-z0-9+/=_]{30,}"),
        ("sntry",),
        description="Sentry auth tokens (sntrys_, sntryu_)",
    ),
    Rule(
        "jwt",
        _r(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
        ("eyj",),
        description="JSON Web Tokens (three base64url segments, the first starting eyJ)",
    ),
    Rule(
        "bearer",
        # not the next key of "token_type=bearer expires_in=3600"
        _r(r"\b(?P<scheme>(?i:bearer)[ \t]+)(?P<secret>[A-Za-z0-9._~+/-]+=*)(?![A-Za-z0-9=])", re.ASCII),
        ("bearer",),
        _bearer_repl,
        description="the credential after Bearer (not a short lowercase word, so prose is kept)",
    ),
    Rule(
        "basic_auth",
        _r(r"\b(?P<scheme>(?i:basic)[ \t]+)(?P<secret>[A-Za-z0-9+/]+=*)", re.ASCII),
        ("basic",),
        _basic_repl,
        description="the credential after Basic, when it decodes to user:password",
    ),
    Rule(
        "secret_assignment",
        _ASSIGNMENT_RE,
        _TEXT_KEY_TRIGGERS,
        _assignment_repl,
        description="the value after a secret key and =, :, => or a JSON/YAML separator, in any text",
    ),
    Rule(
        "credit_card",
        _r(r"(?<![0-9A-Za-z])[0-9](?:[ -]?[0-9]){12,}", re.ASCII),
        ("0" * 13,),
        _card_repl,
        description="payment-card numbers: 13-19 digits starting 2-6 that pass the Luhn check",
    ),
)

#: Rules that run only when asked for (``scrub_enable_rules``); personal data rather than secrets.
OPTIONAL_RULES: tuple[Rule, ...] = (
    Rule(
        "email",
        _r(
            r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}"
        ),
        ("@",),
        description="e-mail addresses",
    ),
    Rule(
        "ip_address",
        _r(
            r"(?<![0-9.])(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(?![0-9.])"
            r"|(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{1,4}:){2,7}:?[0-9A-Fa-f]{0,4}(?:::?[0-9A-Fa-f]{1,4})*(?![0-9A-Fa-f:])"
            r"|::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4}(?![0-9A-Fa-f:])"
        ),
        ("0.0", ":"),
        description="IPv4 and IPv6 addresses",
    ),
)

_PLAIN_TRIGGERS = tuple(sorted({t for r in RULES for t in r.triggers if t not in (URL_TRIGGER, HEX_TRIGGER)}))
# Grouped by a piece each group's triggers share, so that a text without it skips them all.
_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (piece, tuple(t for t in _PLAIN_TRIGGERS if piece in t and not any(p in t for p in before)))
    for piece, before in (("_", ()), (".", ("_",)), ("gl", ("_", ".")), ("sk", ("_", ".", "gl")))
)
_OTHER_TRIGGERS = tuple(t for t in _PLAIN_TRIGGERS if not any(piece in t for piece, _ in _GROUPS))
#: Every trigger of :data:`RULES`, for the C twin (its table is built from this at import).
TRIGGERS: tuple[str, ...] = (*_PLAIN_TRIGGERS, URL_TRIGGER, HEX_TRIGGER)
# Shortest text any default rule can match ("pwd=x").
_DEFAULT_MIN_LEN = 5


def _present_triggers(f: str) -> list[str]:
    """The triggers of :data:`RULES` that the folded text ``f`` holds."""
    found = [t for t in _OTHER_TRIGGERS if t in f]
    for piece, triggers in _GROUPS:
        if piece in f:
            found += [t for t in triggers if t in f]
    found += [t for t in (URL_TRIGGER, HEX_TRIGGER) if _fires(t, f)]
    return found


# trigger -> the names of the rules it belongs to
_TRIGGER_RULES: dict[str, frozenset[str]] = {
    t: frozenset(r.name for r in RULES if t in r.triggers) for r in RULES for t in r.triggers
}


def _maybe_secret_py(s: str) -> bool:
    """Whether ``s`` holds a trigger of any default rule: a necessary condition for any to match.

    On ordinary text the rules cost tens of µs, this one C pass (``_speedups.maybe_secret``) a
    fraction of one; this reference is its definition and the path without the C extension.
    Folding and deleting only ever add false alarms, which the rules then rule out.
    """
    f = _fold(s)
    for t in _OTHER_TRIGGERS:
        if t in f:
            return True
    for piece, triggers in _GROUPS:
        if piece in f:
            for t in triggers:
                if t in f:
                    return True
    return _fires(URL_TRIGGER, f) or _fires(HEX_TRIGGER, f)


_maybe_secret: Callable[[str], bool] = _maybe_secret_py
if _native.speedups is not None:
    _native.speedups.set_triggers(TRIGGERS, URL_TRIGGER, HEX_TRIGGER)
    _maybe_secret = _native.speedups.maybe_secret


def _all_clean(safe_keys: set[Any], texts: list[str], keys: Iterable[Any], values: Sequence[Any]) -> bool:
    if not safe_keys.issuperset(keys):
        return False  # unknown keys: the per-record path learns them
    if not _SCALARS_AND_STR.issuperset(map(type, values)):
        return False  # containers: walked record by record
    # "\n" survives the pre-filter's folding and is in no trigger, so no match can span two texts;
    # values repeat across records (routes, user agents), so each is looked at once.
    return not _maybe_secret("\n".join(texts + list({v for v in values if type(v) is str})))


def chunk_clean_py(chunk: Sequence[Pending], safe_keys: set[Any]) -> bool:
    """True when no record in ``chunk`` can need scrubbing: every extra's key in ``safe_keys``, every
    value a scalar or a string, and the pre-filter (:func:`_maybe_secret`) clear on the bodies and
    string values.  The reference for ``_speedups.chunk_clean``, which may only answer False more
    often (then the records are scrubbed one by one, with the same result)."""
    pairs = list(chain.from_iterable([p.extras for p in chunk]))
    keys, values = zip(*pairs, strict=True) if pairs else ((), ())
    return _all_clean(safe_keys, [p.body for p in chunk], keys, values)


#: The C twin where it was built: the reference is the export worker's largest Python cost per
#: record after the C fast path (figures: docs/performance.md).
chunk_clean: Callable[[Sequence[Pending], set[Any]], bool] = chunk_clean_py
if _native.speedups is not None:
    chunk_clean = _native.speedups.chunk_clean


# Value types with nothing to scrub (bool is listed because type() is matched exactly).
_SCALARS = frozenset((int, float, bool, type(None)))
_SCALARS_AND_STR = _SCALARS | {str}


def _user_repl(m: re.Match[str]) -> str:
    # An empty match (a pattern like "x*") must not sprinkle markers between characters.
    return MARKER if m.end() > m.start() else ""


def _parts(key: str) -> str:
    return "_".join(p for p in _SEPARATORS.split(key) if p)


#: A user pattern: a regex (rule name ``custom``), or ``(name, regex)``.
UserPattern = str | re.Pattern[str] | tuple[str, str | re.Pattern[str]]


def _user_rule(p: UserPattern) -> Rule:
    name, pattern = p if isinstance(p, tuple) else ("custom", p)
    if not isinstance(pattern, re.Pattern):
        try:
            pattern = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"invalid scrub pattern {pattern!r}: {e}") from e
    return Rule(str(name), pattern, (), _user_repl, "user pattern")


def _user_rules(patterns: Iterable[UserPattern] | Mapping[str, str | re.Pattern[str]]) -> list[Rule]:
    items = list(patterns.items()) if isinstance(patterns, Mapping) else list(patterns)
    return [_user_rule(p) for p in items]


_ALWAYS, _BY_TRIGGERS, _BY_OWN_TRIGGERS = "always", "by triggers", "by own triggers"

#: Every rule name: the built-in and optional value rules.
RULE_NAMES = frozenset(r.name for r in (*RULES, *OPTIONAL_RULES))


class Scrubber(Protocol):
    """What the encoder asks of a scrubber (one implementation: :class:`RuleScrubber`)."""

    def batch_clean(self, texts: list[str], attribute_dicts: list[Attributes]) -> bool: ...
    def chunk_clean(self, chunk: Sequence[Pending]) -> bool: ...
    def scrub_attributes(self, attrs: Attributes) -> tuple[Attributes, list[str]]: ...
    def scrub_text(self, text: str, path: str) -> tuple[str, list[str]]: ...


def from_settings(settings: Settings) -> Scrubber | None:
    """The scrubber a pipeline's settings ask for, or None with ``scrub=False``."""
    if not settings.scrub:
        return None
    return RuleScrubber(
        keys=settings.scrub_keys,
        extra_keys=settings.scrub_extra_keys,
        patterns=settings.scrub_patterns,
        extra_patterns=settings.scrub_extra_patterns,
        disable_rules=settings.scrub_disable_rules,
        enable_rules=settings.scrub_enable_rules,
    )


class RuleScrubber:
    """Replaces secrets in attributes and texts with :data:`MARKER`; never raises, never mutates.

    ``keys`` replaces :data:`DEFAULT_KEYS` (and drops the default substring rule), ``extra_keys``
    extends whichever list is in use.  ``patterns`` replaces the built-in value rules
    (:data:`RULES`), ``extra_patterns`` adds to them; a user pattern's whole match is replaced, and
    a pattern given as ``(name, regex)`` (or in a ``{name: regex}`` dict) reports that name, else
    ``custom``.  ``disable_rules`` turns built-in rules off by name; ``enable_rules`` turns on
    :data:`OPTIONAL_RULES` (``email``, ``ip_address``).  Bad patterns or unknown rule names raise
    ``ValueError`` here rather than on the worker.

    What was scrubbed is reported as ``"<path>:<rule>"`` entries: paths are dotted key paths
    (``user.password``); list elements report their list's path (``items.token``, not
    ``items.0.token``), and each entry is reported once.
    """

    __slots__ = (
        "_batch",
        "_deny_keys",
        "_enabled",
        "_gated",
        "_key_cache",
        "_min_len",
        "_plan",
        "_rules",
        "_run_re",
        "_safe_keys",
        "_substrings",
        "_untouched_keys",
    )

    def __init__(
        self,
        enabled: bool = True,
        keys: Iterable[str] | None = None,
        extra_keys: Iterable[str] = (),
        patterns: Iterable[UserPattern] | Mapping[str, str | re.Pattern[str]] | None = None,
        extra_patterns: Iterable[UserPattern] | Mapping[str, str | re.Pattern[str]] = (),
        disable_rules: Iterable[str] = (),
        enable_rules: Iterable[str] = (),
    ) -> None:
        self._enabled = bool(enabled)
        entries = {_parts(k.lower()) for k in (*(DEFAULT_KEYS if keys is None else keys), *extra_keys)}
        entries.discard("")
        self._run_re: re.Pattern[str] | None = None
        if entries:
            # Longest first only for readability; anchoring on part boundaries makes order moot.
            alternation = "|".join(re.escape(e) for e in sorted(entries, key=lambda e: (-len(e), e)))
            self._run_re = re.compile(rf"(?:^|_)(?:{alternation})(?:_|$)")
        self._substrings = _DEFAULT_SUBSTRINGS if keys is None else ()
        off, on = set(disable_rules), set(enable_rules)
        unknown = (off | on) - RULE_NAMES
        if unknown:
            known = ", ".join(sorted(RULE_NAMES))
            raise ValueError(f"unknown scrub rule(s) {', '.join(sorted(unknown))}; known rules: {known}")
        rules = [r for r in RULES if r.name not in off] if patterns is None else _user_rules(patterns)
        optional = [r for r in OPTIONAL_RULES if r.name in on and r.name not in off]
        user = _user_rules(extra_patterns)
        self._rules: tuple[Rule, ...] = (*rules, *optional, *user)
        # How each rule is chosen for a text: by the built-in triggers found in it, by its own
        # triggers (optional rules), or always (user patterns).
        self._plan = tuple(
            (r, _ALWAYS if not r.triggers else _BY_OWN_TRIGGERS if r in optional else _BY_TRIGGERS)
            for r in self._rules
        )
        # Only built-in rules: a text without any of their triggers needs no further look, and
        # top-level strings share one pre-filter run.
        self._gated = patterns is None and not optional and not user
        self._batch = self._gated
        # Strings shorter than this cannot match anything, so they skip the value scan.
        self._min_len = _DEFAULT_MIN_LEN if self._gated else 0
        if not self._rules:
            self._min_len = 1 << 62  # no value rules at all
        # Top-level key verdicts, as sets so a whole record's keys are checked in one C call.
        self._safe_keys: set[Any] = set()  # not denied (value-checked or untouched)
        self._untouched_keys: set[Any] = set()  # code.*, thread.*
        self._deny_keys: set[Any] = set()
        self._key_cache: dict[Any, bool] = {}

    # -- public API -------------------------------------------------------------------------

    def batch_clean(self, texts: list[str], attribute_dicts: list[Attributes]) -> bool:
        """True when nothing in ``texts`` and ``attribute_dicts`` needs scrubbing, checked at once.

        That is: every key is a known, not denied key, every value a scalar or a string, and the
        default value pre-filter passes on all the texts and strings together.  The export worker
        asks this once per chunk of a batch (the common case being yes) instead of scrubbing record by record.
        With user patterns there is no pre-filter and this is always False.
        """
        if not self._enabled:
            return True
        if not self._batch:
            return False
        try:
            return _all_clean(
                self._safe_keys,
                texts,
                set().union(*attribute_dicts),
                list(chain.from_iterable(map(dict.values, attribute_dicts))),
            )
        except Exception:
            return False

    def chunk_clean(self, chunk: Sequence[Pending]) -> bool:
        """:meth:`batch_clean` for queued records: their bodies and extras, checked at once.

        The export worker asks this for each chunk of a batch before its fast path (``_export.fastpath``).
        """
        if not self._enabled:
            return True
        if not self._batch:
            return False
        try:
            return chunk_clean(chunk, self._safe_keys)
        except Exception:
            return False

    def scrub_attributes(self, attrs: Attributes) -> tuple[Attributes, list[str]]:
        """Return ``(attrs, [])`` when nothing matched, else a scrubbed copy and the scrubbed paths."""
        if not self._enabled or not attrs:
            return attrs, []
        try:
            # One method, no helper call: this is the per-record hot path.
            paths: list[str] = []
            out: Attributes | None = None
            skip = self._untouched_keys
            if not self._safe_keys.issuperset(attrs):
                # Unknown or denied keys present: the rare path once the key sets are warm.
                if len(self._safe_keys) + len(self._deny_keys) + len(attrs) > _CACHE_MAX:
                    # Keys repeat, so a rare full reset beats LRU bookkeeping on every lookup.
                    # Done before learning so this record's verdicts all stay in the sets.
                    self._safe_keys.clear()
                    self._untouched_keys.clear()
                    self._deny_keys.clear()
                denied: set[str] = set()
                for key in attrs:
                    if key not in self._safe_keys and (key in self._deny_keys or self._learn_top(key)):
                        denied.add(key)
                if denied:
                    out = dict(attrs)
                    for key in denied:
                        out[key] = MARKER
                        paths.append(f"{key}:{KEY_RULE}")
                    skip = skip | denied
            min_len = self._min_len
            batch = self._batch
            # With only the default patterns, top-level strings share one pre-filter run; the
            # strings of untouched keys may join it too, as a false alarm costs only time.
            pending: list[str] = []
            for key, value in attrs.items():
                kind = type(value)
                if kind is str:
                    text: str = value  # type: ignore[assignment]  # narrowed by the type() test
                    if len(text) < min_len:
                        continue
                    if batch:
                        pending.append(text)
                        continue
                    if key in skip:
                        continue
                    hits: list[str] = []
                    new: Value = self._scrub_str(text, hits)
                    if new is value:
                        continue
                    _note(paths, key, hits)
                elif kind in _SCALARS or key in skip:
                    continue
                else:
                    try:
                        new = self._scrub_value(value, key, 1, set(), paths)
                    except Exception:
                        new = MARKER
                        _note(paths, key, [ERROR_RULE])
                    if new is value:
                        continue
                if out is None:
                    out = dict(attrs)
                out[key] = new
            if pending and _maybe_secret(pending[0] if len(pending) == 1 else "\n".join(pending)):
                for key, value in attrs.items():  # a suspect: now string by string
                    if type(value) is not str or key in skip:
                        continue
                    hits = []
                    new = self._scrub_str(value, hits)
                    if new is not value:
                        _note(paths, key, hits)
                        if out is None:
                            out = dict(attrs)
                        out[key] = new
            return (attrs if out is None else out), paths
        except Exception:
            # Unexpected failure: give up on the values rather than risk leaking one.
            try:
                return {k: MARKER for k in attrs}, [f"{k}:{ERROR_RULE}" for k in attrs]
            except Exception:
                return {}, []

    def scrub_text(self, text: str, path: str) -> tuple[str, list[str]]:
        """Apply the value patterns to ``text``; ``[path]`` is returned when something was replaced."""
        if not self._enabled:
            return text, []
        try:
            if self._gated and (len(text) < _DEFAULT_MIN_LEN or not _maybe_secret(text)):
                return text, []  # the common case, without the general path's call and checks
        except Exception:
            pass  # _scrub_str below deals with it safely
        hits: list[str] = []
        new = self._scrub_str(text, hits)
        if new is text:
            return text, []
        return new, [f"{path}:{rule}" for rule in hits]

    # -- internals --------------------------------------------------------------------------

    def _scrub_value(self, value: Value, path: str, depth: int, seen: set[int], paths: list[str]) -> Value:
        """Scrub one nested value; ``seen`` holds the ids of the containers above it (cycles)."""
        if isinstance(value, str):
            hits: list[str] = []
            new = self._scrub_str(value, hits)
            if new is not value:
                _note(paths, path, hits)
            return new
        if isinstance(value, dict):
            if depth > MAX_DEPTH or id(value) in seen:
                return TOO_DEEP
            seen.add(id(value))
            try:
                return self._scrub_dict(value, path, depth, seen, paths)
            finally:
                seen.discard(id(value))
        if isinstance(value, (list, tuple)):
            if depth > MAX_DEPTH or id(value) in seen:
                return TOO_DEEP
            seen.add(id(value))
            try:
                return self._scrub_list(value, path, depth, seen, paths)
            finally:
                seen.discard(id(value))
        return value

    def _scrub_dict(
        self, d: dict[str, Value], path: str, depth: int, seen: set[int], paths: list[str]
    ) -> Value:
        out: dict[str, Value] | None = None
        cache = self._key_cache
        for key, value in d.items():
            sub = f"{path}.{key}"
            try:
                denied = cache.get(key)
                if denied is None:
                    denied = self._nested_verdict(key)
                if denied:
                    new: Value = MARKER
                    _note(paths, sub, [KEY_RULE])
                else:
                    new = self._scrub_value(value, sub, depth + 1, seen, paths)
            except Exception:
                new = MARKER
                _note(paths, sub, [ERROR_RULE])
            if new is not value:
                if out is None:
                    out = dict(d)
                out[key] = new
        return d if out is None else out

    def _scrub_list(
        self, items: list[Value] | tuple[Value, ...], path: str, depth: int, seen: set[int], paths: list[str]
    ) -> Value:
        out: list[Value] | None = None
        for i, value in enumerate(items):
            try:
                new = self._scrub_value(value, path, depth + 1, seen, paths)
            except Exception:
                new = MARKER
                _note(paths, path, [ERROR_RULE])
            if new is not value:
                if out is None:
                    out = list(items)
                out[i] = new
        if out is None:
            return items if isinstance(items, list) else list(items)
        return out

    def _scrub_str(self, s: str, hits: list[str]) -> str:
        """``s`` itself when clean, else the scrubbed text (the marker if scrubbing failed); the
        names of the rules that replaced something are added to ``hits``."""
        try:
            if len(s) < self._min_len:
                return s
            if self._gated and not _maybe_secret(s):
                return s
            folded = _fold(s)
            # The built-in rules run when their triggers are in the text, found in one go.
            fired = frozenset().union(*map(_TRIGGER_RULES.__getitem__, _present_triggers(folded)))
            out = s
            for rule, when in self._plan:
                if when is _BY_TRIGGERS and rule.name not in fired:
                    continue
                if when is _BY_OWN_TRIGGERS and not rule.fires(folded):
                    continue
                new = rule.apply(out)
                if new != out:
                    hits.append(rule.name)
                    out = new
            return s if out == s else out
        except Exception:
            hits.append(ERROR_RULE)
            return MARKER

    def _learn_top(self, key: Any) -> bool:
        """Classify a new top-level key into the verdict sets; True when it is denied."""
        k = key if isinstance(key, str) else str(key)
        if k.startswith(_UNTOUCHED_PREFIXES):
            self._untouched_keys.add(key)
        elif not k.startswith(_EXEMPT_PREFIXES) and self._denied(k):
            self._deny_keys.add(key)
            return True
        self._safe_keys.add(key)
        return False

    def _nested_verdict(self, key: Any) -> bool:
        denied = self._denied(key if isinstance(key, str) else str(key))
        cache = self._key_cache
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = denied
        return denied

    def _denied(self, key: str) -> bool:
        plain = _parts(key.lower())
        run_re = self._run_re
        if run_re is not None:
            if run_re.search(plain):
                return True
            camel = _parts(_CAMEL.sub("_", key).lower())
            if camel != plain and run_re.search(camel):
                return True
        if self._substrings:
            compact = plain.replace("_", "")
            return any(sub in compact for sub in self._substrings)
        return False


def _note(paths: list[str], path: str, rules: list[str]) -> None:
    for rule in rules:
        entry = f"{path}:{rule}"
        if entry not in paths:  # a list of dicts reports each key once, not once per element
            paths.append(entry)
