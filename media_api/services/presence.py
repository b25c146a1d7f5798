"""Presence: the frames each trace covers, stored once on the trace as a compact run list.

Co-occurrence asks "on which frames do these traces both have a detection?". Answering it
from detection rows costs one index entry per detection (134 000 for two leads of a film);
answering it from runs of consecutive frames costs one entry per run, and a trace tracked on
every frame is a single run. So :func:`refresh_presence` stores, for each trace, the runs of
frames holding at least one of its detections, and co-occurrence reads only those.

Format of ``Trace.presence`` (``None`` for a trace without detections): one version byte
(``1``) then zlib-compressed little-endian uint32 values ``[first_frame, run_1, gap_1, run_2,
gap_2, …, run_n]`` — the first frame, then alternately the length of a run of covered frames
and of the gap before the next run. It is self-contained (no need of ``start_frame`` to decode),
a dense trace takes about a dozen bytes, and decoding is one ``zlib`` call and a cumulative sum.

Detections stay the source of truth. Presence is written in one place: :func:`refresh_presence`,
called by :func:`media_api.services.traces.refresh_trace_summaries`, which every code path that
changes detections already calls (import, ``--replace``, face analysis, the admin). Identity
binds, unbinds and merges only change ``Trace.identity`` and leave presence alone.
``manage.py rebuild_presence`` recomputes it (``--check`` compares without writing).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from django.db import connection

from media_api.models import Detection, Trace

VERSION = 1
#: Trace pks per statement (SQLite allows 32 766 variables; the importer's chunk is 5 000).
CHUNK = 2000
#: Rows fetched from the cursor at a time.
FETCH = 20000


# --------------------------------------------------------------------------- codec


def encode_runs(starts: np.ndarray, ends: np.ndarray) -> bytes | None:
    """Blob for sorted, disjoint, non-adjacent runs ``[start, end)``; None when there is none."""
    if len(starts) == 0:
        return None
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    values = np.empty(2 * len(starts), dtype=np.int64)
    values[0] = starts[0]
    values[1::2] = ends - starts  # run lengths
    values[2::2] = starts[1:] - ends[:-1]  # gaps
    return bytes([VERSION]) + zlib.compress(values.astype("<u4").tobytes(), 6)


def _values(blob: bytes | memoryview) -> np.ndarray:
    raw = bytes(blob)
    if not raw or raw[0] != VERSION:
        raise ValueError("unknown presence format")
    return np.frombuffer(zlib.decompress(raw[1:]), dtype="<u4").astype(np.int64)


def decode_runs(blob: bytes | memoryview | None) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of a presence blob: runs of covered frames, ends exclusive."""
    if blob is None:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    values = _values(blob)
    positions = np.cumsum(values)
    return positions[0::2], positions[1::2]


@dataclass(frozen=True)
class RunTable:
    """Runs of many traces at once: run ``k`` is ``[start[k], end[k])`` of trace number ``owner[k]``."""

    owner: np.ndarray
    start: np.ndarray
    end: np.ndarray


