"""Importing detections (spec §7): validate every row first, then write them all or nothing.

Memory stays flat whatever the size: rows are streamed twice from their source (a JSON file
through ``ijson``, a CSV file through ``csv``, or a list), once to validate — any bad row
refuses the whole import and every bad row is reported — and once to write, in batches,
inside one transaction. PostgreSQL gets ``COPY``, other databases batched ``bulk_create``.
What is kept in memory grows with the number of *traces*, never with the rows, and no SQL
statement carries more than :data:`SQL_CHUNK` values (SQLite's variable limit), so any
number of traces imports.

A JSON object may also carry the traces' face vectors (what ``detect_faces --export-dir`` writes):
``embedding_model``, ``trace_embeddings`` (``{trace_id: [128 floats]}``, the mean) and
``trace_exemplars`` (``{trace_id: [[128 floats], ...]}``, up to ``exemplars.MAX_EXEMPLARS``, best
first). They are checked as strictly as the rows (a bad vector refuses the whole import) and stored
with them; vectors of another model than the service's are not stored (nothing compares two
models' vectors), and the import says so. :func:`export_vectors` writes them.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import ijson
from django.db import connection, transaction

from identities.models import Identity
from media_api.models import Detection, MediaFile, Trace
from media_api.services.traces import refresh_trace_summaries
from momentry.converters import MAX_TRACE_ID

REQUIRED = ("trace_id", "frame_number", "x", "y", "width", "height", "confidence")
UUID_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_LABEL = 32
MAX_REPORTED_ERRORS = 1000
#: Rows per INSERT batch, and values per ``IN (...)`` list.
BATCH_ROWS = 5000
SQL_CHUNK = 5000
ORIGINS = {label: value for value, label in Detection.Origin.choices}

RowSource = Iterable[Any] | Callable[[], Iterable[Any]]


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
    #: Traces given face vectors by the import, and how many of them with exemplars.
    traces_embedded: int = 0
    traces_with_exemplars: int = 0
    #: Why the import's face vectors were not stored ("" when they were, or when there were none).
    vectors_skipped: str = ""


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
    origin: int


# --------------------------------------------------------------------------- reading


def _file_error(message: str) -> ImportValidationError:
    return ImportValidationError([{"row": 0, "errors": [message]}])


def _json_rows(path: Path) -> Iterator[Any]:
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        handle.seek(0)
        if head[:1] not in (b"{", b"["):
            raise _file_error('expected {"detections": [...]} or a list of rows')
        prefix = "item" if head[:1] == b"[" else "detections.item"
        seen_key = False
        try:
            if prefix == "item":
                yield from ijson.items(handle, prefix, use_float=True)
                return
            for current, event, value in ijson.parse(handle, use_float=True):
                if current == "" and event == "map_key" and value == "detections":
                    seen_key = True
                    break
            if not seen_key:
                raise _file_error('expected {"detections": [...]} or a list of rows')
            handle.seek(0)
            yield from ijson.items(handle, prefix, use_float=True)
        except ijson.JSONError as exc:
            raise _file_error(f"invalid JSON: {exc}") from None


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in REQUIRED if name not in (reader.fieldnames or [])]
        if missing:
            raise _file_error(f"CSV header lacks column(s): {', '.join(missing)}")
        yield from reader


def read_rows(path: str | Path) -> Callable[[], Iterator[Any]]:
    """A re-iterable source of the rows of a JSON (``{"detections": [...]}`` or a list) or CSV file.

    Nothing is read until the source is iterated; each iteration streams the file again.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    with path.open("rb") as handle:
        first = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    is_json = path.suffix.lower() == ".json" or first in (b"{", b"[")
    return (lambda: _json_rows(path)) if is_json else (lambda: _csv_rows(path))


def _iterate(rows: RowSource) -> Iterator[Any]:
    return iter(rows() if callable(rows) else rows)


