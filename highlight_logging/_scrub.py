"""Secret scrubbing for records, run once per record on the export worker thread.

Two independent mechanisms, both replacing what they catch with :data:`MARKER`:

**By key** (attributes only, at every nesting level).  A key is *denied* when either

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

**By value** (every string: attribute values at any depth, and texts such as the body via
:meth:`Scrubber.scrub_text`).  Only the matched substring is replaced:

* payment-card numbers: 13-19 digits, optionally separated by single spaces or dashes, that
  pass the Luhn check and start with 2-6 (the payment-card major industry identifiers; this
  spares millisecond/nanosecond timestamps, a tenth of which would otherwise pass Luhn).  A digit
  run glued to letters (part of an identifier) is not a card;
* JWTs: three base64url segments, the first starting with ``eyJ``;
* ``Bearer <token>`` and ``Basic <base64>`` credentials (scheme case-insensitive), keeping the
  scheme word.  A ``Basic`` credential must decode to something containing ``:`` and a
  ``Bearer`` one must not be a short lowercase word, so prose like "basic auth" or "missing
  bearer token" is left alone.

The common case (no secrets) is made cheap by a byte-level pre-filter and by caching each key's
verdict; see :meth:`Scrubber._maybe_secret`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any

from highlight_logging._record import Attributes, Value

__all__ = ["DEFAULT_KEYS", "MARKER", "TOO_DEEP", "Scrubber"]

MARKER = "[scrubbed]"
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
# Top-level key verdicts.
_CHECK, _DENY, _UNTOUCHED = 0, 1, 2

_SEPARATORS = re.compile(r"[_.\-]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

# Lookbehinds sit after the first literal/char so re keeps its fast prefix scan.
_DEFAULT_RE = re.compile(
    r"(?P<card>[0-9](?<![0-9A-Za-z][0-9])(?:[ -]?[0-9]){12,})"
    r"|(?P<jwt>eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)"
    r"|\b(?P<scheme>(?i:bearer|basic)[ \t]+)(?P<cred>[A-Za-z0-9._~+/-]+=*)",
    re.ASCII,
)
_CARD_GROUPS = re.compile(r"([ -])")
# Shortest string any default pattern can match ("basic x", "eyJa.b.").
_DEFAULT_MIN_LEN = 7

# Pre-filter table: every digit becomes "0", any other byte "x".
_DIGIT_TABLE = bytes(48 if 48 <= b <= 57 else 120 for b in range(256))
_CARD_RUN = b"0" * 13


def _luhn_card(digits: str) -> bool:
    """Whether ``digits`` (13-19 ASCII digits) looks like a payment card and passes Luhn."""
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


def _default_repl(m: re.Match[str]) -> str:
    kind = m.lastgroup
    if kind == "card":
        end = m.end()
        text = m.string
        if end < len(text) and text[end].isascii() and text[end].isalnum():
            return m.group()  # digits glued to letters: part of an identifier
        return _scrub_card_run(m.group())
    if kind == "jwt":
        return MARKER
    scheme, cred = m.group("scheme"), m.group("cred")
    if scheme[0] in "bB" and scheme[1] in "aA" and scheme[2] in "sS":  # Basic
        try:
            core = cred.rstrip("=")
            decoded = base64.b64decode(core + "=" * (-len(core) % 4), validate=True)
        except (binascii.Error, ValueError):
            return m.group()
        return scheme + MARKER if b":" in decoded else m.group()
    if len(cred) < 8 and cred.isalpha() and cred.islower():
        return m.group()  # prose: "missing bearer token"
    return scheme + MARKER


def _user_repl(m: re.Match[str]) -> str:
    # An empty match (a pattern like "x*") must not sprinkle markers between characters.
    return MARKER if m.end() > m.start() else ""


def _parts(key: str) -> str:
    return "_".join(p for p in _SEPARATORS.split(key) if p)


def _compile_pattern(p: str | re.Pattern[str]) -> re.Pattern[str]:
    if isinstance(p, re.Pattern):
        return p
    try:
        return re.compile(p)
    except re.error as e:
        raise ValueError(f"invalid scrub pattern {p!r}: {e}") from e


class Scrubber:
    """Replaces secrets in attributes and texts with :data:`MARKER`; never raises, never mutates.

    ``keys`` replaces :data:`DEFAULT_KEYS` (and drops the default substring rule), ``extra_keys``
    extends whichever list is in use.  ``patterns`` replaces the default value patterns (each
    user pattern's whole match is replaced), ``extra_patterns`` extends them.
    """

    __slots__ = (
        "_batch",
        "_defaults",
        "_enabled",
        "_key_cache",
        "_min_len",
        "_run_re",
        "_substrings",
        "_top_cache",
        "_user_patterns",
    )

    def __init__(
        self,
        enabled: bool = True,
        keys: Iterable[str] | None = None,
        extra_keys: Iterable[str] = (),
        patterns: Iterable[str | re.Pattern[str]] | None = None,
        extra_patterns: Iterable[str | re.Pattern[str]] = (),
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
        self._defaults = patterns is None
        self._user_patterns = tuple(
            _compile_pattern(p) for p in (*(() if patterns is None else patterns), *extra_patterns)
        )
        # Strings shorter than this cannot match anything, so they skip the value scan.
        self._min_len = _DEFAULT_MIN_LEN if self._defaults and not self._user_patterns else 0
        if not self._defaults and not self._user_patterns:
            self._min_len = 1 << 62  # no value patterns at all
        # Top-level strings share one pre-filter only when that pre-filter is all there is.
        self._batch = self._defaults and not self._user_patterns
        self._top_cache: dict[Any, int] = {}
        self._key_cache: dict[Any, bool] = {}

    # -- public API -------------------------------------------------------------------------

    def scrub_attributes(self, attrs: Attributes) -> tuple[Attributes, list[str]]:
        """Return ``(attrs, [])`` when nothing matched, else a scrubbed copy and the scrubbed paths."""
        if not self._enabled or not attrs:
            return attrs, []
        try:
            return self._scrub_top(attrs)
        except Exception:
            # Unexpected failure: give up on the values rather than risk leaking one.
            try:
                return {k: MARKER for k in attrs}, [str(k) for k in attrs]
            except Exception:
                return {}, []

    def scrub_text(self, text: str, path: str) -> tuple[str, list[str]]:
        """Apply the value patterns to ``text``; ``[path]`` is returned when something was replaced."""
        if not self._enabled:
            return text, []
        new = self._scrub_str(text)
        if new is text:
            return text, []
        return new, [path]

    # -- internals --------------------------------------------------------------------------

    def _scrub_top(self, attrs: Attributes) -> tuple[Attributes, list[str]]:
        paths: list[str] = []
        out: Attributes | None = None
        cache = self._top_cache
        min_len = self._min_len
        batch = self._batch
        # Top-level strings wait for one pre-filter over all of them (see _maybe_secret).
        pending_keys: list[str] = []
        pending: list[str] = []
        for key, value in attrs.items():
            verdict = cache.get(key)
            if verdict is None:
                verdict = self._top_verdict(key)
            if verdict == _CHECK:
                if isinstance(value, str):
                    if len(value) < min_len:
                        continue
                    if batch:
                        pending_keys.append(key)
                        pending.append(value)
                        continue
                    new: Value = self._scrub_str(value)
                    if new is value:
                        continue
                    _note(paths, key)
                elif value is None or isinstance(value, (int, float)):
                    continue
                else:
                    try:
                        new = self._scrub_value(value, key, 1, set(), paths)
                    except Exception:
                        new = MARKER
                        _note(paths, key)
                    if new is value:
                        continue
            elif verdict == _DENY:
                new = MARKER
                _note(paths, key)
            else:
                continue
            if out is None:
                out = dict(attrs)
            out[key] = new
        if pending and self._maybe_secret(pending[0] if len(pending) == 1 else "\n".join(pending)):
            for key, value in zip(pending_keys, pending, strict=True):
                new = self._scrub_str(value)
                if new is not value:
                    _note(paths, key)
                    if out is None:
                        out = dict(attrs)
                    out[key] = new
        return (attrs if out is None else out), paths

    def _scrub_value(self, value: Value, path: str, depth: int, seen: set[int], paths: list[str]) -> Value:
        """Scrub one nested value; ``seen`` holds the ids of the containers above it (cycles)."""
        if isinstance(value, str):
            new = self._scrub_str(value)
            if new is not value:
                _note(paths, path)
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
                    _note(paths, sub)
                else:
                    new = self._scrub_value(value, sub, depth + 1, seen, paths)
            except Exception:
                new = MARKER
                _note(paths, sub)
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
                _note(paths, path)
            if new is not value:
                if out is None:
                    out = list(items)
                out[i] = new
        if out is None:
            return items if isinstance(items, list) else list(items)
        return out

    def _scrub_str(self, s: str) -> str:
        """``s`` itself when clean, else the scrubbed text (the marker if scrubbing failed)."""
        try:
            if len(s) < self._min_len:
                return s
            out = s
            if self._defaults and self._maybe_secret(s):
                out = _DEFAULT_RE.sub(_default_repl, s)
            for pattern in self._user_patterns:
                out = pattern.sub(_user_repl, out)
            return s if out == s else out
        except Exception:
            return MARKER

    @staticmethod
    def _maybe_secret(s: str) -> bool:
        """Cheap necessary condition for any default pattern to match ``s``.

        The regex costs several µs on ordinary text; these are a handful of single C passes.
        A card needs 13 digits with only spaces/dashes between them: with digits folded onto
        "0" and spaces/dashes deleted, that is 13 zeros in a row.
        """
        if "eyJ" in s:
            return True
        lowered = s.lower()
        if "bearer" in lowered or "basic" in lowered:
            return True
        return (
            len(s) >= 13
            and s.encode("utf-8", "surrogatepass").translate(_DIGIT_TABLE, b" -").find(_CARD_RUN) >= 0
        )

    def _top_verdict(self, key: Any) -> int:
        k = key if isinstance(key, str) else str(key)
        if k.startswith(_UNTOUCHED_PREFIXES):
            verdict = _UNTOUCHED
        elif k.startswith(_EXEMPT_PREFIXES):
            verdict = _CHECK
        else:
            verdict = _DENY if self._denied(k) else _CHECK
        cache = self._top_cache
        if len(cache) >= _CACHE_MAX:
            cache.clear()  # keys repeat; a rare full reset beats LRU bookkeeping per lookup
        cache[key] = verdict
        return verdict

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


def _note(paths: list[str], path: str) -> None:
    if path not in paths:  # a list of dicts reports each key once, not once per element
        paths.append(path)