def decode_many(blobs: Sequence[bytes | memoryview | None]) -> RunTable:
    """Decode the presence of many traces with one cumulative sum (``owner`` = position in ``blobs``).

    The per-trace work is one ``zlib`` call; everything else is vectorised, so decoding the
    2 000 traces of a film costs a few milliseconds.
    """
    chunks, positions = [], []
    for position, blob in enumerate(blobs):
        if blob is None:
            continue
        raw = memoryview(blob)
        if not len(raw) or raw[0] != VERSION:
            raise ValueError("unknown presence format")
        chunks.append(zlib.decompress(raw[1:]))
        positions.append(position)
    if not chunks:
        empty = np.zeros(0, dtype=np.int64)
        return RunTable(empty, empty, empty)
    lengths = np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks)) // 4
    values = np.frombuffer(b"".join(chunks), dtype="<u4").astype(np.int64)
    cumulative = np.cumsum(values)
    # Each trace's values restart from its own first frame: subtract what came before it.
    firsts = np.cumsum(lengths) - lengths
    cumulative -= np.repeat(cumulative[firsts] - values[firsts], lengths)
    owner = np.repeat(np.asarray(positions, dtype=np.int64), lengths // 2)
    return RunTable(owner, cumulative[0::2], cumulative[1::2])


def frames_of(blob: bytes | memoryview | None) -> set[int]:
    """Every frame of a presence blob (for tests and checks; never used on a hot path)."""
    starts, ends = decode_runs(blob)
    return {frame for s, e in zip(starts.tolist(), ends.tolist(), strict=True) for frame in range(s, e)}


# --------------------------------------------------------------------------- computing from detections


def _runs_sql(count: int) -> str:
    # Gaps and islands: within a trace, frame - DENSE_RANK(frame) is constant along consecutive
    # frames (duplicates of a frame share a rank), so each group is one run. Read from the
    # (trace, frame_number) index; one row per run comes back, not one per detection.
    placeholders = ", ".join(["%s"] * count)
    table = Detection._meta.db_table
    return (
        "SELECT trace_id, MIN(frame_number), MAX(frame_number) FROM ("  # noqa: S608 - our table name
        "  SELECT trace_id, frame_number,"
        "    frame_number - DENSE_RANK() OVER (PARTITION BY trace_id ORDER BY frame_number) AS island"
        f"  FROM {table} WHERE trace_id IN ({placeholders})"
        ") runs GROUP BY trace_id, island ORDER BY trace_id, 2"
    )


def _chunks(values: Sequence[int], size: int = CHUNK) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def compute_presence(trace_pks: Sequence[int]) -> dict[int, bytes | None]:
    """Presence blob of each trace (``None``: no detections), from its detections, in one query."""
    result: dict[int, bytes | None] = dict.fromkeys(trace_pks)
    if not trace_pks:
        return result
    parts: list[np.ndarray] = []
    with connection.cursor() as cursor:
        cursor.execute(_runs_sql(len(trace_pks)), list(trace_pks))
        while rows := cursor.fetchmany(FETCH):
            parts.append(np.array(rows, dtype=np.int64).reshape(-1, 3))
    if not parts:
        return result
    runs = np.concatenate(parts)
    owner, starts, ends = runs[:, 0], runs[:, 1], runs[:, 2] + 1
    bounds = np.flatnonzero(np.diff(owner)) + 1
    for first, last in zip(np.r_[0, bounds].tolist(), np.r_[bounds, len(owner)].tolist(), strict=True):
        result[int(owner[first])] = encode_runs(starts[first:last], ends[first:last])
    return result


def _write(blobs: dict[int, bytes | None]) -> None:
    table = Trace._meta.db_table
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {table} SET presence = %s WHERE id = %s",  # noqa: S608 - our table name
                           [(blob, pk) for pk, blob in blobs.items()])


def refresh_presence(trace_pks: Iterable[int]) -> int:
    """Recompute and store the presence of these traces (chunked); returns the number written."""
    pks = sorted(set(trace_pks))
    for chunk in _chunks(pks):
        _write(compute_presence(chunk))
    return len(pks)


def _same(stored: bytes | memoryview | None, computed: bytes | None) -> bool:
    if stored is None or computed is None:
        return stored is None and computed is None
    try:
        return np.array_equal(_values(stored), _values(computed))
    except (ValueError, zlib.error):  # an unreadable blob is stale
        return False


def stale_presence(trace_pks: Iterable[int]) -> list[int]:
    """Traces whose stored presence differs from what their detections say (``rebuild_presence --check``)."""
    stale: list[int] = []
    for chunk in _chunks(sorted(set(trace_pks))):
        stored = dict(Trace.objects.filter(pk__in=chunk).values_list("pk", "presence"))
        for pk, blob in compute_presence(chunk).items():
            if not _same(stored.get(pk), blob):
                stale.append(pk)
    return stale


__all__ = ["RunTable", "compute_presence", "decode_many", "decode_runs", "encode_runs", "frames_of",
           "refresh_presence", "stale_presence"]
