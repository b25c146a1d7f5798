"""Staff curation with undo: bulk bind, unbind, create-from-traces, merge, delete, hide/unhide,
"not this person".

Each operation runs in one transaction and records a :class:`CurationChange` holding
exactly what it changed. :func:`undo` puts that back, touching only rows that are still
as the change left them, so a later edit is never clobbered by undoing an earlier one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from identities.models import CurationChange, Identity, NotSamePerson
from media_api.models import Trace
from momentry.errors import Conflict
from momentry.text import count
from webhooks import events as webhook_events
from webhooks import payloads as webhook_payloads


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


def refuse_merged(identity: Identity) -> None:
    """A merged person takes no traces: they would vanish from the survivor (409 naming the survivor)."""
    if identity.merged_into_id is None:
        return
    survivor = Identity.objects.filter(pk=identity.merged_into_id).values("identity_uuid", "name").first() or {}
    raise Conflict(
        f"{identity.name} was merged into {survivor.get('name', 'another person')}; bind the traces to them instead.",
        {"identity_uuid": identity.identity_uuid, "merged_into": survivor},
    )


@transaction.atomic
def bind_traces(identity: Identity, trace_pks: Iterable[int], user=None) -> CurationChange:
    """Bind traces to ``identity``, remembering each trace's previous identity."""
    refuse_merged(identity)
    pks = list(trace_pks)
    previous = list(Trace.objects.filter(pk__in=pks).exclude(identity=identity).values_list("pk", "identity_id"))
    Trace.objects.filter(pk__in=[pk for pk, _ in previous]).update(identity=identity)
    return CurationChange.objects.create(
        kind=CurationChange.Kind.BIND,
        identity_uuid=identity.identity_uuid,
        summary=f"Bound {count(len(previous), 'trace')} to {identity.name}",
        payload={"identity_id": identity.pk, "previous": _group_by_identity(previous)},
        user=_user(user),
    )


@transaction.atomic
def create_identity_from_traces(name: str, trace_pks: Iterable[int], user=None) -> tuple[Identity, CurationChange]:
    """A new person with these traces; undoing the change removes the person again (if nothing else uses them)."""
    identity = Identity.objects.create(name=name, source=Identity.Source.USER_DEFINED)
    change = bind_traces(identity, trace_pks, user)
    change.payload["created_identity"] = True
    change.summary = f"Named {identity.name}: {count(sum(map(len, change.payload['previous'].values())), 'trace')}"
    change.save(update_fields=["payload", "summary"])
    return identity, change


def _remove_if_unused(identity_id: int) -> bool:
    """Delete a person an undone action had created, unless something has used them since.

    Used means: a trace is bound to them, someone was merged into them, or another change on
    their page (a rename is not recorded, so an edited name or metadata counts too).
    """
    identity = Identity.objects.filter(pk=identity_id).first()
    if identity is None or Trace.objects.filter(identity_id=identity_id).exists():
        return False
    edited = identity.updated_at > identity.created_at + timedelta(seconds=1)
    if edited or Identity.objects.filter(merged_into_id=identity_id).exists():
        return False
    if CurationChange.objects.filter(identity_uuid=identity.identity_uuid, undone_at__isnull=True).count() > 1:
        return False
    identity.delete()
    return True


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
            summary=f"Unbound {count(len(pks), 'trace')} from {identity.name}",
            payload={"identity_id": identity.pk, "traces": pks},
            user=_user(user),
        ))
    return changes


