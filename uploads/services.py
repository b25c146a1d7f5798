"""tus uploads: create, receive a chunk, finish (register job), abandon, expire.

Views stay thin over these. The rules that matter:

* **Who sees an upload.** The credential that created it: an API key sees the uploads it created,
  a session or JWT the uploads its user created without a key. Anyone else gets the 404 of an
  unknown upload (no existence leak).
* **One writer at a time.** A PATCH claims the upload with a conditional UPDATE on
  (offset, ``busy_since``) — no row lock is held while the body streams in (SQLite would block
  every other writer). A claim older than :data:`BUSY_STALE_SECONDS` without progress is taken
  over (its worker died). HEAD and PATCH wait briefly for a running PATCH to end, so a client that
  lost its connection and asks at once gets the offset of everything that arrived.
* **A cut-off body keeps what arrived.** The body is read from the socket in small pieces; when it
  ends early, the bytes received are stored and counted, and the client resumes from there.
* **On completion** a ``register_file`` job is submitted with ``{"path" or "url", "upload", "owned"}``;
  the register runner hands such jobs to :func:`register_upload`, which deletes the stored bytes when
  they are not a video FFmpeg can read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from momentry.converters import canonical_uuid
from momentry.errors import ApiError, BadRequest, Conflict, NotFound, PayloadTooLarge, Unavailable
from momentry.models import APIKey
from uploads import store
from uploads.models import Upload

logger = logging.getLogger("momentry.uploads")

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,termination,expiration,checksum"
CHECKSUMS = {"sha1": hashlib.sha1, "md5": hashlib.md5, "sha256": hashlib.sha256}
READ_SIZE = 256 * 1024
CHECKPOINT_BYTES = 32 * 1024 * 1024
BUSY_STALE_SECONDS = 60
WAIT_FOR_WRITER_SECONDS = 10.0


class Gone(ApiError):
    status, code, default_message = 410, "GONE", "The upload expired."


class TooManyUploads(ApiError):
    status, code, default_message = 429, "TOO_MANY_UPLOADS", "Too many unfinished uploads."


class ChecksumMismatch(ApiError):
    status, code, default_message = 460, "CHECKSUM_MISMATCH", "The chunk does not match Upload-Checksum."


def not_found(upload_id: Any) -> NotFound:
    return NotFound("Upload not found.", {"upload_id": str(upload_id)})


# --------------------------------------------------------------------------- who sees what


def _mine(user: Any, auth: Any) -> Q:
    key = auth if isinstance(auth, APIKey) else None
    return Q(owner_id=user.pk, api_key=key)


def uploads_of(user: Any, auth: Any) -> QuerySet[Upload]:
    return Upload.objects.filter(_mine(user, auth))


def upload_for(user: Any, auth: Any, upload_id: Any) -> Upload:
    """The caller's upload, or the 404 of an unknown one; 410 once it expired (until beat removes it)."""
    pk = canonical_uuid(str(upload_id))
    if pk is None:
        raise not_found(upload_id)
    upload = uploads_of(user, auth).select_related("job", "job__file").filter(pk=pk).first()
    if upload is None:
        raise not_found(upload_id)
    return upload


def check_not_expired(upload: Upload) -> None:
    if upload.state == Upload.State.UPLOADING and upload.expires_at <= timezone.now():
        raise Gone(details={"upload_id": upload.pk.hex, "expired_at": upload.expires_at.isoformat()})


# --------------------------------------------------------------------------- creation


_B64 = "(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
_PAIR = f"[!#$%&'*+.^_`|~0-9A-Za-z-]+(?: {_B64})?"
#: ``Upload-Metadata`` as the schema states it: comma-separated ``key`` or ``key base64value`` pairs
METADATA_PATTERN = f"^ *(?:{_PAIR}(?: *, *{_PAIR})*)? *$"
_METADATA = re.compile(METADATA_PATTERN)


