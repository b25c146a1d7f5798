"""Request limits enforced before any view, each answered with the JSON error envelope.

* a request line longer than ``MOMENTRY_MAX_URL_LENGTH`` → 414 ``URI_TOO_LONG`` (below
  gunicorn's own 8190-byte limit, so the app answers first; see deploy/gunicorn.conf.py);
* more than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` query parameters → 400 ``TOO_MANY_PARAMETERS``;
* a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` → 413 ``PAYLOAD_TOO_LARGE``: a declared length is
  refused before reading; a chunked body (``Transfer-Encoding: chunked``, no ``Content-Length``),
  which Django itself would silently read as empty, is read here up to the limit and then
  handed on with its length (so the view sees it), or refused once it passes the limit;
* a NUL character in a query parameter's name or value → 400 (see :mod:`momentry.nul`); a cookie
  whose value holds one is dropped (a session key with a NUL names no session: the request is
  simply not logged in, instead of a 500 from the session table);
* JSON nested deeper than Python's parser can follow → 400 (:class:`momentry.parsers.BoundedJSONParser`).
"""

from __future__ import annotations

from io import BytesIO
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse

from momentry.errors import PayloadTooLarge, error_response
from momentry.nul import NUL


def body_limit() -> int:
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


def too_large(size: int | None = None, limit: int | None = None) -> PayloadTooLarge:
    limit = body_limit() if limit is None else limit
    details = {"max_bytes": limit}
    if size is not None:
        details["content_length"] = size
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.", details)


#: Routes whose body may be larger than DATA_UPLOAD_MAX_MEMORY_SIZE, (method, path) -> bytes; their views
#: check each part. Search by photo: a 10 MB image plus the rest of its multipart form.
LARGER_BODIES = {("POST", "/api/v1/faces/search"): 10 * 1024 * 1024 + 64 * 1024}


def request_body_limit(request: HttpRequest) -> int:
    """The body limit of this request's route."""
    return LARGER_BODIES.get((request.method, request.path_info), body_limit())


def streamed_upload(request: HttpRequest) -> bool:
    """A tus PATCH (uploads/): the view streams its body to storage piece by piece, so no body limit applies
    (``MOMENTRY_MAX_UPLOAD_BYTES`` bounds the upload when it is created)."""
    return request.method == "PATCH" and request.path_info.startswith("/api/v1/uploads/")


class RequestLimitsMiddleware:
    """First in the chain: refuses oversized requests before sessions, CSRF or DRF read them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = self.refusal(request) or self.nul_in_query(request) or self.read_chunked_body(request)
        if refusal is not None:
            return refusal
        self.drop_cookies_with_nul(request)
        return self.get_response(request)

    @staticmethod
    def drop_cookies_with_nul(request: HttpRequest) -> None:
        # (parsed cookies: a quoted value can also write NUL as the escape \\000)
        for name in [name for name, value in request.COOKIES.items() if NUL in name or NUL in value]:
            del request.COOKIES[name]

    @staticmethod
    def nul_in_query(request: HttpRequest) -> HttpResponse | None:
        query = request.META.get("QUERY_STRING", "")
        if "%00" not in query and NUL not in query:
            return None
        for name, value in parse_qsl(query, keep_blank_values=True):
            if NUL in name or NUL in value:
                return error_response(400, "BAD_REQUEST", "A query parameter contains the NUL character (%00).",
                                      {"parameter": name})
        return None

    @staticmethod
    def read_chunked_body(request: HttpRequest) -> HttpResponse | None:
        """Read a chunked body (at most the limit) so that it is neither ignored nor unbounded."""
        meta = request.META
        if streamed_upload(request):
            return None
        if meta.get("CONTENT_LENGTH") or "chunked" not in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
            return None
        if "wsgi.input" not in meta:  # ASGI: the server has read the body and gives its length
            return None
        limit = request_body_limit(request)
        body = meta["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            exc = too_large(limit=limit)
            return error_response(exc.status, exc.code, exc.message, exc.details)
        meta["CONTENT_LENGTH"] = str(len(body))
        request._stream = LimitedStream(BytesIO(body), len(body))  # what WSGIRequest reads its body from
        return None

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
        if length > request_body_limit(request) and not streamed_upload(request):
            exc = too_large(length, request_body_limit(request))
            return error_response(exc.status, exc.code, exc.message, exc.details)
        return None
