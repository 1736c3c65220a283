"""The local viewer of ``highlight-logging serve --ui``: a bounded SQLite store fed by the receiver,
a JSON API and a static page, all on the standard library."""

from highlight_logging._devtools.viewer._server import ViewerServer
from highlight_logging._devtools.viewer._store import Store

__all__ = ["Store", "ViewerServer"]
