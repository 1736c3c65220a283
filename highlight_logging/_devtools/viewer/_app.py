"""The viewer put together: a store and the page's server (the receiver feeds the store)."""

from __future__ import annotations

from highlight_logging._devtools.viewer._server import ViewerServer
from highlight_logging._devtools.viewer._store import Store

__all__ = ["Viewer"]


class Viewer:
    """Opens the store (``db`` None: in memory) and starts serving the page on ``host:port``."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 8686, *, keep: int = 100_000, db: str | None = None
    ):
        self.store = Store(db, keep)
        self.server = ViewerServer(self.store, host, port)
        try:
            self.server.start()
        except BaseException:
            self.store.close()
            raise

    @property
    def url(self) -> str:
        return self.server.url

    def close(self) -> None:
        self.server.stop()
        self.store.close()