# --------------------------------------------------------------------------- validation


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
        errors.append(f"{name} must be a number, got {str(value)[:40]!r}")
        return None
    if not math.isfinite(number):
        errors.append(f"{name} must be finite")
        return None
    if number != int(number) and strict:
        errors.append(f"{name} must be an integer, got {str(value)[:40]!r}")
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
        errors.append(f"confidence must be a number, got {str(confidence)[:40]!r}")
        confidence = None
    label = str(raw.get("label") or "face")
    if len(label) > MAX_LABEL:
        errors.append(f"label longer than {MAX_LABEL} characters")
    identity = str(raw.get("identity") or "").strip()
    if len(identity) > 200:
        errors.append("identity longer than 200 characters")
    origin = ORIGINS.get(str(raw.get("origin") or "detected"))
    if origin is None:
        errors.append(f"origin must be one of: {', '.join(ORIGINS)}")
    if None in values.values():
        return None
    trace_id, frame, x, y, w, h = (values[k] for k in ("trace_id", "frame_number", "x", "y", "width", "height"))
    if not 0 <= trace_id <= MAX_TRACE_ID:
        errors.append(f"trace_id must be within 0..{MAX_TRACE_ID}")
    if frame < 0 or frame >= media_file.total_frames:
        errors.append(f"frame_number {frame} outside 0..{media_file.total_frames - 1}")
    if w <= 0 or h <= 0:
        errors.append(f"width and height must be positive, got {w}x{h}")
    if x < 0 or y < 0 or x + w > media_file.width or y + h > media_file.height:
        errors.append(f"box ({x},{y},{w},{h}) not inside the {media_file.width}x{media_file.height} frame")
    if errors:
        return None
    return _Row(trace_id, frame, x, y, w, h, confidence, label, identity, origin)


@dataclass
class _Plan:
    """What validation learnt about the rows: their number, traces and identity per trace."""

    rows: int = 0
    trace_ids: set[int] = field(default_factory=set)
    identity_of_trace: dict[int, str] = field(default_factory=dict)


def validate_rows(rows: RowSource, media_file: MediaFile) -> _Plan:
    """Check every row (streaming); raise :class:`ImportValidationError` listing the bad ones."""
    plan = _Plan()
    bad: list[dict[str, Any]] = []
    total_bad = 0
    for number, raw in enumerate(_iterate(rows), start=1):
        errors: list[str] = []
        row = _validate(raw, media_file, errors)
        if row is not None and row.identity:
            bound = plan.identity_of_trace.setdefault(row.trace_id, row.identity)
            if bound != row.identity:
                errors.append(f"trace {row.trace_id} is given two identities: {bound!r} and {row.identity!r}")
        if errors:
            total_bad += 1
            if len(bad) < MAX_REPORTED_ERRORS:
                bad.append({"row": number, "errors": errors})
            continue
        plan.rows += 1
        plan.trace_ids.add(row.trace_id)
    if bad:
        raise ImportValidationError(bad, total_bad)
    if not plan.rows:
        raise _file_error("no detections in the file")
    return plan


def _valid_rows(rows: RowSource, media_file: MediaFile) -> Iterator[_Row]:
    """The rows again, parsed (they were all valid a moment ago; a source that changed meanwhile fails)."""
    for raw in _iterate(rows):
        errors: list[str] = []
        row = _validate(raw, media_file, errors)
        if row is None:
            raise _file_error("the file changed during the import")
        yield row


# --------------------------------------------------------------------------- face vectors

#: Top-level keys of a JSON import that carry face vectors (what ``detect_faces --export-dir`` writes).
VECTOR_KEYS = ("embedding_model", "trace_embeddings", "trace_exemplars")
#: A vector's length may differ from 1 by this much: vectors are unit, written rounded (6 decimals
#: give ~1e-5); a vector that was never normalised is refused.
UNIT_TOLERANCE = 0.01
#: Bytes read at a time when looking for the vector keys in a JSON file.
_SCAN_BYTES = 1 << 20


@dataclass
class TraceVectors:
    """Valid face vectors of an import: trace_id → unit mean, trace_id → unit exemplars (best first)."""

    model: str
    means: dict[int, Any] = field(default_factory=dict)
    exemplars: dict[int, list[Any]] = field(default_factory=dict)


def _keys_maybe_in(path: Path) -> set[str]:
    """The :data:`VECTOR_KEYS` that may be in the file: those whose quoted name occurs in its bytes (all of
    them if any ``\\u`` escape does, since a key may be written with escapes).

    A plain byte scan (0.3-0.6 s for 137 MB on this machine) that spares a rows-only file the JSON
    passes of :func:`read_vectors`.
    """
    needles = {key: f'"{key}"'.encode() for key in VECTOR_KEYS}
    keep = max(len(n) for n in needles.values()) - 1
    found: set[str] = set()
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(_SCAN_BYTES):
            window = tail + chunk
            if b"\\u" in window:
                return set(VECTOR_KEYS)
            found |= {key for key, needle in needles.items() if needle in window}
            tail = window[-keep:]
    return found


