"""FastAPI under uvicorn: add the handler at startup, to the root logger and to "uvicorn.error".

Serve it (from examples/):  uvicorn fastapi_app:app
The endpoint comes from OTEL_EXPORTER_OTLP_ENDPOINT; `python fastapi_app.py` serves on a free
port, calls both routes once and stops.

Why at startup: uvicorn applies its own ``log_config`` (a dictConfig) when it starts, which resets
the handlers of its "uvicorn*" loggers; those loggers do not propagate to the root, and unhandled
errors ("Exception in ASGI application", with the traceback) are logged on "uvicorn.error".
"""

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

import highlight_logging


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    handler = highlight_logging.HighlightHandler(service_name="fastapi-demo")
    logging.getLogger().addHandler(handler)  # your own loggers
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("uvicorn.error").addHandler(handler)  # uvicorn's errors
    yield
    # uvicorn ends a SIGTERM shutdown by re-raising SIGTERM, which kills the process without
    # running exit hooks: deliver what is queued now.
    highlight_logging.flush()


app = FastAPI(lifespan=lifespan)
log = logging.getLogger(__name__)


@app.get("/")
async def index() -> dict[str, str]:
    log.info("hello from fastapi", extra={"user_id": 42})
    return {"status": "ok"}


@app.get("/boom")
async def boom() -> dict[str, str]:
    # Unhandled: uvicorn answers 500 and logs "Exception in ASGI application" on uvicorn.error.
    raise RuntimeError("fastapi route failed")


if __name__ == "__main__":
    import socket
    import threading
    import urllib.error
    import urllib.request

    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.05)
    for path in ("/", "/boom"):
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{sock.getsockname()[1]}{path}", timeout=5).close()
    server.should_exit = True
    thread.join()
