"""``--queue`` for the management commands: submit jobs instead of running the work here."""

from __future__ import annotations

from collections.abc import Iterable

from jobs import services
from jobs.models import Job


def check_known_files(file_uuids: Iterable[str]) -> None:
    """``--file`` of a command: every uuid names a registered file (one query), else a CommandError naming the rest."""
    from django.core.management import CommandError

    from media_api.models import MediaFile

    wanted = [u.lower() for u in file_uuids]
    known = set(MediaFile.objects.filter(file_uuid__in=wanted).values_list("file_uuid", flat=True))
    unknown = [u for u, w in zip(file_uuids, wanted, strict=True) if w not in known]
    if unknown:
        raise CommandError(f"unknown file_uuid: {', '.join(unknown)}")


def queue_all(kind: str, *, files: Iterable = (None,), params: dict | None = None, write=print) -> list[Job]:
    """Submit one job per file (or one without a file) and print a line for each."""
    jobs = []
    for media_file in files:
        job, created = services.submit(kind, file=media_file, params=params or {})
        subject = f" {media_file.file_uuid}" if media_file is not None else ""
        write(f"{'queued' if created else 'already queued'}: {kind}{subject} job {job.pk.hex} "
              f"(GET /api/v1/jobs/{job.pk.hex})")
        jobs.append(job)
    return jobs
