"""``/video`` of a file kept in an S3-compatible store: the same Range semantics as a local file.

Default: proxied. The requested range becomes one ranged ``GetObject`` whose body is streamed to the
client in bounded chunks (never the whole object, never on disk); size and validators come from the
registration row, so a request costs no ``HeadObject``. The ETag is derived from the content hash
(``file_uuid``), so every web node answers the same validators for the same bytes.

``MOMENTRY_S3_VIDEO_REDIRECT`` (opt-in): a 302 to a presigned URL of the object instead, for setups where
a CDN or the store itself should carry the bytes; the store then answers Range itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse

from media_api.ffmpeg.source import SourceMissing, StoreUnavailable
from media_api.models import MediaFile
from media_api.ranged import CHUNK_SIZE, _validators, negotiate, streaming_body

from . import objects
from .config import s3_client

logger = logging.getLogger("media_api.storage")


class ObjectBody:
    """Chunks of an open ``GetObject`` body; :meth:`close` (Django calls it on disconnect too) releases it."""

    def __init__(self, body, chunk_size: int = CHUNK_SIZE) -> None:  # noqa: ANN001 - botocore StreamingBody
        self.body = body
        self.chunk_size = chunk_size

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.body.iter_chunks(self.chunk_size)
        finally:
            self.close()

    def close(self) -> None:
        self.body.close()


def object_etag(media_file: MediaFile) -> str:
    """Strong validator of the stored bytes: content hash and size (the same on every node)."""
    return f'"{media_file.file_uuid[:24]}-{media_file.size:x}"'


def redirect_response(media_file: MediaFile, content_type: str) -> HttpResponse:
    """302 to a presigned GET of the object (``MOMENTRY_S3_VIDEO_REDIRECT``)."""
    ref = objects.parse_object_url(media_file.path)
    seconds = int(getattr(settings, "MOMENTRY_S3_REDIRECT_SECONDS", 3600))
    url = s3_client().generate_presigned_url(
        "get_object", Params={"Bucket": ref.bucket, "Key": ref.key, "ResponseContentType": content_type},
        ExpiresIn=seconds)
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = "private, no-store"  # the Location is a credential with its own lifetime
    return response


def object_response(request: HttpRequest, media_file: MediaFile, *, content_type: str) -> HttpResponse:
    """The stored object's bytes with Range, HEAD and conditional requests, as ``ranged_file_response`` does."""
    if getattr(settings, "MOMENTRY_S3_VIDEO_REDIRECT", False):
        return redirect_response(media_file, content_type)
    size, mtime, etag = media_file.size, int(media_file.mtime), object_etag(media_file)
    span = negotiate(request, size, etag, mtime)
    if isinstance(span, HttpResponse):
        return span
    start, length, status = span
    if request.method == "HEAD" or length == 0:
        response = HttpResponse(status=status, content_type=content_type)
    else:
        body = _open_range(media_file, start, start + length - 1)
        response = StreamingHttpResponse(streaming_body(request, ObjectBody(body)), status=status,
                                         content_type=content_type)
    response["Content-Length"] = str(length)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    _validators(response, etag, mtime)
    return response


def _open_range(media_file: MediaFile, first: int, last: int):  # noqa: ANN202 - botocore StreamingBody
    """Start the ranged GetObject now, so a store failure is a 503 before any header is sent."""
    from botocore.exceptions import BotoCoreError, ClientError

    ref = objects.parse_object_url(media_file.path)
    try:
        return s3_client().get_object(Bucket=ref.bucket, Key=ref.key, Range=f"bytes={first}-{last}")["Body"]
    except ClientError as exc:
        logger.error("cannot read stored video %s (%s): %s", media_file.file_uuid, ref.url, exc)
        if objects.client_error(exc, ref).missing:
            raise SourceMissing() from None
        raise StoreUnavailable() from None
    except BotoCoreError as exc:
        logger.error("cannot read stored video %s (%s): %s", media_file.file_uuid, ref.url, exc)
        raise StoreUnavailable() from None
