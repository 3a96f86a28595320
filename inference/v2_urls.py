"""Open Inference Protocol routes, mounted at the site root (``/v2...``).

Under ASGI, phoenix/asgi.py sends ``/v2`` to the Channels consumer before Django
sees it; these routes serve WSGI workers and the test client.
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, re_path

from .api import v2

urlpatterns: list[URLPattern | URLResolver] = [
    re_path(r"^v2(?:/.*)?$", v2.django_view, name="v2"),
]
