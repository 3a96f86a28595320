"""ASGI lifespan: what a server process does once before serving and once after.

Shutdown ships the prediction events still in this process's buffer. It cannot be
left to ``atexit``: uvicorn ends a worker that got SIGTERM by re-raising the signal
after its graceful shutdown, and a process killed by a signal runs no exit hooks,
so every event buffered since the last flush (up to PHOENIX_EVENT_FLUSH_INTERVAL_S)
would be lost on each deploy. Servers must run with the lifespan on
(``uvicorn --lifespan on``), as ``make run``, compose.yaml and the Dockerfile do.

What runs at shutdown is registered by the apps at ``AppConfig.ready``
(``shutdown_hook_register``): phoenix composes them and imports none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_shutdown_hooks: list[Callable[[], None]] = []


def shutdown_hook_register(hook: Callable[[], None]) -> None:
    """Run ``hook`` (blocking is fine, it runs off the event loop) at server shutdown."""
    if hook not in _shutdown_hooks:
        _shutdown_hooks.append(hook)


def _shutdown() -> None:
    for hook in list(_shutdown_hooks):
        try:
            hook()
        except Exception:  # one app's failing hook must not keep the others from running
            logger.exception("shutdown hook %r failed", hook)


async def lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ``lifespan`` scope's application (ASGI 3)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # Blocking (database or broker I/O): off the event loop.
            await asyncio.get_running_loop().run_in_executor(None, _shutdown)
            logger.info("shutdown hooks ran")
            await send({"type": "lifespan.shutdown.complete"})
            return
