"""Keeping trace summaries right whenever detections change.

Everything that writes or deletes detections calls :func:`refresh_trace_summaries` for the
traces it touched (there are no model signals: deleting a file must stay a fast cascade), so
this is the one place where every field derived from detections is recomputed — the summary
columns and the trace's presence (:mod:`media_api.services.presence`).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Avg, Count, F, IntegerField, Max, Min, OuterRef, Subquery
from django.db.models.functions import Coalesce

from media_api.models import Detection, Trace
from media_api.services.presence import refresh_presence


def _per_trace(aggregate):
    return Subquery(
        Detection.objects.filter(trace_id=OuterRef("pk"))
        .order_by()
        .values("trace_id")
        .annotate(value=aggregate)
        .values("value")[:1]
    )


def refresh_trace_summaries(trace_pks: Iterable[int]) -> int:
    """Recompute face_count/start/end/avg_confidence and presence, and bump the version.

    The summaries are one UPDATE per 5 000 traces; presence is one query returning the runs
    of consecutive frames of up to 2 000 traces, then one batched UPDATE. Bumping
    ``detections_version`` makes the cached representative face stale, so it is recomputed
    on next use. Returns the number of traces updated.
    """
    pks = list(trace_pks)
    if not pks:
        return 0
    updated = 0
    for start in range(0, len(pks), 5000):
        updated += Trace.objects.filter(pk__in=pks[start : start + 5000]).update(
            face_count=Coalesce(_per_trace(Count("id")), 0, output_field=IntegerField()),
            start_frame=_per_trace(Min("frame_number")),
            end_frame=_per_trace(Max("frame_number")),
            avg_confidence=_per_trace(Avg("confidence")),
            detections_version=F("detections_version") + 1,
        )
    refresh_presence(pks)
    return updated
