"""Deleting a registered file: its rows, its cached images and renders, and the bytes only when the service owns them.

Ownership is the rule that keeps other people's media safe: a file registered from someone else's path
or bucket (``owned`` false) is forgotten, never deleted there; a file the service stored itself (an
upload, ``owned`` true) has its object deleted from the store (or its file unlinked from the local
store directory) too.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from media_api.models import MediaFile
from momentry.errors import Conflict, Unavailable

from .config import storage_config

logger = logging.getLogger("media_api.storage")


class FileBusy(Conflict):
    """A job on the file is queued or running: deleting it under the job would fail the job half-way."""


@dataclass(frozen=True)
class Deleted:
    file_uuid: str
    #: "deleted" (owned bytes removed), "kept" (not owned: left where they are)
    source: str
    cache_dirs: int


def delete_source(storage: str, path: str) -> None:
    """Remove owned bytes: an S3 object, or a file inside the local store directory (nothing else, ever).

    Raises :class:`~momentry.errors.Unavailable` when the store does not answer (then nothing else is
    deleted either, so the call can be repeated).
    """
    if storage == "s3":
        from . import objects

        try:
            objects.delete(objects.parse_object_url(path))
        except objects.ObjectError as exc:
            raise Unavailable(f"The object store could not delete the file's object: {exc}") from None
        return
    target = Path(path)
    roots = {storage_config().local_root.resolve(), (Path(settings.DATA_DIR) / "stored").resolve()}
    if not any(target.resolve().is_relative_to(root) for root in roots):
        # Owned but outside every store directory: refuse rather than unlink something we cannot vouch for.
        logger.warning("owned file %s lies outside the local store; not deleted", path)
        return
    target.unlink(missing_ok=True)


def cache_dirs(file_uuid: str) -> list[Path]:
    """This host's rendered images and clips of the file (every cache root and render version)."""
    base = Path(settings.CACHE_DIR)
    return [p for p in base.glob(f"*/v*/{file_uuid[:2]}/{file_uuid}") if p.is_dir()]


def delete_file(media_file: MediaFile) -> Deleted:
    """Delete ``media_file`` everywhere this service put something (see the module docstring).

    Refuses (409) while a job on the file is queued or running. The owned bytes go first: if the store
    fails, the rows stay and the call can be repeated; the rows (frame index, traces, detections, jobs:
    all cascade) then go in one transaction, and last this host's cache (other hosts' caches age out:
    their entries are keyed by content and unreachable once the file is gone).
    """
    from jobs.models import Job

    active = Job.objects.filter(file=media_file, state__in=Job.ACTIVE).values_list("pk", flat=True).first()
    if active is not None:
        raise FileBusy("A job on this file is queued or running; cancel it or wait for it first.",
                       {"job_id": str(active)})
    if media_file.owned:
        delete_source(media_file.storage, media_file.path)
    with transaction.atomic():
        MediaFile.objects.filter(pk=media_file.pk).delete()
    if media_file.storage == "s3":
        from .reader import forget

        forget(media_file.path)
    dirs = cache_dirs(media_file.file_uuid)
    for folder in dirs:
        shutil.rmtree(folder, ignore_errors=True)
    logger.info("deleted file %s (%s, source %s)", media_file.file_uuid, media_file.path,
                "deleted" if media_file.owned else "kept")
    return Deleted(media_file.file_uuid, "deleted" if media_file.owned else "kept", len(dirs))
