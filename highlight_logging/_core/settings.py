"""Settings: keyword, then ``configure()``, then environment, then default.

Everything is resolved once, when a front end is built (or first used after ``configure()``), into
one frozen, hashable :class:`Settings`.  Equal settings share one pipeline.  A bad keyword value is
a programming error and raises at construction time, before any record is logged; a bad
environment value gives one warning on stderr and is ignored, as the OTel specification asks.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from highlight_logging._core import diag as _diag

DEFAULT_ENDPOINT = "https://otel.highlight.io:4317"
DEFAULT_HTTP_ENDPOINT = "https://otel.highlight.io:4318"

Pairs = tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved settings. Field names are the keyword names users pass."""

    # What we are
    project_id: str | None = None
    service_name: str | None = None
    service_version: str | None = None
    environment: str | None = None
    resource_attributes: Pairs = ()
    # Where it goes
    endpoint: str = DEFAULT_ENDPOINT
    traces_endpoint: str | None = None  # from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT only
    logs_endpoint: str | None = None  # from OTEL_EXPORTER_OTLP_LOGS_ENDPOINT only
    protocol: str = "grpc"
    grpc_client: str = "auto"  # "h2" (ours, _h2transport), "grpcio", or "auto" (see _transport.make)
    headers: Pairs = ()
    compression: str = "gzip"
    insecure: bool | None = None  # None: decided by the endpoint's scheme
    certificate_file: str | None = None
    client_key_file: str | None = None
    client_certificate_file: str | None = None
    request_timeout: float = 10.0  # one attempt (OTEL_EXPORTER_OTLP_TIMEOUT)
    # Batching and bounds
    max_queue_size: int = 100_000
    max_queue_bytes: int = 64 * 1024 * 1024
    max_export_batch_size: int = 512
    max_request_bytes: int = 4 * 1024 * 1024 - 64 * 1024  # under the collector's 4 MiB default
    schedule_delay: float = 1.0
    export_timeout: float = 30.0  # one batch, retries included (OTEL_BLRP_EXPORT_TIMEOUT)
    shutdown_timeout: float = 3.0  # everything at exit
    # Limits on what a record carries
    attribute_count_limit: int = 128
    attribute_value_length_limit: int = 16_384
    max_body_length: int = 65_536
    # Privacy
    scrub: bool = True
    scrub_keys: tuple[str, ...] | None = None
    scrub_extra_keys: tuple[str, ...] = ()
    scrub_patterns: tuple[Any, ...] | None = None  # a regex (str or compiled), or (rule name, regex)
    scrub_extra_patterns: tuple[Any, ...] = ()
    scrub_disable_rules: tuple[str, ...] = ()  # built-in value rules turned off, by name
    scrub_enable_rules: tuple[str, ...] = ()  # optional value rules turned on (email, ip_address)
    include_exception_message: bool = True
    # Records and exception spans go through the app's global OpenTelemetry providers (_providers)
    use_otel_providers: bool = False
    # The output's shape: "highlight" (what highlight.io's ingest shows right) or "otel" (OpenTelemetry
    # semantic conventions); ``resolve`` decides "auto" once (see decide_backend)
    backend: str = "otel"
    # Off switch
    disabled: bool = False

    def __post_init__(self) -> None:
        # However a Settings was made, a header that cannot be sent never reaches a transport.
        for key, value in self.headers:
            problem = header_problem(key, value)
            if problem:
                raise ValueError(problem)

    @property
    def tls_files(self) -> bool:
        """A CA or client certificate is given: a bare ``host:port`` endpoint then means TLS."""
        return bool(self.certificate_file or self.client_certificate_file)

    def __repr__(self) -> str:
        # Headers carry API keys: never print their values.
        fields = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "headers":
                value = tuple((k, "***") for k, _ in value)
            elif isinstance(value, str) and "@" in value:  # an endpoint with a password in it
                value = _URL_PASSWORD.sub(r"\1***@", value)
            fields.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(fields)})"


_URL_PASSWORD = re.compile(r"(://[^/?#@:\s]*:)[^/?#\s]*@")
_LOOPBACK = ("localhost", "127.", "[::1]", "::1")


def is_plaintext(endpoint: str, insecure: bool | None, *, tls_files: bool = False) -> bool:
    """Unencrypted only when asked: ``insecure=True``, an ``http://`` endpoint, or a bare
    ``host:port`` on loopback (a local collector or agent) with no ``certificate_file`` or client
    certificate (``tls_files``: those ask for TLS); TLS for everything else."""
    if insecure is not None:
        return insecure
    low = endpoint.strip().lower()
    if low.startswith("http://"):
        return True
    if "://" in low:
        return False
    return low.startswith(_LOOPBACK) and not tls_files