def read_vectors(path: str | Path) -> dict[str, Any] | None:
    """The face-vector keys of a JSON object file (:data:`VECTOR_KEYS` found in it), or None.

    Each key is read by its own streaming pass, which builds only that key's value: memory grows
    with the number of traces, never with the rows. A key whose name is nowhere in the file costs
    no pass; a rows-only file (CSV, a JSON list, an object without vectors) costs one byte scan.
    """
    path = Path(path)
    with path.open("rb") as handle:
        if handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] != b"{":
            return None
    wanted = _keys_maybe_in(path)
    if not wanted - {"embedding_model"}:
        return None
    found: dict[str, Any] = {}
    try:
        for key in VECTOR_KEYS:
            if key not in wanted:
                continue
            with path.open("rb") as handle:
                for value in ijson.items(handle, key, use_float=True):
                    found[key] = value
    except ijson.JSONError as exc:
        raise _file_error(f"invalid JSON: {exc}") from None
    return found if found.keys() - {"embedding_model"} else None


def _vector(value: Any, where: str, errors: list[str]) -> Any:
    """``value`` as a unit float32 vector of the embedding's length, or None (``errors`` says why)."""
    import numpy as np

    from media_api.faces.embeddings import EMBEDDING_DIM

    if not isinstance(value, list | tuple):
        errors.append(f"{where} must be a list of {EMBEDDING_DIM} numbers")
        return None
    if len(value) != EMBEDDING_DIM:
        errors.append(f"{where} has {len(value)} values, expected {EMBEDDING_DIM}")
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        errors.append(f"{where} must hold numbers only")
        return None
    try:
        vector = np.asarray(value, dtype=np.float64)
    except OverflowError:  # an int too large for a float64
        vector = None
    if vector is None or not np.isfinite(vector).all():
        errors.append(f"{where} must hold finite numbers")
        return None
    norm = float(np.linalg.norm(vector))
    if abs(norm - 1.0) > UNIT_TOLERANCE:
        errors.append(f"{where} must be a unit vector (length 1 ± {UNIT_TOLERANCE}), its length is {norm:.4g}")
        return None
    return (vector / norm).astype(np.float32)


def _vector_trace_id(key: Any, name: str, trace_ids: set[int], errors: list[str]) -> int | None:
    if isinstance(key, int) and not isinstance(key, bool):
        trace_id = key
    elif isinstance(key, str) and key.isascii() and key.isdigit() and str(int(key)) == key:
        trace_id = int(key)  # canonical digits only: "1" and "01" would both name trace 1
    else:
        errors.append(f"{name}: key {str(key)[:40]!r} is not a trace_id")
        return None
    if trace_id not in trace_ids:
        errors.append(f"{name}[{key!r}]: trace {trace_id} has no detection in this import")
        return None
    return trace_id


