"""Read queries for identities: search, counts (within the caller's file scope), files."""

from __future__ import annotations

from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from identities.models import Identity
from media_api.models import MediaFile, Trace
from momentry.errors import NotFound


def identity_by_uuid(identity_uuid: str) -> Identity:
    identity = Identity.objects.select_related("merged_into").filter(identity_uuid=identity_uuid).first()
    if identity is None:
        raise NotFound("Identity not found.", {"identity_uuid": identity_uuid})
    return identity


def search(queryset: QuerySet[Identity], term: str) -> QuerySet[Identity]:
    """Name or alias contains ``term`` (case-insensitive) — a JSON key lookup on SQLite and PostgreSQL."""
    term = term.strip()
    if not term:
        return queryset
    return queryset.filter(Q(name__icontains=term) | Q(metadata__aliases__icontains=term))


def _count(traces: QuerySet[Trace], field: str) -> Coalesce:
    return Coalesce(
        Subquery(
            traces.filter(identity_id=OuterRef("pk"))
            .order_by()
            .values("identity_id")
            .annotate(n=Count(field, distinct=field != "pk"))
            .values("n")[:1]
        ),
        0,
        output_field=IntegerField(),
    )


def with_counts(queryset: QuerySet[Identity], file_scope: Q) -> QuerySet[Identity]:
    """``trace_count`` and ``file_count`` per identity, counting only files in scope.

    ``file_scope`` is :func:`media_api.selectors.scope_filter` built for ``file_id``.
    Correlated sub-queries on the (identity, file) index: no N+1, no join fan-out.
    """
    traces = Trace.objects.filter(file_scope)
    return queryset.select_related("merged_into").annotate(
        trace_count=_count(traces, "pk"), file_count=_count(traces, "file_id")
    )


def files_of(identity: Identity, visible_files: QuerySet[MediaFile]) -> QuerySet[MediaFile]:
    """Visible files where ``identity`` has traces, with its trace count in each."""
    bound = Trace.objects.filter(identity=identity, file_id=OuterRef("pk"))
    count = Subquery(
        Trace.objects.filter(identity=identity, file_id=OuterRef("pk"))
        .order_by()
        .values("file_id")
        .annotate(n=Count("pk"))
        .values("n")[:1],
        output_field=IntegerField(),
    )
    return visible_files.filter(Exists(bound)).annotate(identity_trace_count=count).order_by("name", "id")
