"""WSGI entry point (granian/gunicorn workers for the REST API)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phoenix.settings")

application = get_wsgi_application()

from inference.session_cache import preload  # noqa: E402

# Warm every servable model before the first request (PHOENIX_PRELOAD_MODELS).
preload()
