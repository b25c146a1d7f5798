"""Registering video files and loading their frame index."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from django.db import IntegrityError, transaction

from media_api.ffmpeg.index import FrameIndexData
from media_api.ffmpeg.probe import ProbeError, probe_video, sha256_of
from media_api.models import FrameIndex, MediaFile

logger = logging.getLogger("media_api.files")

__all__ = ["ProbeError", "RegistrationResult", "register_file", "frame_index_for"]


@dataclass(frozen=True)
class RegistrationResult:
    file: MediaFile
    already_exists: bool


def register_file(path: str | Path) -> RegistrationResult:
    """Probe, hash and index ``path``; the same content always yields the same file_uuid.

    Raises :class:`ProbeError` (and writes nothing) for a missing path, a directory or a
    file that is not a readable video. A file cut off before the end its container declares is
    registered with the frames it has, flagged ``truncated`` with a warning (logged too).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ProbeError(f"no such file: {path}")
    if not path.is_file():
        raise ProbeError(f"not a regular file: {path}")
    file_uuid = sha256_of(path)[:32]
    existing = MediaFile.objects.filter(file_uuid=file_uuid).first()
    if existing is not None:
        _refresh_path(existing, path)
        return RegistrationResult(existing, already_exists=True)

    probe = probe_video(path)
    stat = path.stat()
    try:
        with transaction.atomic():
            media_file = MediaFile.objects.create(
                file_uuid=file_uuid,
                path=str(path.resolve()),
                name=path.name,
                size=stat.st_size,
                mtime=stat.st_mtime,
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
        return RegistrationResult(MediaFile.objects.get(file_uuid=file_uuid), already_exists=True)
    logger.info("registered %s as %s (%d frames)", path, file_uuid, probe.total_frames)
    for warning in probe.warnings:
        # Registered anyway: the frames that are there are served; clients see ``truncated``.
        logger.warning("%s (%s): %s", path, file_uuid, warning)
    return RegistrationResult(media_file, already_exists=False)


def _refresh_path(media_file: MediaFile, path: Path) -> None:
    """Same content found at a new place while the old path is gone: follow it."""
    resolved = str(path.resolve())
    if media_file.path != resolved and not Path(media_file.path).exists():
        media_file.path = resolved
        media_file.save(update_fields=["path"])


@lru_cache(maxsize=256)
def _cached_index(file_id: int, file_uuid: str) -> FrameIndexData:
    row = FrameIndex.objects.get(file_id=file_id)
    return FrameIndexData.from_blobs(row.pts, row.keyframes, Fraction(row.time_base_num, row.time_base_den))


def frame_index_for(media_file: MediaFile) -> FrameIndexData:
    """The file's frame index (cached per process: an index never changes once built)."""
    return _cached_index(media_file.pk, media_file.file_uuid)