def parse_metadata(raw: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (a key alone has an empty value).

    Values are decoded leniently (text that is not UTF-8 gets replacement characters, NUL is dropped,
    1024 characters at most): they are labels; only ``filename`` is used, and it is sanitised.
    """
    if not raw:
        return {}
    if not _METADATA.match(raw):
        raise BadRequest("Upload-Metadata must be comma-separated 'key base64value' pairs.", param="Upload-Metadata")
    found: dict[str, str] = {}
    for pair in raw.split(","):
        key, _, value = pair.strip().partition(" ")
        if key:
            text = base64.b64decode(value.strip()).decode("utf-8", errors="replace") if value.strip() else ""
            found[key] = text.replace("\x00", "")[:1024]
    return found


def parse_length(raw: str | None, name: str) -> int:
    if raw is None or not raw.isdigit() or len(raw) > 19:
        raise BadRequest(f"{name} must be a non-negative integer.", param=name)
    return int(raw)


def expiry() -> Any:
    return timezone.now() + timedelta(seconds=settings.MOMENTRY_UPLOAD_EXPIRE_SECONDS)


def create(user: Any, auth: Any, length: int, metadata: dict[str, str]) -> Upload:
    """A new upload of ``length`` bytes (413 over the limit, 429 over the unfinished-upload quota)."""
    limit = int(settings.MOMENTRY_MAX_UPLOAD_BYTES)
    if length > limit:
        raise PayloadTooLarge(f"Upload-Length is over the limit of {limit} bytes (MOMENTRY_MAX_UPLOAD_BYTES).",
                              {"max_bytes": limit, "upload_length": length})
    if length == 0:
        raise BadRequest("Upload-Length is 0: an empty file is not a video.", param="Upload-Length")
    quota = int(settings.MOMENTRY_UPLOAD_MAX_INCOMPLETE)
    unfinished = uploads_of(user, auth).filter(state=Upload.State.UPLOADING).count()
    if unfinished >= quota:
        oldest = uploads_of(user, auth).filter(state=Upload.State.UPLOADING).order_by("expires_at").first()
        wait = max(1, int((oldest.expires_at - timezone.now()).total_seconds()) + 1) if oldest else 60
        raise TooManyUploads(
            f"This credential already has {unfinished} unfinished uploads (MOMENTRY_UPLOAD_MAX_INCOMPLETE="
            f"{quota}); finish or DELETE one, or wait until one expires.",
            {"unfinished": unfinished, "max_unfinished": quota, "retry_after": wait}, {"Retry-After": str(wait)})
    filename = store.sanitise_filename(metadata.get("filename") or metadata.get("name") or "upload")
    upload = Upload(owner=user, api_key=auth if isinstance(auth, APIKey) else None, filename=filename,
                    metadata=metadata, length=length, expires_at=expiry())
    with storage_errors():
        store.prepare(upload)
    upload.save(force_insert=True)
    logger.info("upload %s created: %s, %d bytes, %s", upload.pk, filename, length, upload.storage)
    return upload


# --------------------------------------------------------------------------- one writer at a time


def _free_or_stale() -> Q:
    return Q(busy_since__isnull=True) | Q(busy_since__lt=timezone.now() - timedelta(seconds=BUSY_STALE_SECONDS))


def _reload(upload: Upload) -> Upload:
    """The row as it is now; the 404 of an unknown upload once another request deleted it (DELETE)."""
    try:
        upload.refresh_from_db()
    except Upload.DoesNotExist:
        raise not_found(upload.pk.hex) from None
    return upload


def wait_until_idle(upload: Upload, timeout: float = WAIT_FOR_WRITER_SECONDS) -> Upload:
    """The upload once no PATCH is writing it (or after ``timeout``): what HEAD reports."""
    deadline = time.monotonic() + timeout
    while upload.busy_since is not None and time.monotonic() < deadline:
        if upload.busy_since < timezone.now() - timedelta(seconds=BUSY_STALE_SECONDS):
            break
        time.sleep(0.05)
        _reload(upload)
    return upload


def claim(upload: Upload, offset: int) -> Upload:
    """Take the upload for one PATCH at ``offset``; 409 when the offset is not the upload's."""
    deadline = time.monotonic() + WAIT_FOR_WRITER_SECONDS
    while True:
        taken = Upload.objects.filter(_free_or_stale(), pk=upload.pk, offset=offset,
                                      state=Upload.State.UPLOADING).update(busy_since=timezone.now())
        if taken:
            return _reload(upload)
        _reload(upload)
        if upload.state != Upload.State.UPLOADING:
            raise Conflict("The upload is already complete.", {"upload_id": upload.pk.hex, "state": upload.state,
                                                               "offset": upload.offset})
        if upload.offset != offset:
            raise Conflict(f"Upload-Offset {offset} is not the upload's offset {upload.offset}; "
                           f"ask with HEAD and resume from there.",
                           {"upload_id": upload.pk.hex, "offset": upload.offset, "upload_offset": offset})
        if upload.busy_since is not None and time.monotonic() > deadline:
            raise Conflict("Another request is writing this upload; retry after HEAD.",
                           {"upload_id": upload.pk.hex, "offset": upload.offset})
        if upload.busy_since is not None:
            time.sleep(0.05)  # a PATCH still finishing (often the one whose client went away)


def _save(upload: Upload, fields: dict[str, Any], release: bool = False) -> None:
    values = {**fields, "busy_since": None if release else timezone.now(), "updated_at": timezone.now()}
    if release or "offset" in fields:
        values["expires_at"] = expiry()
    Upload.objects.filter(pk=upload.pk).update(**values)
    for name, value in values.items():
        setattr(upload, name, value)


# --------------------------------------------------------------------------- receiving a chunk


CHECKSUM_PATTERN = f"^(?:sha1|md5|sha256) {_B64}$"


def parse_checksum(raw: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: <algorithm> <base64 digest>``; 400 for an unknown algorithm or bad digest."""
    if raw is None:
        return None
    algorithm, _, digest = raw.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise BadRequest(f"Upload-Checksum algorithm must be one of {', '.join(CHECKSUMS)}.", param="Upload-Checksum")
    try:
        return algorithm, base64.b64decode(digest.strip(), validate=True)
    except binascii.Error:
        raise BadRequest("Upload-Checksum digest is not base64.", param="Upload-Checksum") from None


def receive(upload: Upload, offset: int, body: BinaryIO, declared: int | None,
            checksum: tuple[str, bytes] | None = None) -> Upload:
    """Store one PATCH body at ``offset``: as much of it as arrives (all of it or nothing with a checksum)."""
    if upload.state != Upload.State.UPLOADING:
        raise Conflict("The upload is already complete.", {"upload_id": upload.pk.hex, "state": upload.state,
                                                           "offset": upload.offset})
    if declared is not None and offset + declared > upload.length:
        raise BadRequest("The chunk goes past Upload-Length.", param="Content-Length", offset=offset,
                         length=upload.length)
    claim(upload, offset)
    writer = None
    try:
        with storage_errors():
            writer = store.writer_for(upload)
            fields = _write_body(upload, writer, body, declared, checksum)
    except BaseException:
        if writer is not None:
            writer.close()
        _save(upload, {}, release=True)
        raise
    _save(upload, fields, release=True)
    _tidy(writer)
    if upload.offset >= upload.length:
        finish(upload)
    return upload


def _write_body(upload: Upload, writer: store.Writer, body: BinaryIO, declared: int | None,
                checksum: tuple[str, bytes] | None) -> dict[str, Any]:
    """Feed the body to ``writer`` as it arrives; the fields to save (see :func:`receive`)."""
    hasher = CHECKSUMS[checksum[0]]() if checksum else None
    room = upload.length - upload.offset if declared is None else declared
    since_checkpoint = 0
    while room > 0:
        try:
            data = body.read(min(READ_SIZE, room))
        except OSError:  # (some servers raise when the client goes away; gunicorn reads short)
            data = b""
        if not data:
            break  # the client went away (or a chunked body ended): keep what arrived
        if hasher:
            hasher.update(data)
        writer.write(data)
        room -= len(data)
        since_checkpoint += len(data)
        if not hasher and since_checkpoint >= CHECKPOINT_BYTES:
            since_checkpoint = 0
            fields = writer.checkpoint()
            if fields:
                _save(upload, fields)
                _tidy(writer)
    if declared is None and body.read(1):
        writer.rollback()
        raise BadRequest("The chunk goes past Upload-Length.", param="Content-Length")
    if hasher and (room > 0 or hasher.digest() != checksum[1]):
        writer.rollback()
        raise ChecksumMismatch(details={"upload_id": upload.pk.hex, "offset": writer.start,
                                        "received": (declared or 0) - room})
    return writer.commit()


def _tidy(writer: store.Writer) -> None:
    """Delete what the saved row no longer refers to; a failure only leaves a tail for later (logged)."""
    try:
        writer.after_save()
    except Exception:  # noqa: BLE001 - the bytes are stored and counted; the next save or discard retries
        logger.exception("upload %s: could not delete a stale tail object", writer.upload.pk)


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """The store failing (S3 errors, a full disk) is a 503 to retry, never a 500: nothing was counted."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError, OSError) as exc:
        logger.error("upload storage error: %s", exc)
        raise Unavailable("The storage did not accept the bytes; retry (HEAD, then PATCH from Upload-Offset).",
                          retry_after=5) from exc


# --------------------------------------------------------------------------- completion


def finish(upload: Upload) -> None:
    """All bytes are stored: hand them to a register job."""
    from jobs import services as jobs

    params = {"path": store.registration_target(upload), "upload": upload.pk.hex, "owned": True}
    job, _ = jobs.submit("register_file", params=params, user=upload.owner)
    Upload.objects.filter(pk=upload.pk).update(state=Upload.State.REGISTERING, job=job, updated_at=timezone.now())
    upload.state, upload.job = Upload.State.REGISTERING, job
    logger.info("upload %s complete (%d bytes); register job %s", upload.pk, upload.length, job.pk)


def finish_if_stored(upload: Upload) -> Upload:
    """An upload whose last chunk was saved but whose job was never submitted (its web worker died then)."""
    if upload.state == Upload.State.UPLOADING and upload.offset >= upload.length and upload.busy_since is None:
        finish(upload)
    return upload


def _register(target: str, owned: bool) -> Any:
    """media_api's registration of a stored path or ``s3://`` object, as the service's own bytes."""
    from media_api.services import files

    if target.startswith("s3://"):
        return files.register_object(target, owned=owned)
    return files.register_file(target, owned=owned)


def register_upload(job: Any) -> dict[str, Any]:
    """The register job of an upload: register the stored bytes, or delete them when they are no video."""
    from jobs.models import Job

    upload = Upload.objects.filter(pk=job.params["upload"]).first()
    try:
        registered = _register(job.params["path"], bool(job.params.get("owned", True)))
    except Exception as exc:
        failure = _failure(exc)
        reason = str(failure)
        if upload is not None:
            try:
                store.discard(upload)  # (registration removes owned bytes too; this makes sure)
            except Exception:  # noqa: BLE001 - the failure is the job's; leftover bytes are logged
                logger.exception("upload %s: could not delete its stored bytes", upload.pk)
            Upload.objects.filter(pk=upload.pk).update(state=Upload.State.FAILED, error=reason,
                                                       updated_at=timezone.now())
        raise failure from exc
    Job.objects.filter(pk=job.pk).update(file=registered.file)
    file_uuid = registered.file.file_uuid
    if upload is not None:
        Upload.objects.filter(pk=upload.pk).update(state=Upload.State.DONE, file_uuid=file_uuid,
                                                   updated_at=timezone.now())
        _announce(upload, file_uuid, job)
    return {"file_uuid": file_uuid, "already_exists": registered.already_exists,
            "total_frames": registered.file.total_frames, "upload_id": job.params["upload"]}


class UploadNotRegistered(Exception):
    """The upload's register job failed; its stored bytes were removed (the job fails with this reason)."""


class UploadNotVideo(UploadNotRegistered):
    """The uploaded bytes are not a video FFmpeg can read."""


def _failure(exc: Exception) -> UploadNotRegistered:
    """Why registering failed, told truly: only a probe's refusal means the bytes are no video.

    Anything else (the database busy, the store failing while hashing) is named as itself, so the
    uploader is not told a video is not one.
    """
    from media_api.services.files import ProbeError

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, ProbeError):
        return UploadNotVideo(f"the upload is not a video FFmpeg can read ({first})"[:1000])
    return UploadNotRegistered(f"the upload could not be registered ({type(exc).__name__}: {first}); "
                               f"its bytes were removed: upload it again"[:1000])


def _announce(upload: Upload, file_uuid: str, job: Any) -> None:
    try:
        from webhooks.events import UPLOAD_COMPLETED, emit
    except ImportError:  # pragma: no cover - webhooks not installed
        return
    emit(UPLOAD_COMPLETED, {"upload_id": upload.pk.hex, "file_uuid": file_uuid, "filename": upload.filename,
                            "length": upload.length, "job_id": job.pk.hex})


# --------------------------------------------------------------------------- abandoning


def terminate(upload: Upload) -> None:
    """DELETE: remove the bytes and the row. A completed upload's file stays (delete the file for that)."""
    if upload.state == Upload.State.UPLOADING and _claim_for_delete(upload):
        try:
            with storage_errors():
                store.discard(upload)
        except BaseException:
            _save(upload, {}, release=True)
            raise
    upload.delete()


def _take(upload: Upload, **still: Any) -> bool:
    """Mark the upload busy if no live PATCH holds it and it is ``still`` so (a PATCH's guarded update)."""
    return bool(Upload.objects.filter(_free_or_stale(), pk=upload.pk, **still).update(busy_since=timezone.now()))


def _claim_for_delete(upload: Upload) -> bool:
    """Hold the upload like a writer before its bytes go, so no PATCH writes after them (an S3 tail
    object would be left behind); False when it was completed meanwhile (its bytes are a file's now),
    409 when a PATCH is still writing after :data:`WAIT_FOR_WRITER_SECONDS`."""
    deadline = time.monotonic() + WAIT_FOR_WRITER_SECONDS
    while not _take(upload, state=Upload.State.UPLOADING):
        _reload(upload)
        if upload.state != Upload.State.UPLOADING:
            return False
        if time.monotonic() > deadline:
            raise Conflict("Another request is writing this upload; retry the DELETE.",
                           {"upload_id": upload.pk.hex, "offset": upload.offset})
        time.sleep(0.05)
    return True


def expire_uploads(now: Any = None) -> int:
    """Remove unfinished uploads past ``expires_at`` (beat, every 10 minutes): bytes, then rows."""
    now = now or timezone.now()
    removed = 0
    stale = now - timedelta(seconds=BUSY_STALE_SECONDS)
    expired = Upload.objects.filter(Q(busy_since__isnull=True) | Q(busy_since__lt=stale),
                                    state=Upload.State.UPLOADING, expires_at__lte=now)
    for upload in expired.iterator():
        if not _take(upload, state=Upload.State.UPLOADING, expires_at__lte=now):
            continue  # a PATCH took it (and moved its expiry) meanwhile
        try:
            store.discard(upload)
        except Exception:  # noqa: BLE001 - try again at the next round
            logger.exception("expired upload %s: could not delete its bytes", upload.pk)
            continue
        upload.delete()
        removed += 1
    if removed:
        logger.info("removed %d expired uploads", removed)
    return removed + fail_unregistered()


def fail_unregistered() -> int:
    """Delete the bytes of completed uploads whose register job ended without running
    :func:`register_upload` (cancelled, failed by the reaper, or deleted): else they stay stored for
    good, outside the unfinished-upload quota. The row stays, ``failed`` with the reason."""
    from jobs.models import Job

    left = Upload.objects.filter(Q(job__isnull=True) | Q(job__state__in=[Job.State.FAILED, Job.State.CANCELLED]),
                                 state=Upload.State.REGISTERING).select_related("job")
    failed = 0
    for upload in left.iterator():
        if _is_a_file(upload):
            continue  # registered before its job was ended: the bytes are the file's
        try:
            store.discard(upload)
        except Exception:  # noqa: BLE001 - try again at the next round
            logger.exception("upload %s: could not delete the bytes of its ended register job", upload.pk)
            continue
        ended = upload.job.state if upload.job else "deleted"
        failed += Upload.objects.filter(pk=upload.pk, state=Upload.State.REGISTERING).update(
            state=Upload.State.FAILED, error=f"the register job was {ended} before it registered the upload; "
                                             f"its bytes were removed: upload it again", updated_at=timezone.now())
    return failed


def _is_a_file(upload: Upload) -> bool:
    """A file was registered from the upload's bytes (local files are registered by their resolved path)."""
    from media_api.models import MediaFile

    target = store.registration_target(upload)
    paths = {target} if target.startswith("s3://") else {target, str(Path(target).resolve())}
    return MediaFile.objects.filter(path__in=paths).exists()


# --------------------------------------------------------------------------- reporting


def serialize(upload: Upload) -> dict[str, Any]:
    job = upload.job
    return {
        "id": upload.pk.hex,
        "url": f"/api/v1/uploads/{upload.pk.hex}",
        "filename": upload.filename,
        "length": upload.length,
        "offset": upload.offset,
        "state": upload.state,
        "storage": upload.storage,
        "file_uuid": upload.file_uuid or None,
        "job": None if job is None else {"id": job.pk.hex, "state": job.state, "url": f"/api/v1/jobs/{job.pk.hex}",
                                         "error": job.error or None},
        "error": upload.error or None,
        "expires_at": upload.expires_at.isoformat() if upload.state == Upload.State.UPLOADING else None,
        "created_at": upload.created_at.isoformat(),
    }