@transaction.atomic
def separate(trace: Trace, others: Iterable[int] = (), identity: Identity | None = None,
             user=None) -> CurationChange | None:
    """"Not this person", kept: ``trace`` is not the same person as ``others`` (traces) nor ``identity``.

    Rows of :class:`NotSamePerson` are written for the pairs not already kept apart; a trace in
    ``identity`` (a pending cluster) leaves it. None when nothing new would be recorded.
    """
    wanted = [pk for pk in dict.fromkeys(others) if pk != trace.pk]
    known = {pk for a, b in NotSamePerson.objects.filter(trace=trace, other_id__in=wanted)
             .values_list("trace_id", "other_id") for pk in (a, b)}
    known |= set(NotSamePerson.objects.filter(other=trace, trace_id__in=wanted).values_list("trace_id", flat=True))
    rows = [NotSamePerson(trace=trace, other_id=pk, user=_user(user)) for pk in wanted if pk not in known]
    unbound_from = None
    if identity is not None:
        if not NotSamePerson.objects.filter(trace=trace, identity=identity).exists():
            rows.append(NotSamePerson(trace=trace, identity=identity, user=_user(user)))
        if Trace.objects.filter(pk=trace.pk, identity=identity).update(identity=None):
            unbound_from = identity.pk
    if not rows and unbound_from is None:
        return None
    created = NotSamePerson.objects.bulk_create(rows)
    ids = [row.pk for row in created]
    if any(pk is None for pk in ids):  # backends without RETURNING: read them back
        ids = list(NotSamePerson.objects.filter(trace=trace).order_by("-pk").values_list("pk", flat=True)[:len(rows)])
    target = identity.name if identity is not None else count(len(wanted), "other trace")
    return CurationChange.objects.create(
        kind=CurationChange.Kind.SEPARATE,
        identity_uuid=identity.identity_uuid if identity is not None else "",
        summary=f"Not this person: trace {trace.trace_id} is not {target}",
        payload={"trace": trace.pk, "constraints": ids, "unbound_from": unbound_from},
        user=_user(user),
    )


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
    webhook_events.emit("identity.merged", webhook_payloads.merge(survivor, others, len(moved), user))
    return CurationChange.objects.create(
        kind=CurationChange.Kind.MERGE,
        identity_uuid=survivor.identity_uuid,
        summary=f"Merged {names} into {survivor.name} ({count(len(moved), 'trace')} moved)",
        payload={"identity_id": survivor.pk, "moved": _group_by_identity(moved), "sources": sources},
        user=_user(user),
    )


@transaction.atomic
def delete_identity(identity: Identity, user=None) -> CurationChange:
    """Delete an identity (its traces become unbound), keeping enough to recreate it as it was.

    The snapshot keeps its primary key and dates, so a restored person has the same admin page,
    and who had been merged into it (that link is cleared by the deletion).
    """
    traces = list(Trace.objects.filter(identity=identity).values_list("pk", flat=True))
    snapshot = {
        "id": identity.pk, "identity_uuid": identity.identity_uuid, "name": identity.name,
        "identity_type": identity.identity_type, "source": identity.source, "status": identity.status,
        "metadata": identity.metadata, "merged_into_id": identity.merged_into_id,
        "created_at": identity.created_at.isoformat(), "updated_at": identity.updated_at.isoformat(),
    }
    merged_from = list(Identity.objects.filter(merged_into=identity).values_list("pk", flat=True))
    change = CurationChange.objects.create(
        kind=CurationChange.Kind.DELETE,
        identity_uuid=identity.identity_uuid,
        summary=f"Deleted {identity.name} ({count(len(traces), 'trace')} unbound)",
        payload={"identity": snapshot, "traces": traces, "merged_from": merged_from},
        user=_user(user),
    )
    identity.delete()
    return change


def _set_ignored(trace_pks: Iterable[int], ignored: bool, user) -> CurationChange | None:
    """Flip ``Trace.ignored`` on the traces that are not already so; one change records exactly those."""
    pks = list(Trace.objects.filter(pk__in=list(trace_pks), ignored=not ignored).values_list("pk", flat=True))
    if not pks:
        return None
    Trace.objects.filter(pk__in=pks).update(ignored=ignored)
    what = "Hid" if ignored else "Showed again"
    return CurationChange.objects.create(
        kind=CurationChange.Kind.HIDE if ignored else CurationChange.Kind.UNHIDE,
        identity_uuid="",  # a trace-level change: no person's page shows it
        summary=f"{what} {count(len(pks), 'trace')}" + (" (not a face / hidden)" if ignored else ""),
        payload={"traces": pks},
        user=_user(user),
    )


