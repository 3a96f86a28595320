"""API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Only a SHA-256 of a key is stored. Looked-up keys (and, briefly, unknown ones) are
cached in this process, so a warm request makes no database query; any change to
a key (create, revoke, admin edit) or a model deletion clears the cache here and,
through the registry's change broadcast, in every other process. Expiry is checked
on every request against the cached principal; last use is noted in memory and
written in batches (``inference.api_key_usage``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from phoenix.exceptions import DependencyUnavailable, Forbidden, Unauthenticated

from .api_key_usage import api_key_used
from .selectors import ApiKeyPrincipal, api_key_principal_get

# Unknown (or revoked) keys are remembered this long, so a client retrying a bad key
# cannot turn each request into a query; a newly created key still works at once
# because creating one clears the cache. At most MAX_UNKNOWN are kept (the oldest go
# first), apart from the known keys, so a flood of random keys cannot evict those.
NEGATIVE_TTL_S = 10.0
MAX_UNKNOWN = 10_000

_known: dict[str, ApiKeyPrincipal] = {}
_unknown: dict[str, float] = {}
_generation = 0
_lock = threading.Lock()


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key a request presents, or None. ``headers`` is case-insensitive (Django's)."""
    authorization = headers.get("Authorization")
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return credential.strip()
    key = headers.get("X-API-Key")
    return key.strip() if key and key.strip() else None


def api_key_cache_clear() -> None:
    global _generation
    with _lock:
        _generation += 1
        _known.clear()
        _unknown.clear()


def _expired(principal: ApiKeyPrincipal, now: float) -> bool:
    return principal.expires_at is not None and principal.expires_at <= now


def api_key_cached(key: str | None) -> ApiKeyPrincipal | None:
    """The principal of a key known valid (and not expired) in this process, or None;
    never queries.

    What the event-loop data plane authenticates with: a key that is not cached
    (new, unknown, revoked, expired, or the cache was just cleared) goes the way that
    may read the database and words the refusal.
    """
    if not key:
        return None
    principal = _known.get(key_hash(key))
    if principal is None:
        return None
    now = time.time()
    if _expired(principal, now):
        return None
    api_key_used(principal.id, now)
    return principal


def api_key_is_cached(key: str) -> bool:
    """Whether ``key`` is known-valid here without a query (a warm request)."""
    return api_key_cached(key) is not None


def api_key_authenticate(*, key: str | None) -> ApiKeyPrincipal:
    """The active key's principal. Raises Unauthenticated (401) for none, unknown,
    revoked or expired; DependencyUnavailable (503) when the keys cannot be read."""
    if not key:
        raise Unauthenticated(
            "An API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
        )
    digest = key_hash(key)
    principal = _known.get(digest)
    if principal is None:
        if _unknown.get(digest, 0.0) > time.monotonic():
            raise Unauthenticated("The API key is not valid or has been revoked.")
        principal = _principal_read(digest)
        if principal is None:
            raise Unauthenticated("The API key is not valid or has been revoked.")
    now = time.time()
    if _expired(principal, now):
        expired = datetime.fromtimestamp(principal.expires_at or 0.0, tz=UTC).isoformat()
        raise Unauthenticated(
            f"The API key {principal.prefix}... expired at {expired}.",
            details={"key": principal.prefix, "expired_at": expired},
        )
    api_key_used(principal.id, now)
    return principal


def _principal_read(digest: str) -> ApiKeyPrincipal | None:
    """Read a key from the database and cache the answer (found or not)."""
    generation = _generation
    try:
        principal = api_key_principal_get(key_hash=digest)
    except DatabaseError as exc:
        raise DependencyUnavailable("API keys cannot be checked right now.", details={}) from exc
    with _lock:
        # A change that cleared the cache during our query makes our answer stale.
        if generation == _generation:
            if principal is not None:
                _known[digest] = principal
            else:
                while len(_unknown) >= MAX_UNKNOWN:
                    del _unknown[next(iter(_unknown))]  # the oldest (dicts keep order)
                _unknown[digest] = time.monotonic() + NEGATIVE_TTL_S
    return principal


def api_key_authorize(*, principal: ApiKeyPrincipal, model_name: str) -> None:
    """Raises Forbidden (403) when the key is not scoped to ``model_name``."""
    if not principal.may_use(model_name):
        if principal.allowed_models == frozenset():
            raise Forbidden(
                "This API key is scoped to no model (its models were deleted); "
                "it serves nothing until an operator scopes it again.",
                details={"model": model_name, "key": principal.prefix},
            )
        raise Forbidden(
            f"This API key may not use model {model_name!r}.",
            details={"model": model_name, "key": principal.prefix},
        )


class ApiKeyAuthentication(BaseAuthentication):
    """DRF authentication by API key; a request without a key is refused (401)."""

    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, None]:
        principal = api_key_authenticate(key=api_key_from_headers(request.headers))
        return principal, None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="phoenix"'


class HasApiKey(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, ApiKeyPrincipal)


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """OpenAPI: either header carries the key."""

    target_class = "inference.auth.ApiKeyAuthentication"
    name = ["bearerAuth", "apiKeyAuth"]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        return [{"bearerAuth": []}, {"apiKeyAuth": []}]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]
