"""Importing detections (spec §7): validate every row first, then bulk insert.

Any bad row refuses the whole import and every bad row is reported. Writing happens in
one transaction: PostgreSQL gets ``COPY``, other databases batched ``bulk_create``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection, transaction

from identities.models import Identity
from media_api.models import Detection, MediaFile, Trace
from media_api.services.traces import refresh_trace_summaries

REQUIRED = ("trace_id", "frame_number", "x", "y", "width", "height", "confidence")
UUID_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_LABEL = 32
MAX_REPORTED_ERRORS = 1000


class ImportValidationError(Exception):
    """The import was refused; ``errors`` lists each bad row (1-based) and why."""

    def __init__(self, errors: list[dict[str, Any]], total_bad: int | None = None) -> None:
        self.errors = errors
        self.total_bad = total_bad if total_bad is not None else len(errors)
        super().__init__(f"{self.total_bad} bad row(s)")


@dataclass
class ImportResult:
    detections: int
    traces_created: int
    traces_touched: int
    identities_bound: int
    identities_created: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    trace_id: int
    frame_number: int
    x: int
    y: int
    width: int
    height: int
    confidence: float
    label: str
    identity: str


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON (``{"detections": [...]}`` or a list) or CSV file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportValidationError([{"row": 0, "errors": [f"invalid JSON: {exc}"]}]) from exc
        rows = data.get("detections") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise ImportValidationError([{"row": 0, "errors": ['expected {"detections": [...]} or a list of rows']}])
        return rows
    reader = csv.DictReader(io.StringIO(text))
    missing = [name for name in REQUIRED if name not in (reader.fieldnames or [])]
    if missing:
        raise ImportValidationError([{"row": 0, "errors": [f"CSV header lacks column(s): {', '.join(missing)}"]}])
    return list(reader)


def _as_int(value: Any, name: str, errors: list[str], strict: bool = False) -> int | None:
    """An integer; box coordinates may be given as floats and are rounded."""
    if isinstance(value, bool) or value is None or value == "":
        errors.append(f"{name} is missing")
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        errors.append(f"{name} must be a number, got {value!r}")
        return None
    if not math.isfinite(number):
        errors.append(f"{name} must be finite")
        return None
    if number != int(number) and strict:
        errors.append(f"{name} must be an integer, got {value!r}")
        return None
    return int(round(number))


def _validate(raw: Any, media_file: MediaFile, errors: list[str]) -> _Row | None:
    if not isinstance(raw, dict):
        errors.append("row is not an object")
        return None
    values = {name: _as_int(raw.get(name), name, errors, strict=name in ("trace_id", "frame_number"))
              for name in ("trace_id", "frame_number", "x", "y", "width", "height")}
    confidence = raw.get("confidence")
    try:
        confidence = float(confidence)
        if not (0.0 <= confidence <= 1.0):
            errors.append(f"confidence must be within 0..1, got {confidence}")
    except (TypeError, ValueError):
        errors.append(f"confidence must be a number, got {confidence!r}")
        confidence = None
    label = str(raw.get("label") or "face")
    if len(label) > MAX_LABEL:
        errors.append(f"label longer than {MAX_LABEL} characters")
    identity = str(raw.get("identity") or "").strip()
    if None in values.values():
        return None
    frame, x, y, w, h = (values[k] for k in ("frame_number", "x", "y", "width", "height"))
    if frame < 0 or frame >= media_file.total_frames:
        errors.append(f"frame_number {frame} outside 0..{media_file.total_frames - 1}")
    if w <= 0 or h <= 0:
        errors.append(f"width and height must be positive, got {w}x{h}")
    if x < 0 or y < 0 or x + w > media_file.width or y + h > media_file.height:
        errors.append(f"box ({x},{y},{w},{h}) not inside the {media_file.width}x{media_file.height} frame")
    if errors:
        return None
    return _Row(values["trace_id"], frame, x, y, w, h, confidence, label, identity)


def validate_rows(raw_rows: Iterable[Any], media_file: MediaFile) -> list[_Row]:
    rows: list[_Row] = []
    bad: list[dict[str, Any]] = []
    trace_identity: dict[int, str] = {}
    total_bad = 0
    for number, raw in enumerate(raw_rows, start=1):
        errors: list[str] = []
        row = _validate(raw, media_file, errors)
        if row is not None and row.identity:
            bound = trace_identity.setdefault(row.trace_id, row.identity)
            if bound != row.identity:
                errors.append(f"trace {row.trace_id} is given two identities: {bound!r} and {row.identity!r}")
        if errors:
            total_bad += 1
            if len(bad) < MAX_REPORTED_ERRORS:
                bad.append({"row": number, "errors": errors})
        else:
            rows.append(row)
    if bad:
        raise ImportValidationError(bad, total_bad)
    if not rows:
        raise ImportValidationError([{"row": 0, "errors": ["no detections in the file"]}])
    return rows


def _resolve_identities(names: set[str]) -> tuple[dict[str, Identity], list[str]]:
    """Each value is an identity uuid or a name; unknown names create identities."""
    resolved: dict[str, Identity] = {}
    uuids = {n.lower() for n in names if UUID_RE.match(n.lower())}
    for identity in Identity.objects.filter(identity_uuid__in=uuids):
        resolved[identity.identity_uuid] = identity
    created: list[str] = []
    for value in sorted(names):
        if value.lower() in resolved:
            resolved[value] = resolved[value.lower()]
            continue
        identity = Identity.objects.filter(name=value).exclude(status=Identity.Status.INACTIVE).order_by("id").first()
        if identity is None:
            identity = Identity.objects.create(name=value, source=Identity.Source.IMPORT)
            created.append(value)
        resolved[value] = identity
    return resolved, created


def _copy_detections(media_file: MediaFile, rows: list[_Row], trace_pk: dict[int, int]) -> None:
    table = Detection._meta.db_table
    columns = "file_id, trace_id, frame_number, x, y, width, height, confidence, label"
    with connection.cursor() as cursor:
        raw_cursor = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw_cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            file_id = media_file.pk
            for r in rows:
                copy.write_row((file_id, trace_pk[r.trace_id], r.frame_number, r.x, r.y, r.width, r.height,
                                r.confidence, r.label))


def _bulk_create_detections(media_file: MediaFile, rows: list[_Row], trace_pk: dict[int, int]) -> None:
    batch: list[Detection] = []
    for r in rows:
        batch.append(Detection(file_id=media_file.pk, trace_id=trace_pk[r.trace_id], frame_number=r.frame_number,
                               x=r.x, y=r.y, width=r.width, height=r.height, confidence=r.confidence, label=r.label))
        if len(batch) >= 5000:
            Detection.objects.bulk_create(batch)
            batch = []
    if batch:
        Detection.objects.bulk_create(batch)


def import_detections(media_file: MediaFile, raw_rows: list[Any], replace: bool = False) -> ImportResult:
    """Validate all rows, then write detections, traces and identity bindings atomically."""
    rows = validate_rows(raw_rows, media_file)
    trace_ids = {r.trace_id for r in rows}
    identity_of_trace = {r.trace_id: r.identity for r in rows if r.identity}
    with transaction.atomic():
        if replace:
            Detection.objects.filter(file=media_file).delete()
            Trace.objects.filter(file=media_file).exclude(trace_id__in=trace_ids).delete()
        existing = set(Trace.objects.filter(file=media_file, trace_id__in=trace_ids).values_list("trace_id", flat=True))
        new_ids = sorted(trace_ids - existing)
        Trace.objects.bulk_create([Trace(file=media_file, trace_id=t, face_count=0) for t in new_ids], batch_size=2000)
        trace_pk = dict(Trace.objects.filter(file=media_file, trace_id__in=trace_ids).values_list("trace_id", "pk"))
        if connection.vendor == "postgresql":
            _copy_detections(media_file, rows, trace_pk)
        else:
            _bulk_create_detections(media_file, rows, trace_pk)
        identities, created = _resolve_identities(set(identity_of_trace.values()))
        by_identity: dict[int, list[int]] = {}
        for trace_id, value in identity_of_trace.items():
            by_identity.setdefault(identities[value].pk, []).append(trace_pk[trace_id])
        for identity_pk, pks in by_identity.items():
            Trace.objects.filter(pk__in=pks).update(identity_id=identity_pk)
        refresh_trace_summaries(trace_pk.values())
    return ImportResult(
        detections=len(rows),
        traces_created=len(new_ids),
        traces_touched=len(trace_ids),
        identities_bound=len(identity_of_trace),
        identities_created=created,
    )
