"""Read queries for files, traces and detections, scoped to the caller.

Scope is applied inside the SQL (``EXISTS`` sub-queries), so checking it costs no extra
query and a list never loads files the caller may not see.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest

from media_api.models import MediaFile, Trace
from momentry.auth import authenticate_request
from momentry.errors import not_found
from momentry.models import APIKey, UserScope


def scope_filter(user: Any, auth: Any, file_field: str = "pk") -> Q:
    """A ``Q`` limiting rows whose ``file_field`` is a MediaFile pk to the caller's scope."""
    q = Q()
    user_id = getattr(user, "pk", None)
    if user_id is not None:
        scoped_user = UserScope.objects.filter(user_id=user_id)
        in_user_scope = UserScope.files.through.objects.filter(
            userscope__user_id=user_id, mediafile_id=OuterRef(file_field)
        )
        q &= ~Exists(scoped_user) | Exists(in_user_scope)
    if isinstance(auth, APIKey) and auth.limit_to_files:
        q &= Exists(APIKey.files.through.objects.filter(apikey_id=auth.pk, mediafile_id=OuterRef(file_field)))
    return q


def is_scoped(user: Any, auth: Any) -> bool:
    """True when the caller sees only some files (a limited key, or a user with a file scope)."""
    if isinstance(auth, APIKey) and auth.limit_to_files:
        return True
    user_id = getattr(user, "pk", None)
    return user_id is not None and UserScope.objects.filter(user_id=user_id).exists()


def caller_scope(request: HttpRequest) -> Q:
    user, auth = authenticate_request(request)
    return scope_filter(user, auth)


def files_visible_to(request: HttpRequest) -> QuerySet[MediaFile]:
    """Files the caller may see: all, or those in the key's and the user's scope."""
    return MediaFile.objects.filter(caller_scope(request))


def file_for_request(request: HttpRequest, file_uuid: str) -> MediaFile:
    """The file, or the same 404 for unknown and out-of-scope files (no existence leak)."""
    media_file = files_visible_to(request).filter(file_uuid=str(file_uuid).lower()).first()
    if media_file is None:
        raise not_found("file", file_uuid=file_uuid)
    return media_file


def _trace_count(**filters: Any) -> Subquery:
    return Coalesce(
        Subquery(
            Trace.objects.filter(file_id=OuterRef("pk"), **filters)
            .order_by()
            .values("file_id")
            .annotate(n=Count("pk"))
            .values("n")[:1]
        ),
        0,
        output_field=IntegerField(),
    )


def _identity_count() -> Subquery:
    return Coalesce(
        Subquery(
            Trace.objects.filter(file_id=OuterRef("pk"), identity__isnull=False)
            .order_by()
            .values("file_id")
            .annotate(n=Count("identity_id", distinct=True))
            .values("n")[:1]
        ),
        0,
        output_field=IntegerField(),
    )


def files_with_counts(queryset: QuerySet[MediaFile]) -> QuerySet[MediaFile]:
    """Trace and identity counts as correlated sub-queries (one per file row, indexed)."""
    return queryset.annotate(trace_count=_trace_count(), identity_count=_identity_count())


# --- Detections of a file in bulk (GET /file/{uuid}/detections) ---------------------------------

#: The columns a bulk detection row is made of, in this order (media_api.services.bulk_detections).
DETECTION_ROW = ("pk", "frame_number", "trace_id", "x", "y", "width", "height", "confidence", "label", "origin")


def file_detections(file_pk: int, start_frame: int | None = None, end_frame: int | None = None,
                    trace_pk: int | None = None) -> QuerySet:
    """A file's detection rows (:data:`DETECTION_ROW`, ``trace_id`` being the trace's pk) in (frame, id) order.

    (frame_number, id) is the order both indexes give: ``det_file_frame`` (file, frame_number)
    for a file or a frame range, ``det_trace_frame`` (trace, frame_number) for one trace. SQLite
    keeps the rowid (= id) as the last key of every index; PostgreSQL adds an incremental sort of
    the few boxes of one frame. So pages and the NDJSON stream read the index in order, without
    sorting the file.
    """
    from media_api.models import Detection

    queryset = Detection.objects.filter(file_id=file_pk)
    if trace_pk is not None:
        queryset = queryset.filter(trace_id=trace_pk)
    if start_frame is not None:
        queryset = queryset.filter(frame_number__gte=start_frame)
    if end_frame is not None:
        queryset = queryset.filter(frame_number__lte=end_frame)
    return queryset.order_by("frame_number", "pk").values_list(*DETECTION_ROW)


def detections_after(queryset: QuerySet, frame_number: int, pk: int) -> QuerySet:
    """The rows after (frame_number, pk) in :func:`file_detections`'s order: a keyset page's start.

    Written as ``frame >= f AND (frame > f OR id > pk)`` rather than a row comparison so that
    both databases bound the index range on the frame (a bare OR would scan from the file's start).
    """
    return queryset.filter(Q(frame_number__gte=frame_number) & (Q(frame_number__gt=frame_number) | Q(pk__gt=pk)))


def trace_ids_by_pk(file_pk: int, trace_pks: set[int] | None = None) -> dict[int, int]:
    """``{trace pk: trace_id}`` of the file's traces (or only of ``trace_pks``): rows name traces by trace_id."""
    queryset = Trace.objects.filter(file_id=file_pk)
    if trace_pks is not None:
        queryset = queryset.filter(pk__in=trace_pks)
    return dict(queryset.order_by().values_list("pk", "trace_id").iterator(chunk_size=20000))
