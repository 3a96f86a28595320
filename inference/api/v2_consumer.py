"""The Open Inference Protocol as a Channels HTTP consumer: no Django request handler.

A warm infer call for a sub-millisecond model is answered on the event loop (a
thread hop would cost more than the model); a warm call to a heavier model runs on
a pool thread; anything that may touch the database (first request, unknown key,
readiness, metadata) runs on Django's sync thread. The loop is never blocked.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.http import AsyncHttpConsumer
from django.utils.datastructures import CaseInsensitiveMapping

from . import v2


class OpenInferenceConsumer(AsyncHttpConsumer):  # type: ignore[misc]
    async def handle(self, body: bytes) -> None:
        scope: dict[str, Any] = self.scope
        headers = CaseInsensitiveMapping(
            {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        )
        method, path = scope["method"], scope["path"]
        execution = v2.infer_execution(method, path, headers, body)
        if execution == "inline":
            result = v2.handle(method, path, headers, body)
        elif execution == "pool":
            result = await sync_to_async(v2.handle, thread_sensitive=False)(
                method, path, headers, body
            )
        else:
            # May read the database: Django's connection handling, on its sync thread.
            result = await database_sync_to_async(v2.handle)(method, path, headers, body)
        response_headers = [
            (b"content-type", result.content_type.encode()),
            # Without a length the server would chunk the body: a frame per response for nothing.
            (b"content-length", str(len(result.body)).encode()),
        ]
        response_headers += [(k.encode(), v.encode()) for k, v in result.headers.items()]
        await self.send_response(result.status, result.body, headers=response_headers)
