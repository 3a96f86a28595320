"""ASGI entry point: one server for HTTP and websockets, routed by scope type.

- HTTP runs Django's ordinary (sync) request stack on a thread pool through a2wsgi.
  Django's own ASGI handler hops threads for every sync middleware and view and
  served the DRF predict endpoint about 3x slower here (docs/BENCHMARKS.md).
- The data plane (``inference.api.dataplane``) answers warm REST predict and v2
  infer calls itself, in front of everything else: no Django request machinery,
  usually no thread hop. What it declines goes on below.
- The REST predict URL gets Django with a slim middleware stack, in one thread hop
  per request (phoenix/http_stack.py).
- ``/v2`` (Open Inference Protocol) is a thin Channels consumer over the same
  predict service (metadata, readiness, and infer calls the data plane declined).
- Websockets (live dashboards) go through Channels with session authentication.
- Every HTTP request and websocket handshake first meets the edge
  (phoenix/edge.py): header and body limits, throttles, /v2's Host check.
- The lifespan scope flushes the prediction event buffer at shutdown
  (phoenix/lifespan.py): run uvicorn with ``--lifespan on``.
"""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phoenix.settings")

# Django must be set up before anything imports models.
django.setup(set_prefix=False)

from a2wsgi import WSGIMiddleware  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import re_path  # noqa: E402

from inference.api.dataplane import DataPlane  # noqa: E402
from inference.api.v2_consumer import OpenInferenceConsumer  # noqa: E402
from inference.session_cache import preload  # noqa: E402
from monitoring.ws_urls import websocket_urlpatterns  # noqa: E402
from phoenix.edge import Edge  # noqa: E402
from phoenix.http_stack import INFERENCE_ROUTE, HTTPApplication, OneHopWSGI  # noqa: E402
from phoenix.lifespan import lifespan_app  # noqa: E402
from phoenix.websocket import NoRouteConsumer, SameOriginValidator  # noqa: E402

# Warm every servable model before the first request (PHOENIX_PRELOAD_MODELS);
# /readyz says ready only once they are.
preload()

# One pool of PHOENIX_HTTP_THREADS threads runs Django for every HTTP request.
http_handlers = HTTPApplication()
django_http_app = WSGIMiddleware(http_handlers.full, workers=settings.PHOENIX_HTTP_THREADS)  # type: ignore[arg-type]
inference_http_app = OneHopWSGI(
    http_handlers.slim,
    executor=django_http_app.executor,
    # Chunked or large bodies: a2wsgi, which streams (its threads start only if used).
    fallback=WSGIMiddleware(http_handlers.slim, workers=2),  # type: ignore[arg-type]
    max_buffered=settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440,
)

site = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                re_path(r"^v2(?:/|$)", OpenInferenceConsumer.as_asgi()),
                re_path(rf"^(?:{INFERENCE_ROUTE})$", inference_http_app),  # type: ignore[arg-type]
                re_path(r"", django_http_app),  # type: ignore[arg-type]
            ]
        ),
        "websocket": SameOriginValidator(
            AuthMiddlewareStack(
                URLRouter([*websocket_urlpatterns, re_path(r"", NoRouteConsumer.as_asgi())])
            )
        ),
        "lifespan": lifespan_app,
    }
)

data_plane = DataPlane(site, django_rest=inference_http_app, executor=django_http_app.executor)
# Header and body limits, the /v2 Host check and the throttles, before everything.
application = Edge(data_plane)