@transaction.atomic
def hide_traces(trace_pks: Iterable[int], user=None) -> CurationChange | None:
    """"Hide / not a face": the traces are kept but left out of clustering and the cast page.

    None when every trace was already hidden (nothing to record, nothing to undo).
    """
    return _set_ignored(trace_pks, True, user)


@transaction.atomic
def unhide_traces(trace_pks: Iterable[int], user=None) -> CurationChange | None:
    """Undo a hide by hand: the traces are grouped and suggested again. None when none was hidden."""
    return _set_ignored(trace_pks, False, user)


#: How far back an identity's page looks for a change that can still be undone.
RECENT_CHANGES = 20


def can_undo(change: CurationChange) -> bool:
    """Would undoing ``change`` put anything back? (Its traces may have moved on since.)"""
    if change.undone_at is not None:
        return False
    payload = change.payload
    if change.kind == CurationChange.Kind.BIND:
        pks = [pk for group in payload["previous"].values() for pk in group]
        return Trace.objects.filter(pk__in=pks, identity_id=payload["identity_id"]).exists()
    if change.kind == CurationChange.Kind.UNBIND:
        return (Identity.objects.filter(pk=payload["identity_id"], merged_into__isnull=True).exists()
                and Trace.objects.filter(pk__in=payload["traces"], identity__isnull=True).exists())
    if change.kind == CurationChange.Kind.MERGE:
        return Identity.objects.filter(pk=payload["identity_id"]).exists()
    if change.kind == CurationChange.Kind.DELETE:
        return not Identity.objects.filter(identity_uuid=payload["identity"]["identity_uuid"]).exists()
    if change.kind == CurationChange.Kind.FACE:
        return Identity.objects.filter(pk=payload["identity_id"], feature_trace_id=payload["trace"]).exists()
    if change.kind == CurationChange.Kind.SEPARATE:
        return (NotSamePerson.objects.filter(pk__in=payload["constraints"]).exists()
                or (payload.get("unbound_from") is not None
                    and Trace.objects.filter(pk=payload["trace"], identity__isnull=True).exists()))
    if change.kind in (CurationChange.Kind.HIDE, CurationChange.Kind.UNHIDE):
        # Still as the change left them: hidden after a hide, shown after an unhide.
        return Trace.objects.filter(pk__in=payload["traces"], ignored=change.kind == CurationChange.Kind.HIDE).exists()
    return False


def last_undoable_change(identity: Identity) -> CurationChange | None:
    """The newest change shown on ``identity``'s page that would still change something.

    None for a merged person: their traces live on the survivor, whose page undoes the merge.
    """
    if identity.merged_into_id is not None:
        return None
    recent = CurationChange.objects.filter(identity_uuid=identity.identity_uuid, undone_at__isnull=True)
    return next((change for change in recent[:RECENT_CHANGES] if can_undo(change)), None)


