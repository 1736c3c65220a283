# The C twin of highlight_logging._plain.plain_logs_py (see _speedups.c).
from collections.abc import Callable
from typing import Any

from highlight_logging._record import Pending

SAME_MOMENT: int

def plain_logs(
    chunk: list[Pending],
    sites: dict[Any, bytes],
    levels: dict[Any, tuple[Any, bytes]],
    room: int,
    to_ns: Callable[[Any], int],
    /,
) -> list[bytes | None]: ...
