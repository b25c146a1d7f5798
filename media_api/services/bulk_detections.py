"""A file's detections in bulk: keyset pages and one NDJSON stream, both from the same row writer.

Why text and not serializers: a stream of millions of rows must cost a couple of microseconds a
row (≥ 200,000 rows/s) with flat memory, so each row is written straight from its database tuple
into a JSON line by :class:`RowWriter` (one ``%`` format), no dict or DRF serializer per row. A page
is the same lines joined in a JSON array, so the NDJSON stream of a file is exactly its pages
concatenated, row for row and byte for byte.

Rows carry what ``GET …/trace/{id}/faces`` gives for a box (``frame_number``, ``timestamp_secs``,
``bbox``, ``confidence``, ``label``, ``origin``) plus the ``trace_id`` it belongs to.

Pages are keyset (cursor) pages: the cursor is the last row's (frame_number, id) with the file
and filters it belongs to, signed with Django's signing (the secret key and a salt of its own),
so a client cannot forge a position or reuse it on another query; a page costs one index range
read whatever its depth.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.core import signing
from django.db import connection, transaction

from media_api import selectors
from media_api.ffmpeg.index import FrameIndexData
from media_api.models import Detection
from momentry.errors import BadRequest

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000
#: Rows fetched per round trip of the stream (a server-side cursor on PostgreSQL) and written per chunk.
STREAM_CHUNK_ROWS = 5000
_CURSOR_SALT = "media_api.detections.cursor"
_CURSOR_VERSION = 1
_ORIGINS = {choice.value: json.dumps(choice.label) for choice in Detection.Origin}


@dataclass(frozen=True)
class DetectionFilter:
    """What the caller asked for: a file, an optional frame range (inclusive) and an optional trace."""

    file_uuid: str
    start_frame: int | None = None
    end_frame: int | None = None
    trace_id: int | None = None

    def query(self) -> dict[str, int]:
        """The filters as query parameters (for the ``next`` link)."""
        names = ("start_frame", "end_frame", "trace_id")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


def encode_cursor(where: DetectionFilter, frame_number: int, pk: int) -> str:
    """An opaque, signed position after the row (frame_number, pk) of the query ``where``."""
    payload = [_CURSOR_VERSION, where.file_uuid, where.start_frame, where.end_frame, where.trace_id, frame_number, pk]
    return signing.dumps(payload, salt=_CURSOR_SALT, compress=False)


def decode_cursor(where: DetectionFilter, cursor: str) -> tuple[int, int]:
    """The (frame_number, pk) a cursor of this query stands after; a 400 naming ``cursor`` otherwise.

    A cursor that is not ours (changed by one character, or made up) and a cursor of another file
    or other filters are refused alike: a position only means something in the query it came from.
    """
    try:
        payload = signing.loads(cursor, salt=_CURSOR_SALT)
    except (signing.BadSignature, ValueError, UnicodeError):
        raise BadRequest("cursor is not a cursor this server gave (use the next link of the previous page)",
                         param="cursor") from None
    ok = (isinstance(payload, list) and len(payload) == 7 and payload[0] == _CURSOR_VERSION
          and all(isinstance(v, int) and not isinstance(v, bool) for v in payload[5:]))
    if not ok or payload[1:5] != [where.file_uuid, where.start_frame, where.end_frame, where.trace_id]:
        raise BadRequest("cursor belongs to another query: keep the file and the filters of the first page",
                         param="cursor")
    return payload[5], payload[6]


class RowWriter:
    """Database rows (:data:`media_api.selectors.DETECTION_ROW`) to JSON lines, about 1 µs of CPU a row.

    ``trace_ids`` maps trace pks to the file's trace_ids; times come from the frame index (null
    without one, or for a frame past its end, as on the trace faces route). Rows arrive in frame
    order, so a frame's time is computed once. Scores are few distinct values (the detector's,
    rounded, carried onto tracked boxes), so their text is cached (bounded); the importer keeps
    them within 0..1, so they are always finite.
    """

    _MAX_CACHED = 65_536

    def __init__(self, index: FrameIndexData | None, trace_ids: dict[int, int]) -> None:
        self.index = index
        self.trace_ids = trace_ids
        self._labels: dict[str, str] = {}
        self._scores: dict[float, str] = {}
        self._frame: int | None = None
        self._seconds = "null"

    def _time(self, frame: int) -> str:
        index = self.index
        return "null" if index is None or not 0 <= frame < len(index) else repr(round(index.seconds_of(frame), 6))

    def lines(self, rows: list[tuple]) -> list[str]:
        out: list[str] = []
        append, trace_ids, labels, scores = out.append, self.trace_ids, self._labels, self._scores
        last, seconds = self._frame, self._seconds
        if len(scores) > self._MAX_CACHED:
            scores.clear()
        for _pk, frame, trace_pk, x, y, width, height, confidence, label, origin in rows:
            if frame != last:
                last, seconds = frame, self._time(frame)
            score = scores.get(confidence)
            if score is None:
                score = scores[confidence] = repr(confidence)
            text = labels.get(label)
            if text is None:
                text = labels[label] = json.dumps(label)
            append(f'{{"frame_number":{frame},"timestamp_secs":{seconds},"trace_id":{trace_ids[trace_pk]},'
                   f'"bbox":{{"x":{x},"y":{y},"width":{width},"height":{height}}},"confidence":{score},'
                   f'"label":{text},"origin":{_ORIGINS.get(origin, "null")}}}')
        self._frame, self._seconds = last, seconds
        return out


@dataclass(frozen=True)
class DetectionPage:
    lines: list[str]
    next_cursor: str | None

    def body(self, where: DetectionFilter, page_size: int, path: str) -> bytes:
        """The page as JSON text: the envelope, and the rows as the stream writes them."""
        next_link = None
        if self.next_cursor is not None:
            query = {**where.query(), "page_size": page_size, "cursor": self.next_cursor}
            next_link = f"{path}?{urlencode(query, safe=':')}"
        head = json.dumps({"success": True, "file_uuid": where.file_uuid, "count": len(self.lines),
                           "page_size": page_size, "next_cursor": self.next_cursor, "next": next_link},
                          separators=(",", ":"))
        return f'{head[:-1]},"detections":[{",".join(self.lines)}]}}'.encode()


def _rows(file_pk: int, trace_pk: int | None, where: DetectionFilter, after: tuple[int, int] | None):
    queryset = selectors.file_detections(file_pk, where.start_frame, where.end_frame, trace_pk)
    return queryset if after is None else selectors.detections_after(queryset, *after)


def read_page(file_pk: int, trace_pk: int | None, where: DetectionFilter, index: FrameIndexData | None,
              page_size: int, after: tuple[int, int] | None) -> DetectionPage:
    """One keyset page: ``page_size`` rows after the (decoded) cursor; one more is read to know if more follow."""
    sql, params = _rows(file_pk, trace_pk, where, after)[: page_size + 1].query.sql_with_params()
    with connection.cursor() as cursor:  # as the stream reads (no per-row conversion is needed)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    more = len(rows) > page_size
    rows = rows[:page_size]
    writer = RowWriter(index, selectors.trace_ids_by_pk(file_pk, {row[2] for row in rows}))
    last = rows[-1] if rows else None
    next_cursor = encode_cursor(where, last[1], last[0]) if more and last else None
    return DetectionPage(writer.lines(rows), next_cursor)


def _lazy_reads() -> AbstractContextManager:
    """On PostgreSQL, a transaction around the stream, so that its server-side cursor is read lazily.

    Outside a transaction Django declares the cursor ``WITH HOLD``, and PostgreSQL then runs the
    whole query and stores every row before the first one is sent. Not on SQLite: its transactions
    begin IMMEDIATE here (settings), which would hold the write lock for the whole stream; SQLite
    steps through the rows lazily anyway (WAL lets writers go on).
    """
    return transaction.atomic() if connection.vendor == "postgresql" else nullcontext()


def stream_lines(file_pk: int, trace_pk: int | None, where: DetectionFilter, index: FrameIndexData | None,
                 after: tuple[int, int] | None = None) -> Iterator[bytes]:
    """Every row of the query (after ``after``) as NDJSON, ``STREAM_CHUNK_ROWS`` lines per chunk, with flat memory.

    Django's chunked cursor is a server-side cursor on PostgreSQL (SQLite steps through the rows
    itself), so neither the rows nor the text of the whole file is ever held. Should the database fail
    mid-stream (the status line is long sent), a last line ``{"success": false, "error": …}``
    says so and the stream ends.
    """
    writer = RowWriter(index, selectors.trace_ids_by_pk(file_pk, None if trace_pk is None else {trace_pk}))
    sql, params = _rows(file_pk, trace_pk, where, after).query.sql_with_params()
    try:
        with _lazy_reads(), connection.chunked_cursor() as cursor:
            # The query's own SQL on the database cursor: its columns need no conversion (integers, a
            # float, a text), and Django's row iterator would cost more than writing the lines.
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(STREAM_CHUNK_ROWS):
                lines = writer.lines(rows)
                lines.append("")
                yield "\n".join(lines).encode()
    except Exception:  # noqa: BLE001 - the answer has begun: say so in the stream, never a 500 page
        logger.exception("detection stream of %s failed", where.file_uuid)
        error: dict[str, Any] = {"success": False, "error": {"code": "INTERNAL_ERROR", "message": "The stream "
                                 "stopped: the detections could not be read. Retry.", "details": {}}}
        yield (json.dumps(error) + "\n").encode()
