"""When a person is on screen: an identity's intervals per file, from the stored presence of its traces.

Like co-occurrence (:mod:`identities.cooccurrence`) this never reads detections: each trace
stores the frames it covers as a run list (``Trace.presence``, :mod:`media_api.services.presence`),
so a lead of a two-hour film is a few hundred small blobs, decoded with one cumulative sum.

Per file, vectorised with numpy (no Python loop over frames or runs):

1. the runs of all the identity's traces in the file are merged into disjoint intervals
   (:func:`identities.cooccurrence.merge_runs`: overlapping or touching runs become one);
2. neighbouring intervals whose gap — the seconds between the end of one's last frame and the
   start of the next one's first frame, from the frame index (variable frame rate included) —
   is *shorter* than ``min_gap_seconds`` are joined (``0`` joins nothing);
3. each run is assigned to the interval it falls in (one ``searchsorted``), which gives the
   trace ids of every interval.

Screen time is the frames the person is actually on (the union of the runs), not the length of
the joined intervals, so it does not change with ``min_gap_seconds``.

Which traces count: every trace bound to the identity, hidden ones ("not a face") included —
exactly the traces co-occurrence and the cast graph count. Hiding takes a trace out of
clustering and the cast page's groups; a curator who bound it to a person said it is that person.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import Exists, OuterRef, QuerySet

from identities.cooccurrence import FrameClock, merge_runs
from media_api.models import MediaFile, Trace
from media_api.services.presence import decode_many

#: ``min_gap_seconds`` when none is given, and the largest accepted.
DEFAULT_MIN_GAP_SECONDS = 1.0
MAX_MIN_GAP_SECONDS = 3600.0


@dataclass(frozen=True)
class Interval:
    """Frames ``start_frame..end_frame`` (inclusive); seconds from the first frame's start to the last one's end."""

    start_frame: int
    end_frame: int
    start_seconds: float
    end_seconds: float
    trace_ids: list[int]


@dataclass(frozen=True)
class FileAppearances:
    file_pk: int
    file_uuid: str
    name: str
    intervals: list[Interval]
    screen_frames: int
    screen_seconds: float


def join_gaps(start: np.ndarray, end: np.ndarray, clock: FrameClock, min_gap_seconds: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """Join sorted disjoint intervals ``[start, end)`` separated by less than ``min_gap_seconds``."""
    if len(start) < 2 or min_gap_seconds <= 0:
        return start, end
    gaps = clock.cumulative[start[1:]] - clock.cumulative[end[:-1]]
    begins = np.flatnonzero(np.r_[True, gaps >= min_gap_seconds])
    ends = np.r_[begins[1:] - 1, len(start) - 1]
    return start[begins], end[ends]


def file_intervals(trace_ids: np.ndarray, blobs: Sequence[Any], clock: FrameClock,
                   min_gap_seconds: float) -> tuple[list[Interval], int, float]:
    """``(intervals, screen frames, screen seconds)`` of one person's traces in one file."""
    table = decode_many(blobs)
    if len(table.start) == 0:
        return [], 0, 0.0
    merged = merge_runs(np.zeros(len(table.start), dtype=np.int64), table.start, table.end)
    screen_frames = int((merged.end - merged.start).sum())
    screen_seconds = float(clock.seconds(merged.start, merged.end).sum())
    start, end = join_gaps(merged.start, merged.end, clock, min_gap_seconds)
    # Every run lies inside exactly one joined interval: the last one starting at or before it.
    slot = np.searchsorted(start, table.start, side="right") - 1
    owner_ids = trace_ids[table.owner]
    lowest = int(owner_ids.min())
    stride = int(owner_ids.max()) - lowest + 1
    pairs = np.unique(slot * stride + (owner_ids - lowest))  # each (interval, trace) once, by interval then id
    bounds = np.searchsorted(pairs // stride, np.arange(len(start) + 1))
    ids = (pairs % stride + lowest).tolist()
    starts_s = clock.cumulative[start].tolist()
    ends_s = clock.cumulative[end].tolist()
    intervals = [Interval(s, e - 1, ss, es, ids[bounds[k]:bounds[k + 1]])
                 for k, (s, e, ss, es) in enumerate(zip(start.tolist(), end.tolist(), starts_s, ends_s, strict=True))]
    return intervals, screen_frames, screen_seconds


def files_with_appearances(identity_pk: int, files: QuerySet[MediaFile]) -> QuerySet[MediaFile]:
    """Files of ``files`` where the identity has a trace with presence, by name (then id)."""
    present = Trace.objects.filter(identity_id=identity_pk, file_id=OuterRef("pk"), presence__isnull=False)
    return files.filter(Exists(present)).order_by("name", "pk")


def appearances(identity_pk: int, files: Sequence[MediaFile], min_gap_seconds: float = DEFAULT_MIN_GAP_SECONDS
                ) -> list[FileAppearances]:
    """The identity's intervals in each of ``files`` (a page, in that order): one query for all their traces."""
    by_file: dict[int, tuple[list[int], list[Any]]] = {file.pk: ([], []) for file in files}
    rows = (Trace.objects.filter(identity_id=identity_pk, file_id__in=list(by_file), presence__isnull=False)
            .order_by().values_list("file_id", "trace_id", "presence"))
    for file_id, trace_id, presence in rows:
        by_file[file_id][0].append(trace_id)
        by_file[file_id][1].append(presence)
    found = []
    for media_file in files:
        trace_ids, blobs = by_file[media_file.pk]
        clock = FrameClock.for_columns(media_file.pk, media_file.file_uuid, media_file.fps, media_file.total_frames)
        intervals, frames, seconds = file_intervals(np.asarray(trace_ids, dtype=np.int64), blobs, clock,
                                                    min_gap_seconds)
        found.append(FileAppearances(media_file.pk, media_file.file_uuid, media_file.name, intervals, frames,
                                     seconds))
    return found


__all__ = ["DEFAULT_MIN_GAP_SECONDS", "MAX_MIN_GAP_SECONDS", "FileAppearances", "Interval", "appearances",
           "file_intervals", "files_with_appearances", "join_gaps"]
