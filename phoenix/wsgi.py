"""WSGI entry point (granian/gunicorn workers for the REST API)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phoenix.settings")

application = get_wsgi_application()
