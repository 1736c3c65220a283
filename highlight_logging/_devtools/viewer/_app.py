"""The viewer put together for ``serve --ui``: its own process (store and page), fed by the receiver."""

from __future__ import annotations

from highlight_logging._devtools.viewer._process import ViewerProcess

__all__ = ["Viewer"]

#: Opens the store (``db`` None: in memory) and serves the page on ``host:port``, in a child process;
#: ``Receiver(on_raw=viewer.submit_raw)`` feeds it.
Viewer = ViewerProcess
