"""Registering video files and loading their frame index."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from django.db import IntegrityError, transaction

from media_api.ffmpeg.index import FrameIndexData
from media_api.ffmpeg.probe import ProbeError, ProbeResult, probe_video, sha256_of
from media_api.models import FrameIndex, MediaFile

logger = logging.getLogger("media_api.files")

__all__ = ["ProbeError", "RegistrationResult", "frame_index_for", "object_to_register", "register_file",
           "register_object"]


@dataclass(frozen=True)
class RegistrationResult:
    file: MediaFile
    already_exists: bool


def register_file(path: str | Path, *, owned: bool = False) -> RegistrationResult:
    """Probe, hash and index ``path``; the same content always yields the same file_uuid.

    Raises :class:`ProbeError` (and writes nothing) for a missing path, a directory or a
    file that is not a readable video. A file cut off before the end its container declares is
    registered with the frames it has, flagged ``truncated`` with a warning (logged too).
    ``owned``: the service stored this file itself (an upload): deleting the file deletes it, a
    copy of content already registered is removed, and so is a file that is not a video.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ProbeError(f"no such file: {path}")
    if not path.is_file():
        raise ProbeError(f"not a regular file: {path}")
    source = Source("local", str(path.resolve()), path.name, owned)
    file_uuid = sha256_of(path)[:32]
    existing = MediaFile.objects.filter(file_uuid=file_uuid).first()
    if existing is not None:
        _refresh_source(existing, source)
        return RegistrationResult(existing, already_exists=True)
    try:
        probe = probe_video(path)
    except ProbeError:
        _discard_if_owned(source)
        raise
    stat = path.stat()
    return _create(file_uuid, source, probe, stat.st_size, stat.st_mtime)


def register_object(url: str, *, owned: bool = False) -> RegistrationResult:
    """Register the object ``s3://bucket/key`` in place: hashed by one streamed read, probed by ranged reads.

    The bytes stay in the store; every host opens them through a presigned URL
    (:func:`media_api.ffmpeg.source.media_input`). Raises :class:`ProbeError` for a bad URL, a bucket
    not configured (``MOMENTRY_STORAGE_URL``'s or ``MOMENTRY_S3_REGISTER_BUCKETS``), a missing object
    or one that is not a video FFmpeg can read; ``owned`` as in :func:`register_file`.
    """
    from media_api.storage import objects

    try:
        ref = objects.parse_object_url(url)
        objects.check_registrable(ref)
        info = objects.head(ref)
        source = Source("s3", ref.url, ref.name, owned)
        file_uuid = objects.sha256_of_object(ref)[:32]
    except objects.ObjectError as exc:
        raise ProbeError(str(exc)) from None
    existing = MediaFile.objects.filter(file_uuid=file_uuid).first()
    if existing is not None:
        _refresh_source(existing, source)
        return RegistrationResult(existing, already_exists=True)
    try:
        probe = probe_video(ref.url, name=ref.name)
    except ProbeError:
        _discard_if_owned(source)
        raise
    return _create(file_uuid, source, probe, info.size, info.mtime)


@dataclass(frozen=True)
class Source:
    """Where a file's bytes are: ``storage`` "local" (``path`` a real path) or "s3" (``path`` s3://bucket/key)."""

    storage: str
    path: str
    name: str
    owned: bool


def _create(file_uuid: str, source: Source, probe: ProbeResult, size: int, mtime: float) -> RegistrationResult:
    try:
        with transaction.atomic():
            media_file = MediaFile.objects.create(
                file_uuid=file_uuid,
                path=source.path,
                storage=source.storage,
                owned=source.owned,
                name=source.name[:255],
                size=size,
                mtime=mtime,
                container=probe.container,
                video_codec=probe.video_codec,
                width=probe.width,
                height=probe.height,
                fps_num=probe.fps.numerator,
                fps_den=probe.fps.denominator,
                fps=float(probe.fps),
                total_frames=probe.total_frames,
                duration=probe.duration,
                has_audio=probe.has_audio,
                audio_codec=probe.audio_codec,
                truncated=probe.truncated,
                warnings=list(probe.warnings),
            )
            FrameIndex.objects.create(
                file=media_file,
                stream_index=probe.stream_index,
                time_base_num=probe.index.time_base.numerator,
                time_base_den=probe.index.time_base.denominator,
                pts=probe.index.pts_blob(),
                keyframes=probe.index.keyframes_blob(),
            )
    except IntegrityError:
        # Registered concurrently by another process: same content, same uuid.
        existing = MediaFile.objects.get(file_uuid=file_uuid)
        _refresh_source(existing, source)
        return RegistrationResult(existing, already_exists=True)
    logger.info("registered %s as %s (%d frames)", source.path, file_uuid, probe.total_frames)
    for warning in probe.warnings:
        # Registered anyway: the frames that are there are served; clients see ``truncated``.
        logger.warning("%s (%s): %s", source.path, file_uuid, warning)
    return RegistrationResult(media_file, already_exists=False)


def _refresh_source(media_file: MediaFile, source: Source) -> None:
    """Same content found at another place.

    While the registered place still holds the bytes it stays the file's source, and an owned new copy
    (an upload of a video already there) is removed: one copy is kept. When the old place is gone, the
    file follows the new one (and owns it if the service stored it).
    """
    if (media_file.storage, media_file.path) == (source.storage, source.path):
        return
    if source_exists(media_file):
        _discard_if_owned(source)
        return
    media_file.storage, media_file.path, media_file.owned = source.storage, source.path, source.owned
    media_file.save(update_fields=["storage", "path", "owned"])


def source_exists(media_file: MediaFile) -> bool:
    """Whether the file's bytes are still where it was registered (a store error counts as there)."""
    if media_file.storage != "s3":
        return Path(media_file.path).exists()
    from media_api.storage import objects

    try:
        objects.head(objects.parse_object_url(media_file.path))
    except objects.ObjectError as exc:
        return not exc.missing
    return True


def _discard_if_owned(source: Source) -> None:
    """Remove bytes the service stored itself and will not keep (a duplicate upload, not a video)."""
    if not source.owned:
        return
    from media_api.storage.lifecycle import delete_source

    delete_source(source.storage, source.path)


@lru_cache(maxsize=256)
def _cached_index(file_id: int, file_uuid: str) -> FrameIndexData:
    row = FrameIndex.objects.get(file_id=file_id)
    return FrameIndexData.from_blobs(row.pts, row.keyframes, Fraction(row.time_base_num, row.time_base_den))


def frame_index_for(media_file: MediaFile) -> FrameIndexData:
    """The file's frame index (cached per process: an index never changes once built)."""
    return _cached_index(media_file.pk, media_file.file_uuid)


def object_to_register(raw: str) -> str:
    """The canonical ``s3://bucket/key`` of an object ``POST /files {"url"}`` may register (checked now).

    400 for a malformed URL, a bucket not configured (the storage bucket or
    ``MOMENTRY_S3_REGISTER_BUCKETS``; like a path outside the media roots) or a missing object;
    503 when the store does not answer. One HeadObject; the job then hashes and probes it.
    """
    from media_api.storage import objects
    from momentry.errors import BadRequest, Unavailable

    try:
        ref = objects.parse_object_url(raw)
        objects.check_registrable(ref)
        objects.head(ref)
    except objects.ObjectError as exc:
        if exc.missing or exc.forbidden or "url must" in str(exc):
            raise BadRequest(f"url: {exc}.", param="url") from None
        raise Unavailable("The object store did not answer; retry shortly.") from None
    return ref.url
