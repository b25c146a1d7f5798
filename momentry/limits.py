"""Request limits enforced before any view, each answered with the JSON error envelope.

* a request line longer than ``MOMENTRY_MAX_URL_LENGTH`` → 414 ``URI_TOO_LONG`` (below
  gunicorn's own 8190-byte limit, so the app answers first; see deploy/gunicorn.conf.py);
* more than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` query parameters → 400 ``TOO_MANY_PARAMETERS``;
* a declared body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` → 413 ``PAYLOAD_TOO_LARGE`` (a chunked
  body without a length is capped by :class:`momentry.parsers.BoundedJSONParser`);
* JSON nested deeper than Python's parser can follow → 400 (:class:`BoundedJSONParser`).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from momentry.errors import PayloadTooLarge, error_response


def body_limit() -> int:
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


def too_large(size: int | None = None) -> PayloadTooLarge:
    details = {"max_bytes": body_limit()}
    if size is not None:
        details["content_length"] = size
    return PayloadTooLarge(f"The request body is larger than {body_limit()} bytes.", details)


class RequestLimitsMiddleware:
    """First in the chain: refuses oversized requests before sessions, CSRF or DRF read them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = self.refusal(request)
        return refusal if refusal is not None else self.get_response(request)

    @staticmethod
    def refusal(request: HttpRequest) -> HttpResponse | None:
        query = request.META.get("QUERY_STRING", "")
        max_url = int(settings.MOMENTRY_MAX_URL_LENGTH)
        if len(request.path_info) + len(query) > max_url:
            return error_response(414, "URI_TOO_LONG", f"The URL is longer than {max_url} characters.",
                                  {"max_length": max_url})
        max_fields = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        if max_fields is not None and query.count("&") + query.count(";") >= max_fields:
            fields = len([part for part in query.replace(";", "&").split("&") if part])
            if fields > max_fields:
                return error_response(400, "TOO_MANY_PARAMETERS", f"More than {max_fields} query parameters.",
                                      {"max_parameters": max_fields, "parameters": fields})
        raw_length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw_length) if len(raw_length) <= 18 else body_limit() + 1
        except ValueError:
            return error_response(400, "BAD_REQUEST", "Content-Length is not a number.",
                                  {"parameter": "Content-Length"})
        if length > body_limit():
            exc = too_large(length)
            return error_response(exc.status, exc.code, exc.message, exc.details)
        return None
