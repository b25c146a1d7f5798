"""Read queries for files, traces and detections, scoped to the caller."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from momentry.errors import NotFound
from media_api.models import MediaFile


def files_visible_to(request: HttpRequest) -> QuerySet[MediaFile]:
    """Files the caller may see (the Auth issue narrows this by scope)."""
    return MediaFile.objects.all()


def file_for_request(request: HttpRequest, file_uuid: str) -> MediaFile:
    """The file, or the same 404 for unknown and out-of-scope files (no existence leak)."""
    media_file = files_visible_to(request).filter(file_uuid=str(file_uuid).lower()).first()
    if media_file is None:
        raise NotFound("File not found.", {"file_uuid": str(file_uuid)})
    return media_file


def files_with_counts(queryset: QuerySet[MediaFile]) -> QuerySet[MediaFile]:
    return queryset.annotate(
        trace_count=Count("traces", distinct=True),
        identity_count=Count("traces__identity", distinct=True, filter=Q(traces__identity__isnull=False)),
    )
