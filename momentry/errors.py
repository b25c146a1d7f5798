"""One JSON error envelope for everything under /api/ and /health.

Every error a client can see has the shape
``{"success": false, "error": {"code": ..., "message": ..., "details": {...}}}``.
Views raise :class:`ApiError` (or a DRF exception); DRF's handler and the middleware
below turn it, and anything Django itself answers (404 from the URL resolver, 405, 500),
into that envelope, so no HTML page or traceback ever reaches an API client.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db import OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.views import exception_handler as drf_default_handler

from momentry.converters import NoSuchValue

logger = logging.getLogger("momentry.errors")

JSON_PREFIXES = ("/api/", "/health")


class ApiError(Exception):
    """An error with its HTTP status, machine code, message and details."""

    status = 500
    code = "INTERNAL_ERROR"
    default_message = "Internal server error."

    def __init__(
        self,
        message: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(ApiError):
    status, code, default_message = 400, "BAD_REQUEST", "Invalid request."

    def __init__(self, message: str | None = None, param: str | None = None, **details: Any) -> None:
        if param is not None:
            details = {"parameter": param, **details}
        super().__init__(message, details)


class Unauthorized(ApiError):
    status, code, default_message = 401, "UNAUTHORIZED", "Authentication credentials were not provided or are invalid."


class Forbidden(ApiError):
    status, code, default_message = 403, "FORBIDDEN", "You do not have permission to perform this action."


class NotFound(ApiError):
    status, code, default_message = 404, "NOT_FOUND", "Not found."


#: What each kind of resource is called in a 404, and the URL identifiers its ``details`` always hold.
_RESOURCES = {
    "file": ("File", ("file_uuid",)),
    "trace": ("Trace", ("file_uuid", "trace_id")),
    "identity": ("Identity", ("identity_uuid",)),
}


def not_found(resource: str, **ids: Any) -> NotFound:
    """The one 404 of an unknown (or out-of-scope) file, trace or identity.

    Whether the value was well formed and unknown, out of the caller's scope, or could never
    name anything (``trace/abc``, a NUL byte), the client sees the same message and the same
    ``details`` keys: ``{"file_uuid"}``, ``{"file_uuid", "trace_id"}`` or ``{"identity_uuid"}``,
    each the value from the URL (canonical when it was valid, as sent otherwise).
    """
    label, keys = _RESOURCES[resource]
    return NotFound(f"{label} not found.", {key: _plain(ids.get(key)) for key in keys})


def _plain(value: Any) -> Any:
    return value.text if isinstance(value, NoSuchValue) else value


def unknown_path_value(kwargs: dict[str, Any]) -> NotFound | None:
    """The 404 for the first path parameter that names nothing (see :mod:`momentry.converters`)."""
    for name, value in kwargs.items():
        if not isinstance(value, NoSuchValue):
            continue
        if name == "trace_id":
            return not_found("trace", file_uuid=kwargs.get("file_uuid"), trace_id=value)
        if name.startswith("identity_uuid"):
            return not_found("identity", identity_uuid=value)
        if name == "file_uuid":
            return not_found("file", file_uuid=value)
        return NotFound(details={name: value.text})
    return None


class Conflict(ApiError):
    status, code, default_message = 409, "CONFLICT", "The request conflicts with the resource's state."


class FrameOutOfRange(ApiError):
    status, code, default_message = 416, "FRAME_OUT_OF_RANGE", "Frame number is past the end of the video."


class RangeNotSatisfiable(ApiError):
    status, code, default_message = 416, "RANGE_NOT_SATISFIABLE", "Requested range not satisfiable."


class Busy(ApiError):
    status, code, default_message = 503, "BUSY", "Media workers are saturated; retry shortly."

    def __init__(self, message: str | None = None, retry_after: int = 2) -> None:
        super().__init__(message, {"retry_after": retry_after}, {"Retry-After": str(retry_after)})


class Unavailable(ApiError):
    """A service a route depends on is down (e.g. the cache that counts login attempts): retry later."""

    status, code, default_message = 503, "UNAVAILABLE", "A service this request needs is unavailable; retry shortly."

    def __init__(self, message: str | None = None, retry_after: int = 30) -> None:
        super().__init__(message, {"retry_after": retry_after}, {"Retry-After": str(retry_after)})


class MediaError(ApiError):
    status, code, default_message = 500, "MEDIA_ERROR", "Media processing failed."


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    body = {"success": False, "error": {"code": code, "message": message, "details": details or {}}}
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def response_for_api_error(exc: ApiError) -> JsonResponse:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    414: "URI_TOO_LONG",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "THROTTLED",
}


def _drf_details(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {"fields": detail}
    if isinstance(detail, list):
        return {"errors": detail}
    return {}


def _drf_message(exc: drf_exceptions.APIException) -> str:
    if isinstance(exc, drf_exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict) and detail:
            field, errors = next(iter(detail.items()))
            first = errors[0] if isinstance(errors, list) and errors else errors
            return f"{field}: {first}"
        if isinstance(detail, list) and detail:
            return str(detail[0])
        return "Invalid request."
    return detail_text(exc.detail)


def detail_text(detail: Any) -> str:
    """A DRF ``detail`` as plain text: never a Python repr such as ``ErrorDetail(string=...)``.

    simplejwt raises with a dict (``{"detail": ..., "code": ..., "messages": [...]}``).
    """
    if isinstance(detail, dict):
        if "detail" in detail:
            return detail_text(detail["detail"])
        return detail_text(next(iter(detail.values()))) if detail else "Request failed."
    if isinstance(detail, list | tuple):
        return detail_text(detail[0]) if detail else "Request failed."
    return str(detail)


class PayloadTooLarge(ApiError):
    status, code, default_message = 413, "PAYLOAD_TOO_LARGE", "The request body is too large."


def database_busy(exc: BaseException) -> bool:
    """SQLite's "database is locked": a write that could not get the lock within the busy timeout."""
    return isinstance(exc, OperationalError) and "locked" in str(exc).lower()


