"""Staff curation with undo: bulk bind, unbind, create-from-traces, merge, delete.

Each operation runs in one transaction and records a :class:`CurationChange` holding
exactly what it changed. :func:`undo` puts that back, touching only rows that are still
as the change left them, so a later edit is never clobbered by undoing an earlier one.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from identities.models import CurationChange, Identity
from media_api.models import Trace


class UndoError(Exception):
    """The change cannot be undone (already undone, or nothing left to restore)."""


def _user(user: AbstractBaseUser | None):
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def _rebind(trace_pks_by_old: dict[int | None, list[int]], expected_identity_id: int | None) -> int:
    """Give traces back their old identity if they still carry ``expected_identity_id``."""
    restored = 0
    for old_identity_id, pks in trace_pks_by_old.items():
        restored += Trace.objects.filter(pk__in=pks, identity_id=expected_identity_id).update(
            identity_id=old_identity_id
        )
    return restored


def _group_by_identity(rows: Iterable[tuple[int, int | None]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for pk, identity_id in rows:
        grouped.setdefault(str(identity_id) if identity_id is not None else "", []).append(pk)
    return grouped


@transaction.atomic
def bind_traces(identity: Identity, trace_pks: Iterable[int], user=None) -> CurationChange:
    """Bind traces to ``identity``, remembering each trace's previous identity."""
    pks = list(trace_pks)
    previous = list(Trace.objects.filter(pk__in=pks).exclude(identity=identity).values_list("pk", "identity_id"))
    Trace.objects.filter(pk__in=[pk for pk, _ in previous]).update(identity=identity)
    return CurationChange.objects.create(
        kind=CurationChange.Kind.BIND,
        identity_uuid=identity.identity_uuid,
        summary=f"Bound {len(previous)} trace(s) to {identity.name}",
        payload={"identity_id": identity.pk, "previous": _group_by_identity(previous)},
        user=_user(user),
    )


@transaction.atomic
def create_identity_from_traces(name: str, trace_pks: Iterable[int], user=None) -> tuple[Identity, CurationChange]:
    identity = Identity.objects.create(name=name.strip(), source=Identity.Source.USER_DEFINED)
    return identity, bind_traces(identity, trace_pks, user)


@transaction.atomic
def unbind_traces(trace_pks: Iterable[int], user=None) -> list[CurationChange]:
    """"Not this person": unbind traces; one undoable change per identity they left."""
    rows = list(Trace.objects.filter(pk__in=list(trace_pks), identity__isnull=False).values_list("pk", "identity_id"))
    changes = []
    by_identity: dict[int, list[int]] = {}
    for pk, identity_id in rows:
        by_identity.setdefault(identity_id, []).append(pk)
    for identity in Identity.objects.filter(pk__in=by_identity):
        pks = by_identity[identity.pk]
        Trace.objects.filter(pk__in=pks).update(identity=None)
        changes.append(CurationChange.objects.create(
            kind=CurationChange.Kind.UNBIND,
            identity_uuid=identity.identity_uuid,
            summary=f"Unbound {len(pks)} trace(s) from {identity.name}",
            payload={"identity_id": identity.pk, "traces": pks},
            user=_user(user),
        ))
    return changes


@transaction.atomic
def merge_identities(survivor: Identity, others: Iterable[Identity], user=None) -> CurationChange:
    """Move every trace of ``others`` to ``survivor``; the others become merged/inactive."""
    others = [o for o in others if o.pk != survivor.pk]
    if not others:
        raise ValueError("nothing to merge: pick at least one identity besides the survivor")
    moved = list(Trace.objects.filter(identity__in=others).values_list("pk", "identity_id"))
    Trace.objects.filter(identity__in=others).update(identity=survivor)
    sources = [
        {"id": o.pk, "status": o.status, "source": o.source, "merged_into_id": o.merged_into_id} for o in others
    ]
    Identity.objects.filter(pk__in=[o.pk for o in others]).update(
        status=Identity.Status.INACTIVE, source=Identity.Source.MERGED, merged_into=survivor,
        updated_at=timezone.now(),
    )
    names = ", ".join(o.name for o in others)
    return CurationChange.objects.create(
        kind=CurationChange.Kind.MERGE,
        identity_uuid=survivor.identity_uuid,
        summary=f"Merged {names} into {survivor.name} ({len(moved)} trace(s) moved)",
        payload={"identity_id": survivor.pk, "moved": _group_by_identity(moved), "sources": sources},
        user=_user(user),
    )


@transaction.atomic
def delete_identity(identity: Identity, user=None) -> CurationChange:
    """Delete an identity (its traces become unbound), keeping enough to recreate it."""
    traces = list(Trace.objects.filter(identity=identity).values_list("pk", flat=True))
    snapshot = {
        "identity_uuid": identity.identity_uuid, "name": identity.name, "identity_type": identity.identity_type,
        "source": identity.source, "status": identity.status, "metadata": identity.metadata,
        "created_at": identity.created_at.isoformat(),
    }
    change = CurationChange.objects.create(
        kind=CurationChange.Kind.DELETE,
        identity_uuid=identity.identity_uuid,
        summary=f"Deleted {identity.name} ({len(traces)} trace(s) unbound)",
        payload={"identity": snapshot, "traces": traces},
        user=_user(user),
    )
    identity.delete()
    return change


def last_undoable_change(identity_uuid: str) -> CurationChange | None:
    return CurationChange.objects.filter(identity_uuid=identity_uuid, undone_at__isnull=True).first()


@transaction.atomic
def undo(change: CurationChange, user=None) -> str:
    """Revert ``change``; returns a message saying what was restored."""
    change = CurationChange.objects.select_for_update().get(pk=change.pk)
    if change.undone_at is not None:
        raise UndoError("this change was already undone")
    payload = change.payload
    if change.kind == CurationChange.Kind.BIND:
        previous = {int(k) if k else None: v for k, v in payload["previous"].items()}
        restored = _rebind(previous, payload["identity_id"])
        message = f"Undid bind: {restored} trace(s) restored"
    elif change.kind == CurationChange.Kind.UNBIND:
        restored = Trace.objects.filter(pk__in=payload["traces"], identity__isnull=True).update(
            identity_id=payload["identity_id"]
        )
        message = f"Undid unbind: {restored} trace(s) bound again"
    elif change.kind == CurationChange.Kind.MERGE:
        for source in payload["sources"]:
            Identity.objects.filter(pk=source["id"]).update(
                status=source["status"], source=source["source"], merged_into_id=source["merged_into_id"],
                updated_at=timezone.now(),
            )
        moved = {int(k): v for k, v in payload["moved"].items()}
        restored = _rebind(moved, payload["identity_id"])
        message = f"Undid merge: {len(payload['sources'])} identit(ies) restored, {restored} trace(s) moved back"
    elif change.kind == CurationChange.Kind.DELETE:
        snap = payload["identity"]
        if Identity.objects.filter(identity_uuid=snap["identity_uuid"]).exists():
            raise UndoError("an identity with this uuid exists again")
        identity = Identity.objects.create(
            identity_uuid=snap["identity_uuid"], name=snap["name"], identity_type=snap["identity_type"],
            source=snap["source"], status=snap["status"], metadata=snap["metadata"],
        )
        restored = Trace.objects.filter(pk__in=payload["traces"], identity__isnull=True).update(identity=identity)
        message = f"Undid deletion of {identity.name}: {restored} trace(s) bound again"
    else:  # pragma: no cover - every kind is handled above
        raise UndoError(f"unknown change kind {change.kind}")
    change.undone_at = timezone.now()
    change.save(update_fields=["undone_at"])
    return message
