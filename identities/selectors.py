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
from momentry.errors import not_found


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
        raise not_found("identity", identity_uuid=identity_uuid)
    return identity


#: Identities with an alias (a string in the ``metadata.aliases`` array) LIKE the parameter, per database.
#: Each alias is matched as the text it is, never the JSON that stores it: the array's JSON text
#: would let ``"``, ``[``, ``,`` or ``\\`` match its syntax and escapes rather than any alias.
_ALIAS_SQL = {
    "postgresql": "SELECT i.id FROM {table} i CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN "
                  "jsonb_typeof(i.metadata -> 'aliases') = 'array' THEN i.metadata -> 'aliases' ELSE '[]' END) a "
                  "WHERE jsonb_typeof(a) = 'string' AND (a #>> '{{}}') ILIKE %s ESCAPE '\\'",
    # SQLite's LIKE folds ASCII case only.
    "sqlite": "SELECT i.id FROM {table} i, json_each(i.metadata, '$.aliases') a "
              "WHERE json_type(i.metadata, '$.aliases') = 'array' AND a.type = 'text' AND a.value LIKE %s ESCAPE '\\'",
}


def _alias_match(term: str) -> Q:
    """Any alias contains ``term`` (case-insensitively), compared as text."""
    pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    sql = _ALIAS_SQL[connection.vendor].format(table=Identity._meta.db_table)
    return Q(pk__in=RawSQL(sql, [pattern]))


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
