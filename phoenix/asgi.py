"""ASGI entry point: HTTP through Django, websockets through Channels, routed by scope type."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phoenix.settings")

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from inference.api.v2_consumer import OpenInferenceConsumer  # noqa: E402
from inference.session_cache import preload  # noqa: E402
from monitoring.routing import websocket_urlpatterns  # noqa: E402

# Warm every servable model before the first request (PHOENIX_PRELOAD_MODELS);
# /readyz says ready only once they are.
preload()

application = ProtocolTypeRouter(
    {
        # The Open Inference Protocol skips Django's request handler (a thin Channels
        # consumer over the same predict service); everything else goes to Django.
        "http": URLRouter(
            [
                re_path(r"^v2(?:/|$)", OpenInferenceConsumer.as_asgi()),
                re_path(r"", django_asgi_app),  # type: ignore[arg-type]
            ]
        ),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