# --- parsing helpers -----------------------------------------------------------------------------


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
    if isinstance(value, int):
        return bool(value)
    raise ValueError(f"expected a boolean, got {value!r}")


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    result = int(value)
    if result <= 0:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return result


def _parse_seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected seconds, got a boolean")
    result = float(value)
    if not result >= 0 or result == float("inf"):
        raise ValueError(f"expected a finite, non-negative number of seconds, got {value!r}")
    return result


def _parse_compression(value: Any) -> str:
    low = str(value).strip().lower()
    if low in ("gzip", "none"):
        return low
    raise ValueError(f"compression must be 'gzip' or 'none', got {value!r}")


def _parse_protocol(value: Any) -> str:
    low = str(value).strip().lower()
    if low in ("grpc", "http/protobuf"):
        return low
    raise ValueError(f"protocol must be 'grpc' or 'http/protobuf', got {value!r}")


def _parse_grpc_client(value: Any) -> str:
    low = str(value).strip().lower()
    if low in ("auto", "h2", "grpcio"):
        return low
    raise ValueError(f"grpc_client must be 'auto', 'h2' or 'grpcio', got {value!r}")


def _parse_backend(value: Any) -> str:
    low = str(value).strip().lower()
    if low in ("auto", "highlight", "otel"):
        return low
    raise ValueError(f"backend must be 'auto', 'highlight' or 'otel', got {value!r}")


def _parse_pairs(value: Any) -> Pairs:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), str(v)) for k, v in value.items()))
    if isinstance(value, str):
        return _parse_kv_list(value)
    if isinstance(value, Iterable):
        return tuple(sorted((str(k), str(v)) for k, v in value))
    raise ValueError(f"expected a dict, got {type(value).__name__}")


def _parse_kv_list(text: str) -> Pairs:
    """Parse the W3C-baggage-like ``k=v,k2=v2`` of OTEL_RESOURCE_ATTRIBUTES and *_HEADERS."""
    out: dict[str, str] = {}
    for n, item in enumerate(text.split(","), 1):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(_malformed(n, item))
        out[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(val.strip())
    return tuple(sorted(out.items()))


def _malformed(n: int, item: str) -> str:
    """What is wrong with a ``k=v`` entry, naming at most its key: the value may be a secret."""
    name, colon, _ = item.partition(":")
    if colon and _TOKEN.fullmatch(name.strip()):
        return f"entry {n} ({name.strip()!r}) is written with ':' instead of '='"
    return f"entry {n} has no '=' (its text is not shown)"


# RFC 9110 field names; values: visible ASCII and spaces inside (what HTTP/1.1, HTTP/2 and gRPC
# metadata all accept), once surrounding whitespace is trimmed as the OTLP exporter spec asks.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


def header_problem(key: str, value: str) -> str | None:
    """Why header ``key`` cannot be sent with ``value`` (already trimmed), naming the key only."""
    if not _TOKEN.fullmatch(key):
        return "a header name must be a token (letters, digits, '-' and the like)"
    if not _HEADER_VALUE.fullmatch(value):
        return f"the value of header {key!r} holds a control or non-ASCII character and cannot be sent"
    return None


def _parse_headers(value: Any) -> Pairs:
    """Headers from a keyword: trimmed, and refused (naming the key only) when one can't be sent."""
    pairs = _parse_pairs(value)
    out = tuple((k.strip(), v.strip()) for k, v in pairs)
    for k, v in out:
        problem = header_problem(k, v)
        if problem:
            raise ValueError(problem)
    return out


def _env_headers(name: str, raw: str) -> Pairs:
    """Headers from an environment variable: each entry that can't be used is left out with a
    warning naming the variable and the header key, never the value."""
    out: dict[str, str] = {}
    for n, item in enumerate(raw.split(","), 1):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        key = urllib.parse.unquote(key.strip())
        val = urllib.parse.unquote(val.strip()).strip()
        problem = _malformed(n, item) if not sep or not key else header_problem(key, val)
        if problem:
            _diag.warn(f"ignoring a header in {name}: {problem}", key=f"env:{name}:{n}")
            continue
        out[key] = val
    return tuple(sorted(out.items()))


def _parse_strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(",") if s.strip())
    return tuple(str(v) for v in value)


