"""Domain errors and the one table that maps them to HTTP.

Apps raise subclasses of the categories below from their services; none of them
knows about HTTP. ``api_exception_handler`` (DRF) and ``error_response`` (plain
views) turn them, and DRF's own errors, into the project's JSON error shape:
``{"error": {"code", "message", "details"}}`` (docs/ARCHITECTURE.md, "The request
path"; each app's ``exceptions.py`` subclasses these categories).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

# The challenge of every 401: credentials go in "Authorization: Bearer" (an API key
# or a person's token), never a browser's Basic prompt.
BEARER_CHALLENGE = 'Bearer realm="phoenix"'


class ApplicationError(Exception):
    """Base of every expected error. ``code`` is stable and machine-readable."""

    code = "application_error"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}
        if code is not None:
            self.code = code


class InvalidInput(ApplicationError):
    code = "invalid_input"


class NotFound(ApplicationError):
    code = "not_found"


class MethodNotAllowed(ApplicationError):
    code = "method_not_allowed"


class Conflict(ApplicationError):
    code = "conflict"


class TooLarge(ApplicationError):
    code = "too_large"


class Unprocessable(ApplicationError):
    code = "unprocessable"


class DependencyUnavailable(ApplicationError):
    code = "dependency_unavailable"


class DatabaseBusy(DependencyUnavailable):
    """The database stayed locked past its busy timeout (SQLite, the embedded default,
    has one writer at a time; PostgreSQL's lock_timeout): worth retrying shortly."""

    code = "database_busy"
    retry_after_s = 1


# SQLite's words for a lock it waited on in vain ("database is locked", "database table
# is locked") and PostgreSQL's SQLSTATE for lock_timeout (55P03, lock_not_available).
_LOCK_MESSAGES = ("database is locked", "database table is locked")
_LOCK_SQLSTATES = ("55P03",)


def database_lock_timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is the database giving up on a lock (not a broken query)."""
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) in _LOCK_SQLSTATES:
        return True
    return any(words in str(exc).lower() for words in _LOCK_MESSAGES)


class Unauthenticated(ApplicationError):
    code = "not_authenticated"


class Forbidden(ApplicationError):
    code = "permission_denied"


STATUS_BY_ERROR: dict[type[ApplicationError], int] = {
    InvalidInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    Conflict: 409,
    TooLarge: 413,
    Unprocessable: 422,
    DependencyUnavailable: 503,
}


def status_for(error: ApplicationError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(error: ApplicationError) -> JsonResponse:
    """A plain Django response for views outside DRF (the v2 protocol, health)."""
    status = status_for(error)
    response = JsonResponse(error_body(error.code, error.message, error.details), status=status)
    if status == 401:
        response["WWW-Authenticate"] = BEARER_CHALLENGE
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is not None:
        response["Retry-After"] = str(int(retry_after))
    return response


def _drf_error(exc: drf_exceptions.APIException) -> tuple[int, str, str, Any]:
    detail = exc.detail
    if isinstance(exc, drf_exceptions.ValidationError):
        return 400, "invalid_input", "The request body is invalid.", detail
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else exc.default_code
    return exc.status_code, str(code), str(detail), {}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every expected error becomes the JSON error shape.

    Returns None for anything unexpected, so DRF re-raises it and Django logs a 500.
    A database lock timeout is expected under contention: 503 with Retry-After.
    """
    if database_lock_timed_out(exc):
        logger.warning("database lock timed out: %s", exc)
        exc = DatabaseBusy(
            "The database is busy; retry shortly.",
            details={"retry_after_s": DatabaseBusy.retry_after_s},
        )
    if isinstance(exc, ApplicationError):
        status, code, message, details = status_for(exc), exc.code, exc.message, exc.details
    elif isinstance(exc, RequestDataTooBig):
        status, code, message, details = 413, "too_large", str(exc), {}
    elif isinstance(exc, Http404):
        status, code, message, details = 404, "not_found", str(exc) or "Not found.", {}
    elif isinstance(exc, PermissionDenied):
        status, code, message, details = 403, "permission_denied", str(exc) or "Forbidden.", {}
    elif isinstance(exc, drf_exceptions.APIException):
        status, code, message, details = _drf_error(exc)
    else:
        return None
    set_rollback()
    headers: dict[str, str] = {}
    wait = getattr(exc, "wait", None)  # set by DRF's Throttled
    if isinstance(exc, drf_exceptions.Throttled) and wait is not None:
        headers["Retry-After"] = str(int(wait))
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:
        headers["Retry-After"] = str(int(retry_after))
    # DRF sets the challenge of the view's first authenticator (Bearer, Basic, ...);
    # a 401 raised as a domain error (an API key refused) gets the Bearer one.
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = str(auth_header)
    elif status == 401:
        headers["WWW-Authenticate"] = BEARER_CHALLENGE
    return Response(error_body(code, message, details), status=status, headers=headers)


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(("/api/", "/v2"))


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(error_body("not_found", f"No route for {request.path}."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception or Http404())


def handler500(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(error_body("server_error", "Internal server error."), status=500)
    from django.views.defaults import server_error

    return server_error(request)
