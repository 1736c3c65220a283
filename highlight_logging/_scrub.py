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
verdict; see :func:`_maybe_secret`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any

from highlight_logging import _native
from highlight_logging._record import Attributes, Pending, Value

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

_SEPARATORS = re.compile(r"[_.\-]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

# Only run on strings the pre-filter flags.  The lookbehinds stop a match starting mid-token;
# a card run's end is checked in _default_repl (a lookahead there would backtrack).
_DEFAULT_RE = re.compile(
    r"(?P<card>(?<![0-9A-Za-z])[0-9](?:[ -]?[0-9]){12,})"
    r"|(?P<jwt>(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)"
    r"|\b(?P<scheme>(?i:bearer|basic)[ \t]+)(?P<cred>[A-Za-z0-9._~+/-]+=*)",
    re.ASCII,
)
_CARD_GROUPS = re.compile(r"([ -])")
# Shortest string any default pattern can match ("basic x", "eyJa.b.").
_DEFAULT_MIN_LEN = 7

# Pre-filter table: ASCII letters lower-cased, every digit folded onto "0".
_FOLD_TABLE = bytes(48 if 48 <= b <= 57 else (b + 32 if 65 <= b <= 90 else b) for b in range(256))
# Value types with nothing to scrub (bool is listed because type() is matched exactly).
_SCALARS = frozenset((int, float, bool, type(None)))
_SCALARS_AND_STR = _SCALARS | {str}


def _maybe_secret(s: str) -> bool:
    """Cheap necessary condition for any default pattern to match ``s``.

    On ordinary text the regex costs several µs, this a fraction of one.  One C pass folds the
    text: ASCII letters lower-cased, every digit turned into "0", spaces and dashes deleted; a
    card (13+ digits, single spaces/dashes between) is then 13 zeros in a row.  Deleting and
    case-folding only ever add false alarms, which the regex then rules out.
    """
    try:
        raw = s.encode()
    except UnicodeEncodeError:  # lone surrogates; the plain call is the faster common case
        raw = s.encode("utf-8", "surrogatepass")
    folded = raw.translate(_FOLD_TABLE, b" -").decode("latin-1")
    return "eyj" in folded or "bearer" in folded or "basic" in folded or "0000000000000" in folded


def _all_clean(safe_keys: set[Any], texts: list[str], keys: Iterable[Any], values: Sequence[Any]) -> bool:
    if not safe_keys.issuperset(keys):
        return False  # unknown keys: the per-record path learns them
    if not _SCALARS_AND_STR.issuperset(map(type, values)):
        return False  # containers: walked record by record
    # "\n" survives the pre-filter's folding, so no match can span two texts.
    return not _maybe_secret("\n".join(texts + [v for v in values if type(v) is str]))


def chunk_clean_py(chunk: Sequence[Pending], safe_keys: set[Any]) -> bool:
    """True when no record in ``chunk`` can need scrubbing: every extra's key in ``safe_keys``, every
    value a scalar or a string, and the pre-filter (:func:`_maybe_secret`) clear on the bodies and
    string values.  The reference for ``_speedups.chunk_clean``, which may only answer False more
    often (then the records are scrubbed one by one, with the same result)."""
    pairs = list(chain.from_iterable([p.extras for p in chunk]))
    keys, values = zip(*pairs, strict=True) if pairs else ((), ())
    return _all_clean(safe_keys, [p.body for p in chunk], keys, values)


#: The C twin where it was built: ~0.05 us a record against ~0.9 for the reference (the export
#: worker's largest Python cost per record after the C fast path).
chunk_clean: Callable[[Sequence[Pending], set[Any]], bool] = chunk_clean_py
if _native.speedups is not None:
    chunk_clean = _native.speedups.chunk_clean


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
    user pattern's whole match is replaced), ``extra_patterns`` extends them.  Bad patterns
    raise ``ValueError`` here rather than on the worker.

    Scrubbed paths are dotted key paths (``user.password``); list elements report their list's
    path (``items.token``, not ``items.0.token``), and each path is reported once.
    """

    __slots__ = (
        "_batch",
        "_defaults",
        "_deny_keys",
        "_enabled",
        "_key_cache",
        "_min_len",
        "_run_re",
        "_safe_keys",
        "_substrings",
        "_untouched_keys",
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

        The export worker asks this for each chunk of a batch before its fast path (``_plain``).
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
                        paths.append(key)
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
                    new: Value = self._scrub_str(text)
                    if new is value:
                        continue
                    _note(paths, key)
                elif kind in _SCALARS or key in skip:
                    continue
                else:
                    try:
                        new = self._scrub_value(value, key, 1, set(), paths)
                    except Exception:
                        new = MARKER
                        _note(paths, key)
                    if new is value:
                        continue
                if out is None:
                    out = dict(attrs)
                out[key] = new
            if pending and _maybe_secret(pending[0] if len(pending) == 1 else "\n".join(pending)):
                for key, value in attrs.items():  # a suspect: now string by string
                    if type(value) is not str or key in skip:
                        continue
                    new = self._scrub_str(value)
                    if new is not value:
                        _note(paths, key)
                        if out is None:
                            out = dict(attrs)
                        out[key] = new
            return (attrs if out is None else out), paths
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
        try:
            if self._batch and (len(text) < _DEFAULT_MIN_LEN or not _maybe_secret(text)):
                return text, []  # the common case, without the general path's call and checks
        except Exception:
            pass  # _scrub_str below deals with it safely
        new = self._scrub_str(text)
        if new is text:
            return text, []
        return new, [path]

    # -- internals --------------------------------------------------------------------------

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
            if self._defaults and _maybe_secret(s):
                out = _DEFAULT_RE.sub(_default_repl, s)
            for pattern in self._user_patterns:
                out = pattern.sub(_user_repl, out)
            return s if out == s else out
        except Exception:
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


def _note(paths: list[str], path: str) -> None:
    if path not in paths:  # a list of dicts reports each key once, not once per element
        paths.append(path)
