"""Objects in S3-compatible stores: parse ``s3://`` URLs, decide which buckets may be registered, read ranges.

Everything goes through boto3 (:func:`~media_api.storage.config.s3_client`): no hand-written S3 calls.
Reads are always ranged or streamed in bounded chunks, never a whole object into memory.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from .config import s3_client, storage_config

logger = logging.getLogger("media_api.storage")

#: Chunk size of a streamed object read (hashing, /video proxying): bounded memory whatever the object.
READ_CHUNK = 1 << 20


class ObjectError(Exception):
    """The object cannot be used: a bad URL, a bucket not configured, a missing object, a store error."""

    def __init__(self, message: str, *, forbidden: bool = False, missing: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden
        self.missing = missing


@dataclass(frozen=True)
class ObjectRef:
    """One object: ``bucket`` and ``key``; ``url`` is its canonical ``s3://bucket/key``."""

    bucket: str
    key: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def parse_object_url(url: str) -> ObjectRef:
    """``s3://bucket/key`` → :class:`ObjectRef` (ObjectError for anything else)."""
    parts = urlsplit(url)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key or parts.query or parts.fragment or key.endswith("/"):
        raise ObjectError("url must be s3://bucket/key of one object")
    if any(ord(c) < 32 for c in url):
        raise ObjectError("url must not contain control characters")
    return ObjectRef(parts.netloc, key)


def registrable_buckets() -> frozenset[str]:
    """Buckets ``POST /files {"url"}`` may register from: the storage bucket and ``MOMENTRY_S3_REGISTER_BUCKETS``.

    Why an allow-list: the service's credentials may read more than its users should reach; an API
    key must not turn the service into a reader of any bucket those credentials open.
    """
    config = storage_config()
    buckets = set(getattr(settings, "MOMENTRY_S3_REGISTER_BUCKETS", ()) or ())
    if config.kind == "s3":
        buckets.add(config.bucket)
    return frozenset(buckets)


def check_registrable(ref: ObjectRef) -> None:
    if ref.bucket not in registrable_buckets():
        raise ObjectError(f"bucket {ref.bucket!r} is not one this service registers from "
                          "(MOMENTRY_STORAGE_URL's bucket or MOMENTRY_S3_REGISTER_BUCKETS)", forbidden=True)


def client_error(exc: Exception, ref: ObjectRef) -> ObjectError:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
        return ObjectError(f"no such object: {ref.url}", missing=True)
    if code in ("403", "AccessDenied"):
        return ObjectError(f"access denied to {ref.url}", forbidden=True)
    logger.warning("S3 error on %s: %s", ref.url, exc)
    return ObjectError(f"the object store did not answer for {ref.url}")


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    mtime: float
    etag: str


def head(ref: ObjectRef, quick: bool = False) -> ObjectInfo:
    """Size, modification time and ETag of the object (ObjectError when it is missing or unreadable).

    ``quick``: one attempt with short timeouts (:func:`~media_api.storage.config.s3_client`).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = s3_client(quick).head_object(Bucket=ref.bucket, Key=ref.key)
    except ClientError as exc:
        raise client_error(exc, ref) from None
    except BotoCoreError as exc:
        logger.warning("S3 error on %s: %s", ref.url, exc)
        raise ObjectError(f"the object store did not answer for {ref.url}") from None
    modified = answer.get("LastModified")
    return ObjectInfo(int(answer["ContentLength"]), modified.timestamp() if modified else 0.0,
                      str(answer.get("ETag", "")).strip('"'))


def iter_range(ref: ObjectRef, start: int = 0, end: int | None = None, chunk: int = READ_CHUNK) -> Iterator[bytes]:
    """Bytes ``start..end`` (inclusive; None: to the end) of the object, streamed in ``chunk``-sized pieces.

    One ranged GetObject; the body is read incrementally, so memory stays at one chunk.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    wanted = f"bytes={start}-" + ("" if end is None else str(end))
    try:
        body = s3_client().get_object(Bucket=ref.bucket, Key=ref.key, Range=wanted)["Body"]
    except ClientError as exc:
        raise client_error(exc, ref) from None
    except BotoCoreError as exc:
        logger.warning("S3 error on %s: %s", ref.url, exc)
        raise ObjectError(f"the object store did not answer for {ref.url}") from None
    try:
        yield from body.iter_chunks(chunk)
    finally:
        body.close()


def sha256_of_object(ref: ObjectRef) -> str:
    """SHA-256 of the object's content, streamed (the file_uuid of local files is the same hash)."""
    digest = hashlib.sha256()
    for piece in iter_range(ref):
        digest.update(piece)
    return digest.hexdigest()


def presigned_get(ref: ObjectRef, seconds: int | None = None) -> str:
    """A presigned GET URL (computed locally, no request): what FFmpeg/PyAV open and the 302 mode sends."""
    seconds = int(seconds or getattr(settings, "MOMENTRY_S3_URL_SECONDS", 6 * 3600))
    return s3_client().generate_presigned_url("get_object", Params={"Bucket": ref.bucket, "Key": ref.key},
                                              ExpiresIn=seconds)


def delete(ref: ObjectRef) -> None:
    """Delete the object (a missing one is not an error: deleting is idempotent)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3_client().delete_object(Bucket=ref.bucket, Key=ref.key)
    except (ClientError, BotoCoreError) as exc:
        logger.warning("S3 error deleting %s: %s", ref.url, exc)
        raise ObjectError(f"could not delete {ref.url}") from None