def as_api_error(exc: BaseException) -> ApiError | None:
    """Known non-API exceptions that are the client's or the moment's fault, as 4xx/503 errors."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge(details={"max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE})
    if isinstance(exc, TooManyFieldsSent):
        return BadRequest("Too many parameters.", max_parameters=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS)
    if isinstance(exc, SuspiciousOperation):
        return BadRequest("The request was refused as malformed.")
    if database_busy(exc):
        return Busy("The database is busy with a long write (e.g. an import); retry shortly.", retry_after=5)
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """DRF's exception handler: every exception becomes the envelope."""
    known = as_api_error(exc)
    if known is not None:
        exc = known
    if isinstance(exc, ApiError):
        if exc.status >= 500:
            logger.error("API error %s: %s", exc.code, exc.message)
        return response_for_api_error(exc)
    if isinstance(exc, Http404):
        return error_response(404, "NOT_FOUND", "Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    if isinstance(exc, drf_exceptions.APIException):
        response = drf_default_handler(exc, context)
        status = response.status_code if response is not None else exc.status_code
        headers = {}
        if response is not None:
            for name in ("WWW-Authenticate", "Retry-After", "Allow"):
                if name in response:
                    headers[name] = response[name]
        code = _STATUS_CODES.get(status, "ERROR")
        if status == 401 and "WWW-Authenticate" not in headers:
            headers["WWW-Authenticate"] = 'Bearer realm="api", X-API-Key'
        return error_response(status, code, _drf_message(exc), _drf_details(exc.detail), headers)
    logger.exception("Unhandled error in API view")
    return error_response(500, "INTERNAL_ERROR", "Internal server error.")


def wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(JSON_PREFIXES)


class JsonErrorMiddleware:
    """Turns Django's own error pages under /api/ and /health into the JSON envelope.

    It also answers, before any view runs, a path parameter that names nothing (a
    :class:`~momentry.converters.NoSuchValue`) with the 404 of an unknown resource.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not wants_json(request) or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        status = response.status_code
        code = _STATUS_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "ERROR")
        message = {404: "Not found.", 405: "Method not allowed."}.get(
            status, "Internal server error." if status >= 500 else "Request failed."
        )
        headers = {k: response[k] for k in ("Allow", "WWW-Authenticate", "Retry-After") if k in response}
        return error_response(status, code, message, headers=headers)

    def process_view(self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: dict[str, Any]):
        refusal = unknown_path_value(view_kwargs)
        if refusal is None:
            return None
        if not wants_json(request):
            raise Http404(refusal.message)  # an admin page: Django's own 404 page
        return response_for_api_error(refusal)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not wants_json(request):
            return None
        known = as_api_error(exc)
        if known is not None:
            return response_for_api_error(known)
        if isinstance(exc, Http404):
            return error_response(404, "NOT_FOUND", "Not found.")
        logger.exception("Unhandled error on %s", request.path)
        message = f"Internal server error: {exc}" if settings.DEBUG else "Internal server error."
        return error_response(500, "INTERNAL_ERROR", message)
