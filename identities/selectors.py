"""Read queries for identities: search, counts (within the caller's file scope), files."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce

from identities.models import Identity
from media_api.models import MediaFile, Trace
from media_api.selectors import is_scoped, scope_filter
from momentry.errors import NotFound


def visible_identities(queryset: QuerySet[Identity], user: Any, auth: Any) -> QuerySet[Identity]:
    """Identities a caller may read: all, or for a file-scoped caller those with a trace in scope.

    A scoped caller must not learn who appears in files it cannot see, so an identity whose
    traces all lie outside its scope is hidden (a 404 like an unknown one). Identities with
    no trace anywhere (just created, or merged away) show no file's content and stay visible,
    so a scoped write key can create a person and then bind its own traces to it.
    """
    if not is_scoped(user, auth):
        return queryset
    in_scope = Trace.objects.filter(scope_filter(user, auth, file_field="file_id"), identity_id=OuterRef("pk"))
    anywhere = Trace.objects.filter(identity_id=OuterRef("pk"))
    return queryset.filter(Exists(in_scope) | ~Exists(anywhere))


def identity_by_uuid(identity_uuid: str, user: Any, auth: Any) -> Identity:
    """The identity if the caller may see it, else the same 404 as for an unknown uuid."""
    queryset = Identity.objects.select_related("merged_into").filter(identity_uuid=identity_uuid)
    identity = visible_identities(queryset, user, auth).first()
    if identity is None:
        raise NotFound("Identity not found.", {"identity_uuid": identity_uuid})
    return identity


def _alias_match(term: str) -> Q:
    """Any alias contains ``term``.

    PostgreSQL: the aliases array as jsonb text keeps non-ASCII characters, so ``icontains``
    works. SQLite stores JSON with ``\\uXXXX`` escapes, so the aliases are decoded with
    ``json_each`` first (SQLite's LIKE folds ASCII case only).
    """
    if connection.vendor != "sqlite":
        return Q(metadata__aliases__icontains=term)
    pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    table = Identity._meta.db_table
    matching = RawSQL(
        f"SELECT i.id FROM {table} i, json_each(i.metadata, '$.aliases') a "  # noqa: S608 - table name is ours
        "WHERE a.type = 'text' AND a.value LIKE %s ESCAPE '\\'",
        [pattern],
    )
    return Q(pk__in=matching)


def search(queryset: QuerySet[Identity], term: str) -> QuerySet[Identity]:
    """Name or any alias (``metadata.aliases``) contains ``term``, case-insensitively."""
    term = term.strip()
    if not term:
        return queryset
    return queryset.filter(Q(name__icontains=term) | _alias_match(term))


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