@transaction.atomic
def undo(change: CurationChange, user=None) -> str:
    """Revert ``change``; returns a message saying what was restored."""
    change = CurationChange.objects.select_for_update().get(pk=change.pk)
    if change.undone_at is not None:
        raise UndoError("this change was already undone")
    if not can_undo(change):  # nothing would change: keep the entry, say why
        raise UndoError("nothing to undo: what this change touched has been changed since")
    payload = change.payload
    if change.kind == CurationChange.Kind.BIND:
        previous = {int(k) if k else None: v for k, v in payload["previous"].items()}
        restored = _rebind(previous, payload["identity_id"])
        message = f"Undid bind: {count(restored, 'trace')} restored"
        if payload.get("created_identity") and _remove_if_unused(payload["identity_id"]):
            message = f"Undid naming: {count(restored, 'trace')} unnamed again, the new person removed"
    elif change.kind == CurationChange.Kind.UNBIND:
        restored = Trace.objects.filter(pk__in=payload["traces"], identity__isnull=True).update(
            identity_id=payload["identity_id"]
        )
        message = f"Undid unbind: {count(restored, 'trace')} bound again"
    elif change.kind == CurationChange.Kind.MERGE:
        for source in payload["sources"]:
            Identity.objects.filter(pk=source["id"]).update(
                status=source["status"], source=source["source"], merged_into_id=source["merged_into_id"],
                updated_at=timezone.now(),
            )
        moved = {int(k): v for k, v in payload["moved"].items()}
        restored = _rebind(moved, payload["identity_id"])
        message = (f"Undid merge: {count(len(payload['sources']), 'identity', 'identities')} restored, "
                   f"{count(restored, 'trace')} moved back")
    elif change.kind == CurationChange.Kind.DELETE:
        snap = payload["identity"]
        if Identity.objects.filter(identity_uuid=snap["identity_uuid"]).exists():
            raise UndoError("an identity with this uuid exists again")
        identity = _recreate(snap)
        restored = Trace.objects.filter(pk__in=payload["traces"], identity__isnull=True).update(identity=identity)
        Identity.objects.filter(pk__in=payload.get("merged_from", []), merged_into__isnull=True).update(
            merged_into=identity)
        message = f"Undid deletion of {identity.name}: {count(restored, 'trace')} bound again"
    elif change.kind == CurationChange.Kind.FACE:
        Identity.objects.filter(pk=payload["identity_id"], feature_trace_id=payload["trace"]).update(
            feature_trace_id=payload["previous"])
        message = "Undid the choice of face: the previous face shows them again"
    elif change.kind == CurationChange.Kind.SEPARATE:
        NotSamePerson.objects.filter(pk__in=payload["constraints"]).delete()
        back = payload.get("unbound_from")
        if back is not None and Identity.objects.filter(pk=back, merged_into__isnull=True).exists():
            Trace.objects.filter(pk=payload["trace"], identity__isnull=True).update(identity_id=back)
        message = "Undid “not this person”: the face may be grouped with them again"
    elif change.kind in (CurationChange.Kind.HIDE, CurationChange.Kind.UNHIDE):
        hid = change.kind == CurationChange.Kind.HIDE
        restored = Trace.objects.filter(pk__in=payload["traces"], ignored=hid).update(ignored=not hid)
        message = (f"Undid {'hide' if hid else 'unhide'}: {count(restored, 'trace')} "
                   f"{'shown' if hid else 'hidden'} again")
    else:  # pragma: no cover - every kind is handled above
        raise UndoError(f"unknown change kind {change.kind}")
    change.undone_at = timezone.now()
    change.save(update_fields=["undone_at"])
    return message


def _recreate(snap: dict) -> Identity:
    """The deleted identity again: same uuid and, when free, the same primary key and dates."""
    keep_pk = "id" in snap and not Identity.objects.filter(pk=snap["id"]).exists()
    merged_into = snap.get("merged_into_id")
    identity = Identity.objects.create(
        **({"pk": snap["id"]} if keep_pk else {}),
        identity_uuid=snap["identity_uuid"], name=snap["name"], identity_type=snap["identity_type"],
        source=snap["source"], status=snap["status"], metadata=snap["metadata"],
        merged_into_id=merged_into if merged_into and Identity.objects.filter(pk=merged_into).exists() else None,
    )
    dates = {name: parse_datetime(snap[name]) for name in ("created_at", "updated_at") if snap.get(name)}
    if dates:  # auto_now_add/auto_now ignore given values on create
        Identity.objects.filter(pk=identity.pk).update(**dates)
        for name, value in dates.items():
            setattr(identity, name, value)
    return identity
