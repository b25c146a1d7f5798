"""Where two identities first appear together in a file: one SQL query over detections.

"Co-occur" (spec §4) = a frame holding a detection of a trace bound to A and one of a trace
bound to B. Two detections can only share a frame where their traces' spans overlap, so the
query first pairs A's traces with B's traces of the file whose ``start_frame..end_frame``
overlap (the ``(file, identity)`` trace index; traces are few), then, per pair, reads A's
detections inside the overlap (a range on the ``(trace, frame_number)`` detection index) and
probes B's trace for the same frame. Only detections inside overlapping spans are read — not
every detection of two main characters — and the first shared frame comes back with the
number of shared frames (a window count) in a single row of a single statement. No Python
loop over detections.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from media_api.models import Detection, Trace


@dataclass(frozen=True)
class FirstCooccurrence:
    frame_number: int
    trace_id_a: int
    trace_id_b: int
    total_frames: int


def _sql() -> str:
    detection, trace = Detection._meta.db_table, Trace._meta.db_table
    return (
        "WITH pairs AS ("  # noqa: S608 - table names are ours, values are parameters
        "  SELECT ta.id AS a_pk, ta.trace_id AS a_id, tb.id AS b_pk, tb.trace_id AS b_id,"
        "    CASE WHEN ta.start_frame > tb.start_frame THEN ta.start_frame ELSE tb.start_frame END AS lo,"
        "    CASE WHEN ta.end_frame < tb.end_frame THEN ta.end_frame ELSE tb.end_frame END AS hi"
        f"  FROM {trace} ta JOIN {trace} tb ON tb.file_id = ta.file_id"
        "  WHERE ta.file_id = %s AND ta.identity_id = %s AND tb.identity_id = %s"
        "    AND tb.start_frame <= ta.end_frame AND ta.start_frame <= tb.end_frame"
        "), shared AS ("
        "  SELECT da.frame_number AS frame, p.a_id, p.b_id FROM pairs p"
        f"  JOIN {detection} da ON da.trace_id = p.a_pk AND da.frame_number BETWEEN p.lo AND p.hi"
        f"  JOIN {detection} db ON db.trace_id = p.b_pk AND db.frame_number = da.frame_number"
        ") "
        "SELECT frame, MIN(a_id), MIN(b_id), COUNT(*) OVER () FROM shared "
        "GROUP BY frame ORDER BY frame LIMIT 1"
    )


def first_cooccurrence(file_pk: int, identity_a_pk: int, identity_b_pk: int) -> FirstCooccurrence | None:
    """The first frame where both identities have a detection in the file, or None if never."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(), [file_pk, identity_a_pk, identity_b_pk])
        row = cursor.fetchone()
    if row is None:
        return None
    frame, trace_a, trace_b, total = row
    return FirstCooccurrence(int(frame), int(trace_a), int(trace_b), int(total))


__all__ = ["FirstCooccurrence", "first_cooccurrence"]
