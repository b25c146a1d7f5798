"""The face that shows a person ("feature face", as Immich's feature photo).

A curator picks any of the person's traces (the identity admin page's **Use as face**, or
``PUT /api/v1/identity/{uuid}/face``); without a choice it is their trace with the most faces.
The choice is a curation change (undoable on the person's page). The 320x320 picture is the
trace's own thumbnail (:mod:`media_api.services.representative`), so it is cached and carries the
same ``ETag`` — choosing another face changes the ETag, and clients fetch it again.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from identities.models import CurationChange, Identity
from media_api.models import Trace
from momentry.errors import Conflict
from momentry.text import count


def face_trace(identity: Identity, scope: Q | None = None) -> Trace | None:
    """The chosen face if it is still theirs and in ``scope`` (a filter on ``file_id``), else their biggest trace."""
    traces = Trace.objects.select_related("file").filter(identity=identity, ignored=False)
    if scope is not None:
        traces = traces.filter(scope)
    if identity.feature_trace_id is not None:
        chosen = traces.filter(pk=identity.feature_trace_id).first()
        if chosen is not None:
            return chosen
    return traces.order_by("-face_count", "pk").first()


@transaction.atomic
def choose_face(identity: Identity, trace: Trace, user=None) -> CurationChange:
    """Make ``trace`` (one of the person's traces) their face; recorded, undoable."""
    if trace.identity_id != identity.pk:
        raise Conflict(f"Trace {trace.trace_id} is not bound to {identity.name}: bind it first, then choose it "
                       "as their face.", {"identity_uuid": identity.identity_uuid, "trace_id": trace.trace_id})
    previous = identity.feature_trace_id
    Identity.objects.filter(pk=identity.pk).update(feature_trace=trace)
    identity.feature_trace = trace
    return CurationChange.objects.create(
        kind=CurationChange.Kind.FACE, identity_uuid=identity.identity_uuid,
        summary=f"Face of {identity.name}: trace {trace.trace_id} of {trace.file.name} "
                f"({count(trace.face_count, 'face')})",
        payload={"identity_id": identity.pk, "trace": trace.pk, "previous": previous},
        user=user if getattr(user, "is_authenticated", False) else None,
    )
