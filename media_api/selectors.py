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
