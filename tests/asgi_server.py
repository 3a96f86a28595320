"""uvicorn serving the project's ASGI application in a thread of the test process.

The server runs ``phoenix.asgi.application`` (data plane, Channels, Django) on a free
port against the test database, so a ``transactional_db`` test's committed rows are
what it serves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import free_port, wait_for_port


class LiveServer:
    """uvicorn serving phoenix.asgi in a thread; ``stop``/``start`` keep the port."""

    def __init__(self, app: Any = None) -> None:
        # None: phoenix.asgi.application; tests of the edge pass one built with their limits.
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import uvicorn

        from phoenix.asgi import application
        from phoenix.web_server import CoalescingHttpToolsProtocol

        config = uvicorn.Config(
            self.app if self.app is not None else application,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
            ws="websockets-sansio",
            # The protocol the web server runs (python -m phoenix.web_server).
            http=CoalescingHttpToolsProtocol,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="live-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._server = self._thread = None


@contextmanager
def asgi_server_running(
    *, media_root: Path, settings: Any, app: Any = None
) -> Iterator[LiveServer]:
    """A started LiveServer whose port answers, storing uploads under ``media_root``
    (``settings``: pytest-django's fixture); stopped on exit. ``app``: see LiveServer."""
    settings.MEDIA_ROOT = media_root
    server = LiveServer(app)
    server.start()
    try:
        assert wait_for_port(server.port)
        yield server
    finally:
        server.stop()