def validate_vectors(raw: Mapping[str, Any] | None, trace_ids: set[int]) -> tuple[TraceVectors | None, str]:
    """The import's face vectors checked (every bad one listed, :class:`ImportValidationError`), and why
    they will not be stored ("" when they will).

    ``raw`` holds :data:`VECTOR_KEYS` (other keys are ignored); every trace it names must be one of
    the import's ``trace_ids``. Vectors of another model, or of no named model, are not used: they
    are not checked beyond their model's name, and the reason is returned instead.
    """
    import numpy as np

    from media_api.faces.embeddings import MODEL_NAME, normalise
    from media_api.faces.exemplars import MAX_EXEMPLARS

    raw = {k: raw[k] for k in VECTOR_KEYS if raw is not None and raw.get(k) is not None}
    if not raw.keys() - {"embedding_model"}:
        return None, ""
    errors: list[str] = []
    model = raw.get("embedding_model")
    if model is not None and not (isinstance(model, str) and 0 < len(model) <= 64):
        errors.append("embedding_model must be a model name (1..64 characters)")
    for name in ("trace_embeddings", "trace_exemplars"):
        if name in raw and not isinstance(raw[name], dict):
            errors.append(f"{name} must be an object {{trace_id: ...}}")
    if errors:
        raise ImportValidationError([{"row": 0, "errors": errors}])
    if model is None:
        return None, f"face vectors not used: no embedding_model says which model made them ({MODEL_NAME} expected)"
    if model != MODEL_NAME:
        return None, f"face vectors not used: they are {model}'s, this service compares {MODEL_NAME}'s"
    vectors = TraceVectors(model)
    for key, value in raw.get("trace_embeddings", {}).items():
        trace_id = _vector_trace_id(key, "trace_embeddings", trace_ids, errors)
        vector = _vector(value, f"trace_embeddings[{key!r}]", errors)
        if trace_id is not None and vector is not None:
            vectors.means[trace_id] = vector
    for key, value in raw.get("trace_exemplars", {}).items():
        trace_id = _vector_trace_id(key, "trace_exemplars", trace_ids, errors)
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_EXEMPLARS:
            errors.append(f"trace_exemplars[{key!r}] must be a list of 1..{MAX_EXEMPLARS} vectors")
            continue
        chosen = [_vector(v, f"trace_exemplars[{key!r}][{i}]", errors) for i, v in enumerate(value)]
        if trace_id is None or any(v is None for v in chosen):
            continue
        vectors.exemplars[trace_id] = chosen
        if trace_id not in vectors.means:  # no mean given: the exemplars' (the set is what is compared)
            total = sum(chosen)
            if float(np.linalg.norm(total)) < 1e-3 * len(chosen):  # e.g. [v, -v]: no direction to store
                errors.append(f"trace_exemplars[{trace_id}] cancel out: their mean has no direction; "
                              "give trace_embeddings for this trace")
            else:
                vectors.means[trace_id] = normalise(total)
    if errors:
        raise ImportValidationError([{"row": 0, "errors": errors[:MAX_REPORTED_ERRORS]}])
    return vectors, ""


def export_vectors(media_file: MediaFile) -> dict[str, Any]:
    """The file's stored face vectors in the import format: ``embedding_model``, ``trace_embeddings``
    and ``trace_exemplars`` (traces embedded by the current model; 6 decimals, as :func:`validate_vectors`
    reads them back)."""
    from media_api.faces.embeddings import MODEL_NAME, from_bytes
    from media_api.faces.exemplars import unpack

    means: dict[str, list[float]] = {}
    sets: dict[str, list[list[float]]] = {}
    traces = (Trace.objects.filter(file=media_file, embedding_model=MODEL_NAME, embedding__isnull=False)
              .order_by("trace_id").values_list("trace_id", "embedding", "exemplars"))
    for trace_id, embedding, packed in traces.iterator(chunk_size=2000):
        mean = from_bytes(embedding)
        if mean is None:
            continue
        means[str(trace_id)] = [round(float(v), 6) for v in mean]
        matrix = unpack(packed)
        if matrix is not None:
            sets[str(trace_id)] = [[round(float(v), 6) for v in row] for row in matrix]
    return {"embedding_model": MODEL_NAME, "trace_embeddings": means, "trace_exemplars": sets}


def _store_vectors(vectors: TraceVectors, trace_pk: dict[int, int]) -> None:
    """Set each trace's mean, model and exemplars (none given: none kept, the mean is its set)."""
    from media_api.faces.embeddings import to_bytes
    from media_api.faces.exemplars import pack

    traces = [Trace(pk=trace_pk[trace_id], embedding=to_bytes(mean), embedding_model=vectors.model,
                    exemplars=pack(vectors.exemplars[trace_id]) if trace_id in vectors.exemplars else None)
              for trace_id, mean in vectors.means.items()]
    Trace.objects.bulk_update(traces, ["embedding", "embedding_model", "exemplars"], batch_size=1000)


# --------------------------------------------------------------------------- writing


def _chunks(values: Iterable[Any], size: int = SQL_CHUNK) -> Iterator[list[Any]]:
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _resolve_identities(names: set[str]) -> tuple[dict[str, Identity], list[str]]:
    """Each value is an identity uuid or a name; unknown names create identities."""
    resolved: dict[str, Identity] = {}
    uuids = {n.lower() for n in names if UUID_RE.match(n.lower())}
    for chunk in _chunks(uuids):
        for identity in Identity.objects.filter(identity_uuid__in=chunk):
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


