"""Where two identities first appear together in a file: one SQL query over detections.

"Co-occur" (spec §4) = a frame holding a detection of a trace bound to A and one of a trace
bound to B. Two detections can only share a frame where their traces' spans overlap, so the
query first pairs A's traces with B's traces of the file whose ``start_frame..end_frame``
overlap (the ``(file, identity)`` trace index; traces are few). Each trace then contributes
only its detections inside the window covering its overlaps (a range on the
``(trace, frame_number)`` detection index, read once), both sides are marked and grouped by
frame, and frames marked by both are the shared ones. Only detections inside overlapping spans
are read — not every detection of two main characters — and there is no join between the two
sides' detections. The first shared frame comes back with the number of shared frames (a
window count) in a single row of a single statement. No Python loop over detections.
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
        # One window per trace covering all its overlaps: each detection is read at most once.
        "), window_a AS (SELECT a_pk AS pk, a_id AS trace_id, MIN(lo) AS lo, MAX(hi) AS hi FROM pairs"
        "  GROUP BY a_pk, a_id"
        "), window_b AS (SELECT b_pk AS pk, b_id AS trace_id, MIN(lo) AS lo, MAX(hi) AS hi FROM pairs"
        "  GROUP BY b_pk, b_id"
        "), marks AS ("
        "  SELECT d.frame_number AS frame, w.trace_id AS a_id, NULL AS b_id FROM window_a w"
        f"  JOIN {detection} d ON d.trace_id = w.pk AND d.frame_number BETWEEN w.lo AND w.hi"
        "  UNION ALL"
        "  SELECT d.frame_number, NULL, w.trace_id FROM window_b w"
        f"  JOIN {detection} d ON d.trace_id = w.pk AND d.frame_number BETWEEN w.lo AND w.hi"
        ") "
        "SELECT frame, MIN(a_id), MIN(b_id), COUNT(*) OVER () FROM marks GROUP BY frame "
        "HAVING MIN(a_id) IS NOT NULL AND MIN(b_id) IS NOT NULL ORDER BY frame LIMIT 1"
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