def _parse_patterns(value: Any) -> tuple[Any, ...]:
    """Scrub patterns: a ``{rule name: regex}`` dict, or regexes (str or compiled, kept as given)."""
    if isinstance(value, Mapping):
        return tuple((str(k), v if isinstance(v, re.Pattern) else str(v)) for k, v in value.items())
    if isinstance(value, (str, re.Pattern)):
        value = [value]
    out: list[Any] = []
    for v in value:
        if isinstance(v, tuple) and len(v) == 2:
            out.append((str(v[0]), v[1] if isinstance(v[1], re.Pattern) else str(v[1])))
        else:
            out.append(v if isinstance(v, re.Pattern) else str(v))
    return tuple(out)


def _parse_str(value: Any) -> str:
    return str(value)


def _parse_ms(value: Any) -> float:
    return _parse_seconds(value) / 1000.0


# keyword name -> parser; the set of names a front end accepts
_KEYWORDS: dict[str, Callable[[Any], Any]] = {
    "project_id": _parse_str,
    "service_name": _parse_str,
    "service_version": _parse_str,
    "environment": _parse_str,
    "resource_attributes": _parse_pairs,
    "endpoint": _parse_str,
    "protocol": _parse_protocol,
    "grpc_client": _parse_grpc_client,
    "headers": _parse_headers,
    "compression": _parse_compression,
    "insecure": _parse_bool,
    "certificate_file": _parse_str,
    "client_key_file": _parse_str,
    "client_certificate_file": _parse_str,
    "request_timeout": _parse_seconds,
    "max_queue_size": _parse_int,
    "max_queue_bytes": _parse_int,
    "max_export_batch_size": _parse_int,
    "max_request_bytes": _parse_int,
    "schedule_delay": _parse_seconds,
    "export_timeout": _parse_seconds,
    "shutdown_timeout": _parse_seconds,
    "attribute_count_limit": _parse_int,
    "attribute_value_length_limit": _parse_int,
    "max_body_length": _parse_int,
    "scrub": _parse_bool,
    "scrub_keys": _parse_strings,
    "scrub_extra_keys": _parse_strings,
    "scrub_patterns": _parse_patterns,
    "scrub_extra_patterns": _parse_patterns,
    "scrub_disable_rules": _parse_strings,
    "scrub_enable_rules": _parse_strings,
    "include_exception_message": _parse_bool,
    "use_otel_providers": _parse_bool,
    "backend": _parse_backend,
    "disabled": _parse_bool,
}

SETTING_NAMES = frozenset(_KEYWORDS)

