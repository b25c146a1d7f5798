"""Who appears with whom, and for how long: co-occurrence computed from the traces' presence.

"Co-occur" (spec §4) = a frame holding a detection of a trace bound to A and one of a trace
bound to B. Every trace stores the frames it covers as runs of consecutive frames
(``Trace.presence``, :mod:`media_api.services.presence`), so the work grows with the number of
*runs* — one per trace when a face is tracked on every frame — and never with the detection
table: two leads of a film are a few hundred small rows, not 134 000 detection index entries.

One algorithm serves every route, vectorised with numpy (no Python loop over frames or runs):

1. the runs of each person (an identity, or a group of unbound traces) are merged into
   disjoint intervals (:func:`merge_runs`) — a person seen twice on a frame counts once;
2. all overlapping intervals of *different* people are found with one sort and one
   ``searchsorted`` (:func:`overlapping_pairs`): in start order, interval *i* overlaps exactly
   the intervals after it that start before it ends;
3. each overlap ``[lo, hi)`` gives its frames (``hi - lo``), its seconds (a prefix sum of frame
   durations, :class:`FrameClock`) and its first frame (``lo``); they are summed per pair of
   people (:func:`aggregate_pairs`).

Seconds follow the frame index, variable frame rate included: a frame lasts until the next
frame's presentation time, the last one ``1/fps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from django.db.models import Exists, OuterRef, QuerySet

from media_api.models import FrameIndex, MediaFile, Trace
from media_api.services.files import frame_index_for
from media_api.services.presence import RunTable, decode_many

# --------------------------------------------------------------------------- time


@dataclass(frozen=True)
class FrameClock:
    """Seconds from frame numbers: ``at(n)`` = start of frame n, ``seconds(lo, hi)`` = frames ``lo..hi-1``.

    ``cumulative[n]`` is the presentation time of frame n relative to the first frame (exactly
    what :meth:`FrameIndexData.seconds_of` gives), and ``cumulative[frames]`` the end of the last
    frame (its start + ``1/fps``), so summing durations over a run is one subtraction.
    """

    cumulative: np.ndarray

    @classmethod
    def for_file(cls, media_file: MediaFile) -> FrameClock:
        return cls.for_columns(media_file.pk, media_file.file_uuid, media_file.fps, media_file.total_frames)

    @staticmethod
    def for_columns(file_pk: int, file_uuid: str, fps: float, total_frames: int) -> FrameClock:
        """The same clock from a file's columns (a values() row needs no MediaFile)."""
        return _clock(file_pk, file_uuid, fps, total_frames)

    def at(self, frame: int) -> float:
        return float(self.cumulative[frame])

    def seconds(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return self.cumulative[hi] - self.cumulative[lo]


@lru_cache(maxsize=256)
def _clock(file_pk: int, file_uuid: str, fps: float, total_frames: int) -> FrameClock:
    """Cached per process like the frame index it comes from (neither changes once registered)."""
    try:
        index = frame_index_for(MediaFile(pk=file_pk, file_uuid=file_uuid))
    except FrameIndex.DoesNotExist:  # not registered through register_file: constant frame rate
        cumulative = np.arange(total_frames + 1, dtype=np.float64) / fps if fps > 0 else np.zeros(total_frames + 1)
        return FrameClock(cumulative)
    pts = index.pts.astype(np.int64)
    if len(pts) == 0:
        return FrameClock(np.zeros(1))
    tb = index.time_base
    cumulative = np.empty(len(pts) + 1, dtype=np.float64)
    # (pts - pts0) * num is an exact integer, so one correctly rounded division gives the same
    # float as seconds_of's Fraction arithmetic.
    cumulative[:-1] = ((pts - pts[0]) * tb.numerator).astype(np.float64) / tb.denominator
    cumulative[-1] = cumulative[-2] + (1.0 / fps if fps > 0 else 0.0)
    return FrameClock(cumulative)


# --------------------------------------------------------------------------- the algorithm


@dataclass(frozen=True)
class Intervals:
    """Disjoint intervals ``[start, end)`` of frames, each belonging to person number ``group``."""

    group: np.ndarray
    start: np.ndarray
    end: np.ndarray


def merge_runs(group: np.ndarray, start: np.ndarray, end: np.ndarray) -> Intervals:
    """Union of each group's runs: sorted by (group, start), disjoint and not touching."""
    if len(start) == 0:
        return Intervals(group, start, end)
    stride = int(end.max()) + 1  # groups laid end to end never merge with each other
    keyed_start, keyed_end = group * stride + start, group * stride + end
    order = np.argsort(keyed_start, kind="stable")
    keyed_start, keyed_end = keyed_start[order], keyed_end[order]
    reach = np.maximum.accumulate(keyed_end)
    begins = np.flatnonzero(np.r_[True, keyed_start[1:] > reach[:-1]])
    ends = reach[np.r_[begins[1:] - 1, len(reach) - 1]]
    merged_group = keyed_start[begins] // stride
    offset = merged_group * stride
    return Intervals(merged_group, keyed_start[begins] - offset, ends - offset)


def overlapping_pairs(intervals: Intervals) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every overlap of two intervals of different groups: ``(group_a, group_b, lo, hi)``, a < b."""
    order = np.argsort(intervals.start, kind="stable")
    group, start, end = intervals.group[order], intervals.start[order], intervals.end[order]
    positions = np.arange(len(start))
    counts = np.maximum(np.searchsorted(start, end, side="left") - positions - 1, 0)
    total = int(counts.sum())
    i = np.repeat(positions, counts)
    j = i + 1 + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
    lo, hi = start[j], np.minimum(end[i], end[j])  # start[j] >= start[i]
    ga, gb = group[i], group[j]
    keep = ga != gb  # a group's own intervals never overlap once merged; kept for safety
    ga, gb, lo, hi = ga[keep], gb[keep], lo[keep], hi[keep]
    return np.minimum(ga, gb), np.maximum(ga, gb), lo, hi


@dataclass(frozen=True)
class PairFigures:
    """Per pair of groups (``a < b``): shared frames and seconds, and the first shared frame."""

    a: np.ndarray
    b: np.ndarray
    frames: np.ndarray
    seconds: np.ndarray
    first: np.ndarray


def aggregate_pairs(ga: np.ndarray, gb: np.ndarray, lo: np.ndarray, hi: np.ndarray, groups: int,
                    clock: FrameClock | None) -> PairFigures:
    """Sum the overlaps per pair of groups (seconds are zeros without a clock)."""
    if len(lo) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return PairFigures(empty, empty, empty, np.zeros(0), empty)
    key = ga * groups + gb
    order = np.lexsort((lo, key))
    key, lo, hi = key[order], lo[order], hi[order]
    begins = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    frames = np.add.reduceat(hi - lo, begins)
    seconds = np.add.reduceat(clock.seconds(lo, hi), begins) if clock is not None else np.zeros(len(begins))
    return PairFigures(key[begins] // groups, key[begins] % groups, frames, seconds, lo[begins])


def screen_time(intervals: Intervals, groups: int, clock: FrameClock | None) -> tuple[np.ndarray, np.ndarray]:
    """Frames and seconds each group is on screen (its merged intervals)."""
    frames = np.bincount(intervals.group, weights=intervals.end - intervals.start, minlength=groups)
    if clock is None:
        return frames.astype(np.int64), np.zeros(groups)
    seconds = np.bincount(intervals.group, weights=clock.seconds(intervals.start, intervals.end), minlength=groups)
    return frames.astype(np.int64), seconds


def _runs_by_group(blobs: Sequence[Any], group_of_trace: np.ndarray) -> tuple[RunTable, Intervals]:
    table = decode_many(blobs)
    return table, merge_runs(group_of_trace[table.owner], table.start, table.end)


# --------------------------------------------------------------------------- one pair in one file


@dataclass(frozen=True)
class FirstCooccurrence:
    frame_number: int
    trace_id_a: int
    trace_id_b: int
    total_frames: int


@dataclass(frozen=True)
class PairInFile:
    """Two people in one file: what they share, and each one's own screen time."""

    first: FirstCooccurrence
    shared_seconds: float
    screen_frames: tuple[int, int]
    screen_seconds: tuple[float, float]


def _touching_the_other_side(side: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Which traces' spans (inclusive) overlap a span of the other side: only those can share a frame."""
    keep = np.zeros(len(side), dtype=bool)
    for mine in (0, 1):
        other = side != mine
        if not other.any():
            continue
        order = np.argsort(start[other], kind="stable")
        other_start, reach = start[other][order], np.maximum.accumulate(end[other][order])
        last = np.searchsorted(other_start, end[~other], side="right") - 1  # the last other span starting in time
        keep[~other] = (last >= 0) & (reach[np.maximum(last, 0)] >= start[~other])
    return keep


def _pair(rows: Sequence[tuple[Any, ...]], identity_a_pk: int, clock: FrameClock | None) -> PairInFile | None:
    """``rows`` = (identity pk, trace_id, start_frame, end_frame, presence) of two people's traces in one file.

    Without a clock only the first shared frame and the count are wanted: traces whose span
    touches no span of the other person are not even decoded. With a clock every trace is
    decoded, for each person's own screen time.
    """
    if not rows:
        return None
    count = len(rows)
    side = np.fromiter((0 if row[0] == identity_a_pk else 1 for row in rows), dtype=np.int64, count=count)
    if clock is None:
        spans_start = np.fromiter((row[2] for row in rows), dtype=np.int64, count=count)
        spans_end = np.fromiter((row[3] for row in rows), dtype=np.int64, count=count)
        wanted = np.flatnonzero(_touching_the_other_side(side, spans_start, spans_end))
        rows, side = [rows[i] for i in wanted], side[wanted]
        count = len(rows)
    table, intervals = _runs_by_group([row[4] for row in rows], side)
    ga, gb, lo, hi = overlapping_pairs(intervals)
    if len(lo) == 0:
        return None
    first = int(lo.min())
    trace_ids = np.fromiter((row[1] for row in rows), dtype=np.int64, count=count)
    on_first = table.owner[(table.start <= first) & (first < table.end)]
    trace_a = int(trace_ids[on_first[side[on_first] == 0]].min())
    trace_b = int(trace_ids[on_first[side[on_first] == 1]].min())
    frames, seconds = screen_time(intervals, 2, clock)
    shared = float(clock.seconds(lo, hi).sum()) if clock is not None else 0.0
    return PairInFile(FirstCooccurrence(first, trace_a, trace_b, int((hi - lo).sum())), shared,
                      (int(frames[0]), int(frames[1])), (float(seconds[0]), float(seconds[1])))


_PAIR_COLUMNS = ("identity_id", "trace_id", "start_frame", "end_frame", "presence")


def first_cooccurrence(file_pk: int, identity_a_pk: int, identity_b_pk: int) -> FirstCooccurrence | None:
    """The first frame where both identities have a detection in the file, or None if never.

    One query: the two identities' traces of the file (the ``(file, identity)`` trace index),
    a few bytes of presence each. Only traces whose span overlaps a span of the other person
    are decoded. The answer's trace ids are the lowest trace id of each identity on that frame.
    """
    rows = list(Trace.objects.filter(file_id=file_pk, identity_id__in=[identity_a_pk, identity_b_pk],
                                     presence__isnull=False).order_by().values_list(*_PAIR_COLUMNS))
    found = _pair(rows, identity_a_pk, None)
    return found.first if found is not None else None


# --------------------------------------------------------------------------- one pair across files


@dataclass(frozen=True)
class FilePair:
    media_file: MediaFile
    figures: PairInFile


def cooccurrence_across_files(identity_a_pk: int, identity_b_pk: int, files: QuerySet[MediaFile]) -> list[FilePair]:
    """Every file of ``files`` where both identities share at least one frame, most shared time first.

    One query for the traces of both (only in files where both have traces), one for the
    files; each file's frame clock is cached per process.
    """
    both = files.filter(Exists(Trace.objects.filter(file_id=OuterRef("pk"), identity_id=identity_a_pk)),
                        Exists(Trace.objects.filter(file_id=OuterRef("pk"), identity_id=identity_b_pk)))
    rows = (Trace.objects.filter(file__in=both, identity_id__in=[identity_a_pk, identity_b_pk], presence__isnull=False)
            .order_by("file_id").values_list("file_id", *_PAIR_COLUMNS))
    by_file: dict[int, list[tuple[Any, ...]]] = {}
    for file_id, *row in rows:
        by_file.setdefault(file_id, []).append(tuple(row))
    media_files = MediaFile.objects.in_bulk(list(by_file))
    found = []
    for file_id, traces in by_file.items():
        media_file = media_files[file_id]
        figures = _pair(traces, identity_a_pk, FrameClock.for_file(media_file))
        if figures is not None:
            found.append(FilePair(media_file, figures))
    found.sort(key=lambda p: (-p.figures.shared_seconds, -p.figures.first.total_frames, p.media_file.name,
                              p.media_file.pk))
    return found


# --------------------------------------------------------------------------- the cast graph of a file


@dataclass
class CastMember:
    """A node of the cast graph: an identity, or a group of unbound traces (``identity_pk`` None)."""

    identity_pk: int | None
    trace_ids: list[int]
    identity_uuid: str | None = None
    name: str | None = None
    screen_frames: int = 0
    screen_seconds: float = 0.0
    #: Its merged intervals of frames (for the admin's timeline strip).
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ends: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def label(self) -> str:
        if self.name is not None:
            return self.name
        shown = ", ".join(str(t) for t in self.trace_ids[:3]) + ("…" if len(self.trace_ids) > 3 else "")
        return f"unnamed (trace{'s' if len(self.trace_ids) > 1 else ''} {shown})"


@dataclass(frozen=True)
class CastPair:
    a: CastMember
    b: CastMember
    first_frame: int
    shared_frames: int
    shared_seconds: float


@dataclass
class CastGraph:
    """People (most screen time first) and the pairs who share frames, as arrays (most shared time first).

    Pair ``k`` is ``members[a[k]]`` with ``members[b[k]]``; ``a`` is the one with more screen
    time. :meth:`pairs` makes objects only for the pairs asked for (a page).
    """

    members: list[CastMember]
    a: np.ndarray
    b: np.ndarray
    first: np.ndarray
    frames: np.ndarray
    seconds: np.ndarray
    total_frames: int

    def __len__(self) -> int:
        return len(self.a)

    def pairs(self, selection: slice | np.ndarray = slice(None)) -> list[CastPair]:
        return [CastPair(self.members[x], self.members[y], first, shared, secs) for x, y, first, shared, secs in zip(
            self.a[selection].tolist(), self.b[selection].tolist(), self.first[selection].tolist(),
            self.frames[selection].tolist(), self.seconds[selection].tolist(), strict=True)]

    def partners_of(self, identity_pk: int) -> CastGraph:
        """Only the pairs of one identity, that identity always ``a`` (same order)."""
        number = next((n for n, m in enumerate(self.members) if m.identity_pk == identity_pk), None)
        if number is None:
            selected = np.zeros(0, dtype=np.int64)
        else:
            selected = np.flatnonzero((self.a == number) | (self.b == number))
        other = np.where(self.a[selected] == number, self.b[selected], self.a[selected])
        return CastGraph(self.members, np.full(len(selected), number if number is not None else 0, dtype=np.int64),
                         other, self.first[selected], self.frames[selected], self.seconds[selected],
                         self.total_frames)


def _unbound_groups(traces: list[tuple[Any, ...]], include_unbound: bool, file_pk: int) -> list[list[int]]:
    """Unbound traces grouped as clustering would group them (positions into ``traces``)."""
    from identities.suggestions import comparable, group_unbound_traces

    if not include_unbound:
        return []
    position_of = {pk: position for position, (pk, _, identity, _, _) in enumerate(traces) if identity is None}
    if not position_of:
        return []
    embeddings = dict(Trace.objects.filter(comparable(), file_id=file_pk, identity__isnull=True,
                                           presence__isnull=False).values_list("pk", "embedding"))
    rows = [(pk, embeddings.get(pk), file_pk, traces[p][3], traces[p][4]) for pk, p in position_of.items()]
    return [[position_of[pk] for pk in group] for group in group_unbound_traces(rows)]


def _member_order(member: CastMember) -> tuple:
    return (-member.screen_seconds, -member.screen_frames, member.identity_pk is None, member.name or "",
            member.identity_uuid or "", member.trace_ids[:1])


def cast_graph(media_file: MediaFile, include_unbound: bool = False) -> CastGraph:
    """Every pair of people of the file who share frames, with their screen times.

    People are the identities bound to the file's traces and, with ``include_unbound``, the
    unbound traces grouped as clustering groups them (:func:`identities.suggestions.group_unbound_traces`;
    a trace without a face embedding is a group of its own). Queries: the file's traces (with
    presence), their identities, and the unbound traces' embeddings when asked for.
    """
    from identities.models import Identity

    traces = list(Trace.objects.filter(file=media_file, presence__isnull=False).order_by("start_frame", "trace_id")
                  .values_list("pk", "trace_id", "identity_id", "start_frame", "end_frame", "presence"))
    members: list[CastMember] = []
    group_of_trace = np.full(len(traces), -1, dtype=np.int64)
    by_identity: dict[int, int] = {}
    for position, (_, trace_id, identity_id, _, _, _) in enumerate(traces):
        if identity_id is None:
            continue
        if identity_id not in by_identity:
            by_identity[identity_id] = len(members)
            members.append(CastMember(identity_pk=identity_id, trace_ids=[]))
        group_of_trace[position] = by_identity[identity_id]
        members[by_identity[identity_id]].trace_ids.append(trace_id)
    for positions in _unbound_groups([t[:5] for t in traces], include_unbound, media_file.pk):
        group_of_trace[positions] = len(members)
        members.append(CastMember(identity_pk=None, trace_ids=[traces[p][1] for p in positions]))
    for member in members:
        member.trace_ids.sort()
    for pk, identity_uuid, name in Identity.objects.filter(pk__in=list(by_identity)).values_list(
            "pk", "identity_uuid", "name"):
        members[by_identity[pk]].identity_uuid, members[by_identity[pk]].name = identity_uuid, name

    clock = FrameClock.for_file(media_file)
    kept = np.flatnonzero(group_of_trace >= 0)
    table = decode_many([traces[p][5] for p in kept])
    intervals = merge_runs(group_of_trace[kept][table.owner], table.start, table.end)
    frames, seconds = screen_time(intervals, len(members), clock)
    bounds = np.searchsorted(intervals.group, np.arange(len(members) + 1))
    for number, member in enumerate(members):
        member.screen_frames, member.screen_seconds = int(frames[number]), float(seconds[number])
        member.starts = intervals.start[bounds[number]:bounds[number + 1]]
        member.ends = intervals.end[bounds[number]:bounds[number + 1]]

    figures = aggregate_pairs(*overlapping_pairs(intervals), len(members), clock)
    order = sorted(range(len(members)), key=lambda number: _member_order(members[number]))
    rank = np.empty(len(members), dtype=np.int64)
    rank[order] = np.arange(len(members))
    a, b = rank[figures.a], rank[figures.b]  # positions in the ranked list
    a, b = np.minimum(a, b), np.maximum(a, b)  # the person with more screen time is a
    sequence = np.lexsort((b, a, figures.first, -figures.frames, -figures.seconds))
    return CastGraph([members[number] for number in order], a[sequence], b[sequence], figures.first[sequence],
                     figures.frames[sequence], figures.seconds[sequence], media_file.total_frames)


__all__ = ["CastGraph", "CastMember", "CastPair", "FilePair", "FirstCooccurrence", "FrameClock", "PairInFile",
           "cast_graph", "cooccurrence_across_files", "first_cooccurrence"]
