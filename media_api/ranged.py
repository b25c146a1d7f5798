"""Byte-range file responses (RFC 9110 §14) with flat memory, or a hand-off to the front server.

Why not ``django-ranged-response``: as published (0.2.0) it reads the whole file to learn its
size (a 100-byte range of a 1 GB file took the process to 1 GB), never closes the file,
sends no Content-Length on 200, and answers an unsatisfiable open range with the full body.
Wrapping it would mean replacing every part that does I/O, so this is a small replacement:

* size and mtime from ``os.fstat`` on the open handle (no read);
* one single range per response (``a-b``, ``a-``, suffix ``-n``); a multi-range or
  malformed ``Range`` is ignored (200 full body — allowed by the RFC);
* 416 with ``Content-Range: bytes */size`` when the range starts past the end;
* ``ETag`` (size + mtime, strong) and ``Last-Modified``; ``If-None-Match`` /
  ``If-Modified-Since`` → 304; ``If-Range`` that does not match → 200 with the full body;
* the body is a :class:`FileRangeIterator` that reads ``CHUNK_SIZE`` blocks, advances by the
  bytes actually read, stops at the range end and closes the file in ``close()`` (Django
  calls it when the response is closed, iterated or not);
* ``HEAD`` answers the same headers with no body and closes the file at once;
* with ``MOMENTRY_SENDFILE = x-accel-redirect | x-sendfile`` the view only authorises and
  answers an empty response carrying the header; nginx/Apache then do ranges, conditional
  requests and sendfile themselves (see ``deploy/nginx.conf``).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, StreamingHttpResponse
from django.utils.http import http_date, parse_http_date_safe

from media_api.ffmpeg.source import diagnose
from momentry.errors import MediaError, RangeNotSatisfiable, error_response

logger = logging.getLogger("media_api.ranged")

CHUNK_SIZE = 256 * 1024
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)

mimetypes.add_type("video/mp4", ".mp4")
mimetypes.add_type("video/x-matroska", ".mkv")
mimetypes.add_type("video/mp2t", ".ts")
mimetypes.add_type("video/quicktime", ".mov")
mimetypes.add_type("video/webm", ".webm")


class FileRangeIterator:
    """Yields ``length`` bytes of ``handle`` from ``start``; closes the handle when done or closed."""

    def __init__(self, handle, start: int, length: int, chunk_size: int = CHUNK_SIZE) -> None:
        self.handle = handle
        self.start = start
        self.remaining = length
        self.chunk_size = chunk_size

    def __iter__(self) -> Iterator[bytes]:
        try:
            self.handle.seek(self.start)
            while self.remaining > 0:
                chunk = self.handle.read(min(self.chunk_size, self.remaining))
                if not chunk:  # the file shrank under us: stop rather than loop
                    break
                self.remaining -= len(chunk)
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()


class AsyncChunks:
    """Async view of a closable chunk iterator, for ASGI servers.

    Django's ASGI handler consumes a *sync* streaming body completely into a list before
    sending it (memory = whole body, first byte only at the end). This adapter reads each
    chunk in a worker thread instead, so ASGI responses stream like WSGI ones; ``close()``
    (called by Django when the response closes, e.g. on disconnect) closes the source.
    """

    def __init__(self, source) -> None:
        self.source = source

    def __aiter__(self):
        return self._chunks()

    async def _chunks(self):
        iterator = iter(self.source)
        while True:
            chunk = await asyncio.to_thread(next, iterator, None)
            if chunk is None:
                break
            yield chunk

    def close(self) -> None:
        self.source.close()


def is_asgi(request: HttpRequest) -> bool:
    return isinstance(getattr(request, "_request", request), ASGIRequest)


def streaming_body(request: HttpRequest, source):
    """The body to hand to ``StreamingHttpResponse``: async under ASGI, the source itself under WSGI."""
    return AsyncChunks(source) if is_asgi(request) else source


#: Positions with more digits than this are past the end of any file (and never reach int()).
_MAX_DIGITS = 18
_HUGE = 10**_MAX_DIGITS


def _position(digits: str) -> int:
    """A byte position from the header; absurdly long numbers count as "past any end"."""
    digits = digits.lstrip("0") or "0"
    return _HUGE if len(digits) > _MAX_DIGITS else int(digits)


def parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """(first, last) inclusive for a single satisfiable range, None to ignore, "unsatisfiable"."""
    match = _RANGE_RE.match(header or "")
    if match is None:
        return None  # malformed or multi-range: serve the whole file
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last N bytes
        length = _position(last)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    start = _position(first)
    if last and _position(last) < start:
        return None  # invalid range-spec: ignore the header (RFC 9110 §14.1.1)
    if start >= size:
        return "unsatisfiable"
    end = _position(last) if last else size - 1
    return start, min(end, size - 1)


def make_etag(stat: os.stat_result) -> str:
    return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'


def etag_matches(header: str, etag: str, weak: bool) -> bool:
    if header.strip() == "*":
        return True
    candidates = [tag.strip() for tag in header.split(",")]
    if weak:
        bare = etag.removeprefix("W/")
        return any(tag.removeprefix("W/") == bare for tag in candidates)
    return not etag.startswith("W/") and etag in candidates


def _not_modified(request: HttpRequest, etag: str, mtime: int) -> bool:
    if request.method not in ("GET", "HEAD"):
        return False
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        return etag_matches(inm, etag, weak=True)
    ims = parse_http_date_safe(request.headers.get("If-Modified-Since", ""))
    return ims is not None and mtime <= ims


def _if_range_allows(request: HttpRequest, etag: str, mtime: int) -> bool:
    value = request.headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return etag_matches(value, etag, weak=False)
    date = parse_http_date_safe(value)
    return date is not None and date == mtime


def content_type_for(path: str | Path) -> str:
    return mimetypes.guess_type(str(path))[0] or "application/octet-stream"


def _validators(response: HttpResponse, etag: str, mtime: int) -> None:
    response["ETag"] = etag
    response["Last-Modified"] = http_date(mtime)
    response["Accept-Ranges"] = "bytes"


def _sendfile_response(path: Path, content_type: str) -> HttpResponse | None:
    mode = settings.MOMENTRY_SENDFILE
    if mode not in ("x-accel-redirect", "x-sendfile"):
        return None
    response = HttpResponse(content_type=content_type)
    if mode == "x-sendfile":
        response["X-Sendfile"] = str(path)
        return response
    root = Path(settings.MOMENTRY_SENDFILE_ROOT).resolve()
    try:
        relative = path.resolve().relative_to(root)
    except ValueError:
        return None  # outside the exported tree: serve it ourselves
    prefix = "/" + settings.MOMENTRY_SENDFILE_PREFIX.strip("/")
    response["X-Accel-Redirect"] = f"{prefix}/{quote(relative.as_posix())}"
    return response


def negotiate(request: HttpRequest, size: int, etag: str, mtime: int) -> HttpResponse | tuple[int, int, int]:
    """What a GET/HEAD of ``size`` bytes with these validators asks for: ``(start, length, status)`` —
    the whole body (200) or one range (206) — or the answer itself when there is no body to send
    (304 Not Modified, or 416 with ``Content-Range: bytes */size``). Shared by local files and stored objects.
    """
    if _not_modified(request, etag, mtime):
        response = HttpResponseNotModified()  # no Content-Type: a 304 describes the resource, not a body
        _validators(response, etag, mtime)
        return response
    range_header = request.headers.get("Range")
    if not range_header or not _if_range_allows(request, etag, mtime):
        return 0, size, 200
    parsed = parse_range(range_header, size)
    if parsed == "unsatisfiable":
        exc = RangeNotSatisfiable(details={"size": size, "range": range_header[:200]})
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        response["Content-Range"] = f"bytes */{size}"
        _validators(response, etag, mtime)
        return response
    if parsed is None:
        return 0, size, 200
    first, last = parsed
    return first, last - first + 1, 206


def ranged_file_response(
    request: HttpRequest,
    path: str | Path,
    *,
    content_type: str | None = None,
    filename: str | None = None,
) -> HttpResponse:
    """Serve ``path`` honouring Range, HEAD and conditional headers; memory stays flat."""
    path = Path(path)
    content_type = content_type or content_type_for(filename or path)
    handoff = _sendfile_response(path, content_type)
    if handoff is not None:
        return handoff
    try:
        handle = path.open("rb")
    except OSError as exc:
        logger.error("cannot open registered video %s: %s", path, exc)
        # Gone from disk: the same 404 SOURCE_MISSING every other media route answers (docs/storage.md).
        raise (diagnose(path) or MediaError("The video file is not available on the server.")) from None
    try:
        stat = os.fstat(handle.fileno())
        size, mtime, etag = stat.st_size, int(stat.st_mtime), make_etag(stat)
        span = negotiate(request, size, etag, mtime)
        if isinstance(span, HttpResponse):
            handle.close()
            return span
        start, length, status = span
        if request.method == "HEAD":
            handle.close()
            response = HttpResponse(status=status, content_type=content_type)
        else:
            body = streaming_body(request, FileRangeIterator(handle, start, length))
            response = StreamingHttpResponse(body, status=status, content_type=content_type)
    except BaseException:
        handle.close()
        raise
    response["Content-Length"] = str(length)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    if filename:
        response["Content-Disposition"] = f"inline; filename*=UTF-8''{quote(filename)}"
    _validators(response, etag, mtime)
    return response


__all__ = [
    "AsyncChunks",
    "negotiate",
    "CHUNK_SIZE",
    "FileRangeIterator",
    "content_type_for",
    "etag_matches",
    "is_asgi",
    "parse_range",
    "ranged_file_response",
    "streaming_body",
]
