# _export.fastpath's fast path (its reference: the general path), and the C twins of _core.convert.capture_record_py,
# _core.scrub, _frontends.structlog and _frontends.handler (see _speedups.c).
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from highlight_logging._core.record import Attributes, ExceptionInfo, Pending, Site
from highlight_logging._core.settings import Settings

SAME_MOMENT: int
ABI: int
PENDING_FIELDS: tuple[
    str, ...
]  # the Pending layout this build reads; checked against _core.record.Pending at import

def plain_logs(
    chunk: list[Pending],
    sites: dict[Any, bytes],
    levels: dict[Any, tuple[Any, bytes]],
    room: int,
    to_ns: Callable[[Any], int],
    shape: tuple[frozenset[str], tuple[str, ...]] | None = None,
    /,
) -> list[bytes | None]: ...
def capture_record(
    settings: Settings,
    when: Any,
    levelno: int,
    level_name: str,
    scope: str,
    body: Any,
    base_attributes: Attributes,
    extras: Iterable[tuple[Any, Any]],
    exc: Any = None,
    exception: ExceptionInfo | None = None,
    site: Site | None = None,
    skip: frozenset[str] = ...,
    span_only: bool = False,
    logged_now: bool = True,
) -> Pending: ...
def capture_setup(
    fallback: Callable[..., Pending],
    pending: type[Pending],
    coerce: Callable[[Any, int], Any],
    safe_str: Callable[[object], str],
    current_span: Callable[[], tuple[bytes, bytes, int]],
    no_span: tuple[bytes, bytes, int],
    context_var: Any,
    span_key: str | None,
    context_type: type,
    request_var: Any,
    /,
) -> None: ...
def chunk_clean(chunk: Sequence[Pending], safe_keys: set[Any], /) -> bool: ...
def set_triggers(triggers: tuple[str, ...], url_trigger: str, hex_trigger: str, /) -> None: ...
def maybe_secret(text: str, /) -> bool: ...
def structlog_setup(
    rare_keys: tuple[str, ...],
    levels: dict[str, tuple[int, str]],
    default_scope: str,
    internal_loggers: tuple[str, ...],
    consumed: frozenset[str],
    /,
) -> None: ...
def structlog_event(settings: Settings, event_dict: dict[str, Any], site: Site, /) -> Pending | None: ...
def logrecord_setup(
    record_type: type,
    standard: frozenset[str],
    n_init: int,
    last_init: str,
    site_keys: tuple[str, ...],
    unformatted: Callable[[Any, BaseException], str],
    reference: Callable[[Settings, Any, Any], Pending],
    check: Callable[[type], bool],
    /,
) -> None: ...
def logrecord_event(settings: Settings, record: Any, /) -> Pending | None: ...

# The SIGTERM rescue (see _export/sigterm.py); absent on Windows.
def sigterm_arm() -> int | None: ...
def sigterm_wait(fd: int, /) -> bool: ...
def sigterm_ours() -> bool: ...
def sigterm_disarm() -> None: ...
def sigterm_die() -> None: ...
def forks() -> int: ...
