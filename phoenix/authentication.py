"""How people (not API clients) authenticate to the REST API.

- A browser session (with CSRF on writes, as DRF's SessionAuthentication enforces).
- A per-user token, ``Authorization: Bearer <token>`` (DRF authtoken; admin, *Tokens*,
  or ``manage.py drf_create_token <username>``). A browser never sends it by itself,
  so a cross-site form cannot use it.
- HTTP Basic only with ``PHOENIX_HTTP_BASIC_AUTH=1``: a browser caches Basic
  credentials and sends them with cross-site requests, which DRF does not check for
  CSRF.

The token scheme comes first, so a refusal carries ``WWW-Authenticate: Bearer`` (no
browser password prompt) and an anonymous request is answered 401, not 403.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.authentication import (
    BaseAuthentication,
    BasicAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.request import Request
from rest_framework.views import APIView

from phoenix.exceptions import BEARER_CHALLENGE


class BearerTokenAuthentication(TokenAuthentication):
    """DRF's token authentication under the ``Bearer`` keyword."""

    keyword = "Bearer"

    def authenticate_header(self, request: Request) -> str:
        return BEARER_CHALLENGE


def people_authentication() -> list[type[BaseAuthentication]]:
    """The authentication classes of views for signed-in people."""
    classes: list[type[BaseAuthentication]] = [BearerTokenAuthentication]
    if settings.PHOENIX_HTTP_BASIC_AUTH:
        classes.append(BasicAuthentication)
    classes.append(SessionAuthentication)
    return classes


class PeopleAPIView(APIView):
    """An APIView for signed-in people: ``people_authentication()``, read per request
    (so PHOENIX_HTTP_BASIC_AUTH is honoured as the settings say, tests included)."""

    authentication_classes = [BearerTokenAuthentication, SessionAuthentication]

    def get_authenticators(self) -> list[BaseAuthentication]:
        return [cls() for cls in people_authentication()]