_COLUMNS = ("file_id", "trace_id", "frame_number", "x", "y", "width", "height", "confidence", "label", "origin")


def _copy_detections(file_id: int, rows: Iterator[_Row], trace_pk: dict[int, int]) -> int:
    written = 0
    with connection.cursor() as cursor:
        raw_cursor = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw_cursor.copy(f"COPY {Detection._meta.db_table} ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row((file_id, trace_pk[r.trace_id], r.frame_number, r.x, r.y, r.width, r.height,
                                r.confidence, r.label, r.origin))
                written += 1
    return written


def _insert_detections(file_id: int, rows: Iterator[_Row], trace_pk: dict[int, int]) -> int:
    written = 0
    for chunk in _chunks(rows, BATCH_ROWS):
        Detection.objects.bulk_create([
            Detection(file_id=file_id, trace_id=trace_pk[r.trace_id], frame_number=r.frame_number, x=r.x, y=r.y,
                      width=r.width, height=r.height, confidence=r.confidence, label=r.label, origin=r.origin)
            for r in chunk
        ])
        written += len(chunk)
    return written


def _trace_pks(media_file: MediaFile) -> dict[int, int]:
    """trace_id → pk for every trace of the file (one query, no IN list)."""
    return dict(Trace.objects.filter(file=media_file).values_list("trace_id", "pk").iterator(chunk_size=20000))


def import_detections(media_file: MediaFile, rows: RowSource, replace: bool = False,
                      vectors: Mapping[str, Any] | None = None) -> ImportResult:
    """Validate all rows (and face vectors), then write detections, traces, vectors and identity bindings
    atomically.

    ``rows`` is a list of row dicts or a callable returning a fresh iterator over them
    (:func:`read_rows`); it is iterated twice. ``replace`` deletes the file's detections and
    its traces that the import does not name first. ``vectors``: the import's :data:`VECTOR_KEYS`
    (:func:`read_vectors`, or the JSON object itself; :func:`validate_vectors`); each trace they
    name gets its mean, its model and its exemplars (or none: its set is then its mean).
    """
    plan = validate_rows(rows, media_file)
    checked, skipped = validate_vectors(vectors, plan.trace_ids)
    with transaction.atomic():
        existing = _trace_pks(media_file)
        if replace:
            Detection.objects.filter(file=media_file).delete()
            gone = [pk for trace_id, pk in existing.items() if trace_id not in plan.trace_ids]
            for chunk in _chunks(gone):
                Trace.objects.filter(pk__in=chunk).delete()
        new_ids = sorted(plan.trace_ids - existing.keys())
        for chunk in _chunks(new_ids, 2000):
            Trace.objects.bulk_create([Trace(file=media_file, trace_id=t, face_count=0) for t in chunk])
        trace_pk = _trace_pks(media_file) if new_ids else existing
        write = _copy_detections if connection.vendor == "postgresql" else _insert_detections
        written = write(media_file.pk, _valid_rows(rows, media_file), trace_pk)
        if written != plan.rows:
            raise _file_error("the file changed during the import")
        identities, created = _resolve_identities(set(plan.identity_of_trace.values()))
        by_identity: dict[int, list[int]] = {}
        for trace_id, value in plan.identity_of_trace.items():
            by_identity.setdefault(identities[value].pk, []).append(trace_pk[trace_id])
        for identity_pk, pks in by_identity.items():
            for chunk in _chunks(pks):
                Trace.objects.filter(pk__in=chunk).update(identity_id=identity_pk)
        refresh_trace_summaries(trace_pk[t] for t in plan.trace_ids)
        if checked is not None:
            _store_vectors(checked, trace_pk)
    return ImportResult(
        detections=plan.rows,
        traces_created=len(new_ids),
        traces_touched=len(plan.trace_ids),
        identities_bound=len(plan.identity_of_trace),
        identities_created=created,
        traces_embedded=len(checked.means) if checked else 0,
        traces_with_exemplars=len(checked.exemplars) if checked else 0,
        vectors_skipped=skipped,
    )


def import_file(media_file: MediaFile, path: str | Path, replace: bool = False) -> ImportResult:
    """Import a JSON or CSV file (:func:`read_rows`) with the face vectors it carries (:func:`read_vectors`)."""
    return import_detections(media_file, read_rows(path), replace=replace, vectors=read_vectors(path))
