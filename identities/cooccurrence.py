"""Where two identities first appear together in a file: one SQL query over detections.

"Co-occur" (spec §4) = a frame holding a detection of a trace bound to A and one of a trace
bound to B. The query reads each identity's detections of the file through the
``(identity, file)`` trace index and the ``(trace, frame_number)`` detection index,
reduces each side to its distinct frames, joins the two on the frame number and returns the
first shared frame together with the number of shared frames (a window count, so the
answer is a single row from a single statement) — no Python loop over detections.
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
    side = (
        f"SELECT d.frame_number AS frame, MIN(t.trace_id) AS trace_id "  # noqa: S608 - our table names
        f"FROM {trace} t JOIN {detection} d ON d.trace_id = t.id "
        "WHERE t.identity_id = %s AND t.file_id = %s GROUP BY d.frame_number"
    )
    return (
        f"WITH a AS ({side}), b AS ({side}) "
        "SELECT a.frame, a.trace_id, b.trace_id, COUNT(*) OVER () "
        "FROM a JOIN b ON a.frame = b.frame ORDER BY a.frame LIMIT 1"
    )


def first_cooccurrence(file_pk: int, identity_a_pk: int, identity_b_pk: int) -> FirstCooccurrence | None:
    """The first frame where both identities have a detection in the file, or None if never."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(), [identity_a_pk, file_pk, identity_b_pk, file_pk])
        row = cursor.fetchone()
    if row is None:
        return None
    frame, trace_a, trace_b, total = row
    return FirstCooccurrence(int(frame), int(trace_a), int(trace_b), int(total))


__all__ = ["FirstCooccurrence", "first_cooccurrence"]
