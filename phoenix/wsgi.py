"""WSGI entry point (granian/gunicorn workers for the REST API)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phoenix.settings")
django.setup(set_prefix=False)

from inference.session_cache import preload  # noqa: E402
from phoenix.http_stack import HTTPApplication  # noqa: E402

# The inference URLs get a slim middleware stack, the rest the full one.
application = HTTPApplication()

# Warm every servable model before the first request (PHOENIX_PRELOAD_MODELS).
preload()
