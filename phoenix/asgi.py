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

from inference.session_cache import preload  # noqa: E402
from monitoring.routing import websocket_urlpatterns  # noqa: E402

# Warm every servable model before the first request (PHOENIX_PRELOAD_MODELS);
# /readyz says ready only once they are.
preload()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