# environment variable(s) -> (field, parser); the first variable that is set wins
_ENV: tuple[tuple[tuple[str, ...], str, Callable[[Any], Any]], ...] = (
    (("HIGHLIGHT_PROJECT_ID",), "project_id", _parse_str),
    (("OTEL_SERVICE_NAME",), "service_name", _parse_str),
    (("OTEL_SDK_DISABLED",), "disabled", _parse_bool),
    (("HIGHLIGHT_USE_OTEL_PROVIDERS",), "use_otel_providers", _parse_bool),
    (("HIGHLIGHT_BACKEND",), "backend", _parse_backend),
    (("OTEL_EXPORTER_OTLP_ENDPOINT",), "endpoint", _parse_str),
    (("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",), "logs_endpoint", _parse_str),
    (("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",), "traces_endpoint", _parse_str),
    (("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"), "protocol", _parse_protocol),
    (("HIGHLIGHT_GRPC_CLIENT",), "grpc_client", _parse_grpc_client),
    (("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"), "headers", _parse_kv_list),
    (
        ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"),
        "compression",
        _parse_compression,
    ),
    (("OTEL_EXPORTER_OTLP_LOGS_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"), "insecure", _parse_bool),
    (("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"), "request_timeout", _parse_ms),
    (
        ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        "certificate_file",
        _parse_str,
    ),
    (
        ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        "client_key_file",
        _parse_str,
    ),
    (
        ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
        "client_certificate_file",
        _parse_str,
    ),
    # One queue carries logs and exception spans: the log variables win, the span ones fill in.
    (("OTEL_BLRP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_QUEUE_SIZE"), "max_queue_size", _parse_int),
    (
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
        "max_export_batch_size",
        _parse_int,
    ),
    (("OTEL_BLRP_SCHEDULE_DELAY", "OTEL_BSP_SCHEDULE_DELAY"), "schedule_delay", _parse_ms),
    (("OTEL_BLRP_EXPORT_TIMEOUT", "OTEL_BSP_EXPORT_TIMEOUT"), "export_timeout", _parse_ms),
    (
        ("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"),
        "attribute_count_limit",
        _parse_int,
    ),
    (
        ("OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
        "attribute_value_length_limit",
        _parse_int,
    ),
)

_lock = threading.Lock()
_configured: dict[str, Any] = {}
#: Bumped by ``configure()``: front ends re-resolve their settings when it changes.
generation = 0


def check_keywords(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalise keyword settings; raise TypeError/ValueError on a programming error."""
    out: dict[str, Any] = {}
    for name, value in settings.items():
        parser = _KEYWORDS.get(name)
        if parser is None:
            known = ", ".join(sorted(_KEYWORDS))
            raise TypeError(f"unknown highlight_logging setting {name!r}; known settings: {known}")
        if value is None:
            continue
        try:
            out[name] = parser(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid value for highlight_logging setting {name!r}: {exc}") from None
    if out.get("max_export_batch_size", 1) > out.get("max_queue_size", sys.maxsize):
        raise ValueError("max_export_batch_size must not exceed max_queue_size")
    return out


def configure(**settings: Any) -> None:
    """Set process defaults, below keywords and above the environment."""
    global generation
    checked = check_keywords(settings)
    with _lock:
        _configured.clear()
        _configured.update(checked)
        generation += 1


def configured() -> dict[str, Any]:
    with _lock:
        return dict(_configured)


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for names, field, parser in _ENV:
        for name in names:
            raw = environ.get(name, "")
            if not raw.strip():  # empty means unset
                continue
            if field == "headers":  # secrets: never printed
                out[field] = _env_headers(name, raw)
                break
            try:
                out[field] = parser(raw)
            except (TypeError, ValueError) as exc:
                _diag.warn(f"ignoring invalid {name}={raw!r}: {exc}", key=f"env:{name}={raw}")
            break
    raw_attrs = environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if raw_attrs.strip():
        try:
            out["env_resource_attributes"] = _parse_kv_list(raw_attrs)
        except ValueError as exc:
            _diag.warn(
                f"ignoring invalid OTEL_RESOURCE_ATTRIBUTES: {exc}",
                key=f"env:OTEL_RESOURCE_ATTRIBUTES={raw_attrs}",
            )
    return out


def resolve(keywords: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Merge keyword > configure() > environment > default into one :class:`Settings`."""
    keywords = check_keywords(keywords)
    env = _from_env(os.environ if environ is None else environ)
    merged: dict[str, Any] = {}
    env_attrs: Pairs = env.pop("env_resource_attributes", ())
    merged.update(env)
    merged.update(configured())
    merged.update(keywords)
    # Resource attributes merge rather than replace: env below, explicit above.
    attrs = dict(env_attrs)
    attrs.update(dict(merged.get("resource_attributes", ())))
    merged["resource_attributes"] = tuple(sorted(attrs.items()))
    if "endpoint" in keywords or "endpoint" in configured():
        # An explicit endpoint is for both signals: it outranks the per-signal variables.
        merged.pop("logs_endpoint", None)
        merged.pop("traces_endpoint", None)
    if merged.get("protocol") == "http/protobuf" and "endpoint" not in merged:
        merged["endpoint"] = DEFAULT_HTTP_ENDPOINT
    if merged.get("max_export_batch_size", 512) > merged.get("max_queue_size", 100_000):
        merged["max_export_batch_size"] = merged.get("max_queue_size", 100_000)
    settings = Settings(**merged)
    return dataclasses.replace(settings, backend=decide_backend(settings, merged.get("backend", "auto")))


def is_highlight_endpoint(endpoint: str | None) -> bool:
    """The endpoint is highlight.io's hosted collector (``*.highlight.io``)."""
    if not endpoint:
        return False
    text = endpoint.strip().lower()
    try:
        host = urllib.parse.urlsplit(text if "://" in text else "//" + text).hostname or ""
    except ValueError:  # malformed (an unclosed "[" ...): the transport reports it, not this
        return False
    return host == "highlight.io" or host.endswith(".highlight.io")


def sends_to_highlight(settings: Settings) -> bool:
    """Logs go to highlight.io's hosted collector."""
    return is_highlight_endpoint(settings.logs_endpoint or settings.endpoint)


def decide_backend(settings: Settings, asked: str) -> str:
    """``auto``: ``highlight`` when a project id is set (keyword, environment or ``x-highlight-project``
    header) or the logs go to highlight.io, else ``otel``.

    Through the app's own OpenTelemetry providers (``use_otel_providers``) it is always ``otel``:
    their resource, exporter and destination are the app's, not ours to shape.
    """
    if settings.use_otel_providers:
        return "otel"
    if asked != "auto":
        return asked
    return (
        "highlight"
        if settings.project_id or project_header(settings) or sends_to_highlight(settings)
        else "otel"
    )


def project_header(settings: Settings) -> bool:
    """A project id travels as a header (``x-highlight-project``), which highlight.io also reads."""
    return any(k.lower() == "x-highlight-project" and v for k, v in settings.headers)
