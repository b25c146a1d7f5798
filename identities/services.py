"""Identity business logic shared by the REST API and the admin: create, update, bind,
unbind, merge, delete.

The writes go through :mod:`identities.curation`, so every bind/unbind/merge/delete made
through the API is recorded as a :class:`~identities.models.CurationChange` (what moved,
from where) that the admin can show and undo. Functions raise :mod:`momentry.errors`
exceptions for bad input, which the API turns into 400/404 and the admin can show.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from identities import curation, names
from identities.models import CurationChange, Identity
from media_api.models import MediaFile, Trace
from momentry.errors import BadRequest, Conflict, NotFound

EDITABLE_FIELDS = ("name", "identity_type", "status", "metadata")


def _apply_aliases(metadata: dict[str, Any], aliases: list[str] | None) -> dict[str, Any]:
    if aliases is not None:
        metadata = {**metadata, "aliases": [_clean_name(a, "aliases") for a in aliases if names.normalise(a)]}
    return metadata


def _clean_name(value: Any, param: str = "name") -> str:
    """The normalised name (:mod:`identities.names`), or a 400 naming the parameter."""
    try:
        return names.clean(value)
    except names.InvalidName as exc:
        raise BadRequest(str(exc), param=param) from exc


def namesake(name: str, exclude_pk: int | None = None) -> Identity | None:
    """An active person whose name is the same once normalised and case-folded (:func:`names.key`), if any."""
    qs = Identity.objects.filter(name_key=names.key(name), merged_into__isnull=True).exclude(
        status=Identity.Status.INACTIVE)
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    return qs.order_by("pk").first()


def refuse_duplicate_name(name: str, exclude_pk: int | None = None) -> None:
    """409 naming the person who already has this name (``allow_duplicate`` skips the check)."""
    existing = namesake(name, exclude_pk)
    if existing is not None:
        raise Conflict(
            f"{existing.name} already exists; bind to them, or send allow_duplicate: true if this is someone else.",
            {"existing": {"identity_uuid": existing.identity_uuid, "name": existing.name}},
        )


def create_identity(name: str, identity_type: str | None = Identity.IdentityType.PEOPLE,
                    status: str = Identity.Status.CONFIRMED, metadata: dict[str, Any] | None = None,
                    aliases: list[str] | None = None, allow_duplicate: bool = False) -> Identity:
    """A user-defined identity (``source=user_defined``); a second person of the same name only when asked."""
    name = _clean_name(name)
    if not allow_duplicate:
        refuse_duplicate_name(name)
    return Identity.objects.create(
        name=name, identity_type=identity_type, status=status,
        metadata=_apply_aliases(dict(metadata or {}), aliases), source=Identity.Source.USER_DEFINED,
    )


def update_identity(identity: Identity, changes: Mapping[str, Any], allow_duplicate: bool = False) -> Identity:
    """Rename / change type, status, metadata; ``aliases`` replaces ``metadata.aliases``."""
    if "name" in changes:
        changes = {**changes, "name": _clean_name(changes["name"])}
    renamed = "name" in changes and names.key(changes["name"]) != names.key(identity.name)
    if renamed and not allow_duplicate:
        refuse_duplicate_name(changes["name"], exclude_pk=identity.pk)
    fields = [name for name in EDITABLE_FIELDS if name in changes]
    for name in fields:
        value = changes[name]
        setattr(identity, name, value)
    if "aliases" in changes:
        identity.metadata = _apply_aliases(dict(identity.metadata or {}), changes["aliases"])
        fields.append("metadata")
    if fields:
        identity.save(update_fields=sorted(set(fields)) + ["updated_at"])
    return identity


def _traces_of(media_file: MediaFile, trace_ids: Iterable[int]) -> list[tuple[int, int, int | None]]:
    """(pk, trace_id, identity_id) of the given traces; 404 naming any that do not exist."""
    wanted = sorted(set(trace_ids))
    rows = list(Trace.objects.filter(file=media_file, trace_id__in=wanted).values_list("pk", "trace_id", "identity_id"))
    missing = sorted(set(wanted) - {trace_id for _, trace_id, _ in rows})
    if missing:
        raise NotFound("Trace not found.", {"file_uuid": media_file.file_uuid, "trace_ids": missing})
    return rows


@dataclass(frozen=True)
class BindResult:
    rows_affected: int  # traces matched (now bound / unbound), like an SQL UPDATE's row count
    changed: int  # traces whose identity actually changed
    change: CurationChange | None


FileTraces = Sequence[tuple[MediaFile, Iterable[int]]]  # (file, trace_ids of it), for a bind across files


def _traces_of_files(traces: FileTraces) -> list[tuple[int, int, int | None]]:
    """:func:`_traces_of` for every file; the first unknown trace is the 404."""
    return [row for media_file, trace_ids in traces for row in _traces_of(media_file, trace_ids)]


@transaction.atomic
def bind_traces(identity: Identity, media_file: MediaFile, trace_ids: Iterable[int], user=None) -> BindResult:
    """Bind traces of ``media_file`` to ``identity`` (taking them from any other identity)."""
    return bind_traces_of_files(identity, [(media_file, trace_ids)], user)


@transaction.atomic
def bind_traces_of_files(identity: Identity, traces: FileTraces, user=None) -> BindResult:
    """Bind traces of several files at once: all or nothing, one recorded change (so one undo).

    The same write as the cast page's "select many, name once" (:func:`curation.bind_traces`).
    """
    curation.refuse_merged(identity)
    rows = _traces_of_files(traces)
    changed = sum(1 for _, _, identity_id in rows if identity_id != identity.pk)
    change = curation.bind_traces(identity, [pk for pk, _, _ in rows], user) if changed else None
    return BindResult(rows_affected=len(rows), changed=changed, change=change)


@transaction.atomic
def unbind_traces(identity: Identity, media_file: MediaFile, trace_ids: Iterable[int], user=None) -> BindResult:
    """Unbind the given traces if they are bound to ``identity`` (others are left alone)."""
    return unbind_traces_of_files(identity, [(media_file, trace_ids)], user)


@transaction.atomic
def unbind_traces_of_files(identity: Identity, traces: FileTraces, user=None) -> BindResult:
    """Unbind traces of several files if they are bound to ``identity``: one recorded change."""
    rows = _traces_of_files(traces)
    pks = [pk for pk, _, identity_id in rows if identity_id == identity.pk]
    changes = curation.unbind_traces(pks, user) if pks else []
    return BindResult(rows_affected=len(pks), changed=len(pks), change=changes[0] if changes else None)


@dataclass(frozen=True)
class MergeResult:
    target: Identity
    sources: list[Identity]
    moved: dict[str, list[int]] = field(default_factory=dict)  # source identity_uuid -> trace pks moved
    change: CurationChange | None = None

    @property
    def traces_moved(self) -> int:
        return sum(len(pks) for pks in self.moved.values())


def merge_identities(target: Identity, source_uuids: Iterable[str], user=None) -> MergeResult:
    """Move every trace of the sources to ``target``; sources become inactive/merged.

    One transaction (rows locked on PostgreSQL). The returned :class:`MergeResult` and the
    recorded change hold the trace pks moved per source, which is what an undo needs.
    """
    uuids = list(dict.fromkeys(str(u) for u in source_uuids))
    if not uuids:
        raise BadRequest("from must list at least one identity_uuid", param="from")
    if target.identity_uuid in uuids:
        raise BadRequest("an identity cannot be merged into itself", param="from", identity_uuid=target.identity_uuid)
    with transaction.atomic():
        locked = {
            i.identity_uuid: i
            for i in Identity.objects.select_for_update().filter(identity_uuid__in=[*uuids, target.identity_uuid])
        }
        missing = [u for u in uuids if u not in locked]
        if missing:
            raise NotFound("Identity not found.", {"identity_uuids": missing})
        target = locked[target.identity_uuid] if target.identity_uuid in locked else target
        if target.merged_into_id is not None:
            raise BadRequest("the target was itself merged into another identity", param="identity_uuid")
        sources = [locked[u] for u in uuids]
        change = curation.merge_identities(target, sources, user)
    by_pk = {str(s.pk): s.identity_uuid for s in sources}
    moved = {s.identity_uuid: [] for s in sources}
    for identity_pk, pks in change.payload["moved"].items():
        moved[by_pk[identity_pk]] = pks
    for source in sources:
        source.refresh_from_db()
    return MergeResult(target=target, sources=sources, moved=moved, change=change)


def delete_identity(identity: Identity, user=None) -> int:
    """Delete ``identity`` (recorded for undo); returns how many traces became unbound."""
    change = curation.delete_identity(identity, user)
    return len(change.payload["traces"])
