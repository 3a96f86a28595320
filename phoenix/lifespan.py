"""ASGI lifespan: what a server process does once before serving and once after.

Shutdown ships the prediction events still in this process's buffer. It cannot be
left to ``atexit``: uvicorn ends a worker that got SIGTERM by re-raising the signal
after its graceful shutdown, and a process killed by a signal runs no exit hooks,
so every event buffered since the last flush (up to PHOENIX_EVENT_FLUSH_INTERVAL_S)
would be lost on each deploy. Servers must run with the lifespan on
(``uvicorn --lifespan on``), as ``make run``, compose.yaml and the Dockerfile do.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)


async def lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ``lifespan`` scope's application (ASGI 3)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            from inference.events import event_publishing_stop

            # Blocking (database or broker I/O): off the event loop.
            await asyncio.get_running_loop().run_in_executor(None, event_publishing_stop)
            logger.info("event buffer flushed for shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
