"""Search by photo: the faces of an uploaded still image, matched against every stored trace vector.

Three steps, each its own function so the benchmark and the tests can reach them:

1. :func:`read_image` decodes the upload with **Pillow** (a still image needs no FFmpeg): only JPEG,
   PNG and WebP are opened (``formats=``), the declared size is checked *before* any pixel is
   decoded (:data:`MAX_IMAGE_PIXELS`, so a decompression bomb costs a header read), EXIF
   orientation is applied (a phone photo's faces are upright, which the detector needs) and the
   picture is shrunk to the detector's own working size (:data:`ANALYSIS_PIXELS`; JPEG decodes
   straight at a reduced scale with ``draft``), so memory stays bounded whatever was uploaded.
2. :func:`faces_in` runs the pipeline's detector (YuNet, verified by BlazeFace) and, for faces big
   and sure enough, the pipeline's alignment and SFace embedding (``media_api.faces``) — the same
   vector space as every trace the pipeline stores, so the calibrated thresholds apply.
3. :func:`match` compares each face with the trace vectors in the caller's scope. The vectors live
   in an **in-process matrix** (:class:`VectorIndex`): exact search, one matrix-vector product per
   face (100 000 traces with their exemplars: ~20 ms of CPU, docs/BENCHMARKS.md), no recall loss. Every
   web process keeps its own copy and checks before each search that it is current with one cheap
   query (:func:`vectors_stamp`); the candidates it finds are then read again from the database
   (identity, hidden flag, scope, the vector itself), so a binding, a rename, a hidden trace or a
   deleted file is never answered from a stale copy.

Only vectors of the current model (``embeddings.MODEL_NAME``) are ever loaded: vectors of two
models are not comparable. Where trace vectors come from is one selector,
:func:`comparable_vectors` (with :func:`vectors_stamp` beside it): a trace may give several rows
(exemplars), the search keeps each trace's nearest one.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Max, Q, QuerySet
from PIL import Image, ImageOps, UnidentifiedImageError

from identities.models import Identity
from media_api.faces import calibration
from media_api.faces.embeddings import EMBEDDING_DIM, MODEL_NAME, align_face, embed_aligned
from media_api.models import Trace
from momentry.errors import BadRequest, PayloadTooLarge

logger = logging.getLogger("media_api.face_search")

#: Largest upload accepted (the image part of the multipart body).
MAX_IMAGE_BYTES = 10 * 1024 * 1024
#: Largest picture decoded (width x height as declared in its header): 40 MP holds an 8K frame
#: (33 MP) and any phone photo; a decoded 40 MP RGB picture is 120 MB, so more is refused unread.
MAX_IMAGE_PIXELS = 40_000_000
#: Formats opened (Pillow is never asked to guess among its other decoders).
FORMATS = ("JPEG", "PNG", "WEBP")
#: The detector works on at most this many pixels (media_api.faces.yunet.MAX_PIXELS); larger pictures
#: are shrunk to it on decoding.
ANALYSIS_PIXELS = 1920 * 1080
#: At most this many faces (the largest) of one picture are embedded and searched; the others are
#: listed with ``embedded: false``. An embedding costs ~30 ms of CPU.
MAX_SEARCHED_FACES = 20
#: Faces smaller than this (pixels high, in the analysed picture) or scored under MIN_EMBED_SCORE are not
#: embedded: the pipeline's own gate (media_api.faces.tracker), below which the thresholds were not measured.
MIN_EMBED_HEIGHT = 32
MIN_EMBED_SCORE = 0.6
#: Matches farther than this are not answered; matches this close are ``confident`` (calibration.py): a face
#: against a trace's exemplars is a closest-pair comparison of sets, calibrated as such.
OFFERED_DISTANCE = calibration.SET_OFFERED_DISTANCE
CONFIDENT_DISTANCE = calibration.SET_CONFIDENT_DISTANCE
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
#: Nearest candidates read back from the database per round, and at most in all (per face).
CANDIDATE_BATCH = 256
MAX_CANDIDATES = 4096
#: The in-process copy is reloaded at least this often even when the stamp has not moved: a vector
#: replaced in place by code that does not call :func:`embeddings_changed` is seen within this time.
MAX_INDEX_AGE_SECONDS = 600
#: Shared-cache key holding a token that changes whenever vectors are replaced in place.
CHANGE_TOKEN_KEY = "momentry:face-search:vectors"


# --------------------------------------------------------------------------- 1. the image


class ImageRejected(BadRequest):
    """The upload is not a JPEG, PNG or WebP picture Pillow can decode."""


@dataclass(frozen=True)
class Picture:
    """The decoded picture shrunk for analysis (RGB), and the size the client's picture has."""

    rgb: np.ndarray
    width: int  # of the uploaded picture, after its EXIF orientation
    height: int
    format: str

    @property
    def scale(self) -> float:
        """Picture pixels per analysed pixel."""
        return self.width / self.rgb.shape[1]


def _too_many_pixels(width: int, height: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The image is {width}x{height} pixels; at most {MAX_IMAGE_PIXELS} pixels are decoded.",
                           {"parameter": "image", "width": width, "height": height, "max_pixels": MAX_IMAGE_PIXELS})


def check_upload_size(size: int) -> None:
    """413 for an image part larger than MAX_IMAGE_BYTES."""
    if size > MAX_IMAGE_BYTES:
        raise PayloadTooLarge(f"The image is larger than {MAX_IMAGE_BYTES} bytes.",
                              {"parameter": "image", "max_bytes": MAX_IMAGE_BYTES, "size": size})


def read_image(stream: IO[bytes]) -> Picture:
    """The uploaded picture, decoded within bounds (see the module docstring).

    A picture whose header declares more than MAX_IMAGE_PIXELS is a 413 before decoding (Pillow's
    own decompression-bomb guard, at 2 x 89 MP, is never reached); anything Pillow cannot open as
    JPEG, PNG or WebP, or cannot decode to the end, is a 400.
    """
    try:
        image = Image.open(stream, formats=FORMATS)  # reads the header only
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise _too_many_pixels(width, height)
        image.draft("RGB", _analysis_size(width, height))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        image.load()
        oriented = ImageOps.exif_transpose(image)
        if oriented.size[0] != image.size[0]:  # turned by 90 degrees: the client's picture is too
            width, height = height, width
        rgb = oriented.convert("RGB")
        rgb.thumbnail(_analysis_size(width, height), Image.Resampling.LANCZOS)
        return Picture(np.asarray(rgb), width, height, image.format or "")
    except PayloadTooLarge:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own guard (2 x 89 MP), met before ours
        raise PayloadTooLarge(f"The image has too many pixels: {exc}", {"parameter": "image",
                              "max_pixels": MAX_IMAGE_PIXELS}) from None
    except UnidentifiedImageError:
        raise ImageRejected("The image is not a JPEG, PNG or WebP picture.", param="image",
                            formats=list(FORMATS)) from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:  # truncated, corrupt, odd modes
        raise ImageRejected(f"The image cannot be decoded: {type(exc).__name__}.", param="image") from None


def _analysis_size(width: int, height: int) -> tuple[int, int]:
    shrink = min(1.0, (ANALYSIS_PIXELS / max(1, width * height)) ** 0.5)
    return max(1, round(width * shrink)), max(1, round(height * shrink))


# --------------------------------------------------------------------------- 2. the faces


@dataclass(frozen=True)
class QueryFace:
    """One face of the picture: its box in the client's picture pixels, the detector's score and its vector
    (None when it cannot be compared: ``reason`` says why)."""

    x: int
    y: int
    width: int
    height: int
    confidence: float
    vector: np.ndarray | None
    reason: str | None = None


_models_lock = threading.Lock()  # OpenCV's and LiteRT's objects are not thread-safe


def faces_in(picture: Picture) -> list[QueryFace]:
    """Every face the pipeline's detector finds, largest first; the MAX_SEARCHED_FACES largest readable
    ones embedded with SFace (aligned on YuNet's landmarks, as the pipeline does)."""
    from media_api.faces.detector import detect  # this process's detector (loads its models once)

    with _models_lock:
        found = sorted(detect(picture.rgb), key=lambda f: -f.width * f.height)
        faces = []
        for rank, face in enumerate(found):
            vector, reason = None, None
            if rank >= MAX_SEARCHED_FACES:
                reason = f"only the {MAX_SEARCHED_FACES} largest faces of a picture are searched"
            elif face.height < MIN_EMBED_HEIGHT or face.score < MIN_EMBED_SCORE:
                reason = "too small or too unsure a face to compare"
            else:
                aligned = align_face(picture.rgb, face.box)
                if aligned is None:
                    reason = "the face cannot be read (turned away, dark or blurred)"
                else:
                    vector = embed_aligned(aligned)
            s = picture.scale
            x, y = round(face.x * s), round(face.y * s)
            faces.append(QueryFace(x, y, min(picture.width - x, round(face.width * s)),
                                   min(picture.height - y, round(face.height * s)), face.confidence, vector, reason))
        return faces


# --------------------------------------------------------------------------- 3. the vectors


def comparable_vectors(trace_pks: Sequence[int] | None = None, *, rows: QuerySet[Trace] | None = None,
                       also: Sequence[str] = ()) -> Iterable[tuple[Any, ...]]:
    """(trace pk, file pk, vector bytes, *``also``) of every trace whose vectors a new face can be compared
    with: its stored vectors when they are of the current model (hidden ones too: :func:`match` reads the
    hidden flag back with the candidates, so hiding or un-hiding needs no reload).

    The one place the search reads trace vectors from (the whole set, or ``trace_pks`` of ``rows`` with the
    fields ``also`` names, in one query); a trace yields several rows (its exemplar vectors), each
    little-endian float32 of EMBEDDING_DIM.
    """
    found = (Trace.objects.all() if rows is None else rows).filter(
        embedding__isnull=False, embedding_model=MODEL_NAME).order_by().values_list(
        "pk", "file_id", "exemplars", "embedding", *also)
    if trace_pks is not None:
        return list(_exemplar_rows(found.filter(pk__in=list(trace_pks))))  # a few hundred rows: one round trip
    return _exemplar_rows(found.iterator(chunk_size=5000))  # the whole set: streamed


def _exemplar_rows(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """One row per exemplar vector of each trace (``Trace.exemplars``, media_api.faces.exemplars), or its
    mean when it has none: a face is compared with every look the trace kept (closest pair)."""
    size = EMBEDDING_DIM * 4
    for trace_pk, file_pk, packed, blob, *rest in rows:
        packed = bytes(packed) if packed is not None else b""
        if packed and len(packed) % size == 0:
            for start in range(0, len(packed), size):
                yield trace_pk, file_pk, packed[start:start + size], *rest
        else:
            yield trace_pk, file_pk, blob, *rest


def vectors_stamp() -> tuple[Any, ...]:
    """What changes whenever :func:`comparable_vectors` gives new rows, read before every search: the highest
    trace pk (one step down the primary-key index: a new file's traces and their vectors are stored in one
    transaction, media_api.services.faces.store_analysis), and the token :func:`embeddings_changed` renews
    when vectors of existing traces are replaced (re-embedding). Rows that went away need no reload: the
    candidates are read back. Counting the vectors instead would scan the table (17-26 ms at 100 000 traces
    on PostgreSQL, docs/BENCHMARKS.md); the primary key's maximum costs ~0.1 ms."""
    return Trace.objects.aggregate(top=Max("pk"))["top"], _change_token()


def _change_token() -> str | None:
    try:
        return cache.get(CHANGE_TOKEN_KEY)
    except Exception:  # noqa: BLE001 - a shared cache that is down: keep the copy (MAX_INDEX_AGE_SECONDS bounds it)
        logger.warning("face search: the shared cache does not answer; vectors replaced in place are seen within "
                       "%s s", _max_age())
        return "unavailable"


def embeddings_changed() -> None:
    """Tell every web process that trace vectors were replaced in place (call after the transaction that did
    it): their next search reloads. New, deleted and hidden traces need no call."""
    def renew() -> None:
        try:
            cache.set(CHANGE_TOKEN_KEY, uuid.uuid4().hex, timeout=None)
        except Exception:  # noqa: BLE001 - the copies then follow within MAX_INDEX_AGE_SECONDS
            logger.warning("face search: could not renew the change token (shared cache down)")

    transaction.on_commit(renew)


@dataclass
class VectorIndex:
    """Every comparable vector as one float32 matrix (rows are unit vectors), with each row's trace and file."""

    matrix: np.ndarray
    trace_pks: np.ndarray
    file_pks: np.ndarray
    stamp: tuple[Any, ...] = ()
    loaded_at: float = field(default_factory=time.monotonic)

    @classmethod
    def load(cls, stamp: tuple[Any, ...] = ()) -> VectorIndex:
        """Read every comparable vector (one streamed query)."""
        traces, files, blobs = [], [], []
        for trace_pk, file_pk, blob in comparable_vectors():
            blob = bytes(blob)
            if len(blob) == EMBEDDING_DIM * 4:
                traces.append(trace_pk)
                files.append(file_pk)
                blobs.append(blob)
        matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(-1, EMBEDDING_DIM).astype(np.float32)
        files_of = np.asarray(files, dtype=np.int64)
        order = np.argsort(files_of, kind="stable")  # a file's rows together: one file is one slice
        return cls(np.ascontiguousarray(matrix[order]), np.asarray(traces, dtype=np.int64)[order], files_of[order],
                   stamp)

    def __len__(self) -> int:
        return len(self.trace_pks)

    def rows_of(self, files: np.ndarray | None) -> slice | np.ndarray:
        """The rows of these files: every row (None), one slice (one file), or a mask."""
        if files is None:
            return slice(None)
        if len(files) == 1:
            return slice(int(np.searchsorted(self.file_pks, files[0], side="left")),
                         int(np.searchsorted(self.file_pks, files[0], side="right")))
        return np.isin(self.file_pks, files)

    def distances(self, queries: np.ndarray, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Euclidean distance of each query to each of ``rows`` (faces x rows): sqrt(2 - 2 cos) for unit
        vectors."""
        matrix = self.matrix[rows]
        # One matrix-vector product per face: OpenBLAS's matrix product for a few columns repacks the whole
        # matrix first (3 faces: 84 ms instead of 3 x 17 ms at 227 000 rows, bench_face_search).
        similarity = np.vstack([matrix @ query for query in queries])
        return np.sqrt(np.clip(2.0 - 2.0 * similarity, 0.0, None))


_index: VectorIndex | None = None
_index_lock = threading.Lock()


def current_index() -> VectorIndex:
    """This process's copy of the vectors, reloaded when the stamp moved or it is MAX_INDEX_AGE_SECONDS old."""
    global _index
    stamp = vectors_stamp()
    index = _index
    if index is not None and index.stamp == stamp and time.monotonic() - index.loaded_at < _max_age():
        return index
    with _index_lock:
        if _index is None or _index.stamp != stamp or time.monotonic() - _index.loaded_at >= _max_age():
            _index = VectorIndex.load(stamp)
        return _index


def _max_age() -> float:
    return float(getattr(settings, "MOMENTRY_FACE_SEARCH_MAX_AGE", MAX_INDEX_AGE_SECONDS))


def forget_index() -> None:
    """Drop this process's copy (tests: a rolled-back database can repeat a stamp)."""
    global _index
    _index = None


# --------------------------------------------------------------------------- 4. matching


@dataclass(frozen=True)
class TraceMatch:
    trace_pk: int
    file_uuid: str
    trace_id: int
    distance: float

    @property
    def confident(self) -> bool:
        return self.distance <= CONFIDENT_DISTANCE


@dataclass(frozen=True)
class IdentityMatch:
    identity_uuid: str
    name: str
    source: str
    status: str
    best: TraceMatch

    @property
    def distance(self) -> float:
        return self.best.distance


@dataclass
class FaceMatches:
    identities: list[IdentityMatch] = field(default_factory=list)
    traces: list[TraceMatch] = field(default_factory=list)


def as_pks(pks: Iterable[int]) -> np.ndarray:
    """File pks (a list or a ``values_list`` query) as the array :func:`match` takes."""
    return np.fromiter(pks, dtype=np.int64)


def match(vectors: Sequence[np.ndarray], *, limit: int = DEFAULT_LIMIT, files: np.ndarray | None = None,
          trace_scope: Q | None = None, index: VectorIndex | None = None) -> list[FaceMatches]:
    """For each query vector: up to ``limit`` identities (each by its nearest trace) and ``limit`` unbound
    traces within OFFERED_DISTANCE, nearest first.

    ``files`` (file pks, :func:`as_pks`) limits the rows compared; ``trace_scope`` (the caller's scope on
    ``file_id``) is applied again when the candidates are read back, with everything else that may have
    changed since the copy was loaded.
    """
    if not vectors:
        return []
    index = index or current_index()
    queries = np.vstack(vectors).astype(np.float32)
    rows = index.rows_of(files)
    distances = index.distances(queries, rows)
    trace_pks = index.trace_pks[rows]
    return [_matches_of(trace_pks, row, limit, trace_scope, query) for row, query in zip(distances, queries,
                                                                                          strict=True)]


def _matches_of(trace_pks: np.ndarray, distances: np.ndarray, limit: int, trace_scope: Q | None,
                query: np.ndarray) -> FaceMatches:
    near = np.flatnonzero(distances <= OFFERED_DISTANCE)
    near = near[np.argsort(distances[near], kind="stable")][:MAX_CANDIDATES]
    # A trace with several vectors: its nearest row comes first; keep that one.
    _, first = np.unique(trace_pks[near], return_index=True)
    ordered = trace_pks[near[np.sort(first)]]
    result = FaceMatches()
    seen: dict[int, IdentityMatch] = {}
    for start in range(0, len(ordered), CANDIDATE_BATCH):
        for found, identity in _read_back(ordered[start:start + CANDIDATE_BATCH].tolist(), trace_scope, query):
            if identity is None:
                result.traces.append(found)
            elif identity.identity_uuid not in seen or found.distance < seen[identity.identity_uuid].distance:
                seen[identity.identity_uuid] = IdentityMatch(identity.identity_uuid, identity.name, identity.source,
                                                             identity.status, found)
        if len(seen) >= limit and len(result.traces) >= limit:
            break
    result.identities = sorted(seen.values(), key=lambda m: (m.distance, m.name))[:limit]
    result.traces = sorted(result.traces, key=lambda m: (m.distance, m.file_uuid, m.trace_id))[:limit]
    return result


@dataclass(frozen=True)
class _Who:
    identity_uuid: str
    name: str
    source: str
    status: str


def _read_back(trace_pks: list[int], trace_scope: Q | None, query: np.ndarray) -> list[tuple[TraceMatch, _Who | None]]:
    """The candidates as they are now, in one query: in scope, not hidden, their current vectors (distances
    computed again from them) and identity. A trace bound to a deactivated identity counts as unbound (it
    has no name in use)."""
    rows = Trace.objects.filter(ignored=False)
    if trace_scope is not None:
        rows = rows.filter(trace_scope)
    found = comparable_vectors(trace_pks, rows=rows, also=(
        "file__file_uuid", "trace_id", "identity__identity_uuid", "identity__name", "identity__source",
        "identity__status"))
    found = [row for row in found if len(bytes(row[2])) == EMBEDDING_DIM * 4]
    if not found:
        return []
    matrix = np.frombuffer(b"".join(bytes(row[2]) for row in found), dtype="<f4").reshape(-1, EMBEDDING_DIM)
    distances = np.linalg.norm(matrix - query, axis=1).tolist()
    nearest: dict[int, tuple[float, tuple[Any, ...]]] = {}
    for row, distance in zip(found, distances, strict=True):
        if distance < nearest.get(row[0], (np.inf,))[0]:
            nearest[row[0]] = (distance, row[3:])
    matches = []
    for trace_pk, (distance, (file_uuid, trace_id, identity_uuid, name, source, status)) in nearest.items():
        if distance > OFFERED_DISTANCE:
            continue
        who = None
        if identity_uuid is not None and status != Identity.Status.INACTIVE:
            who = _Who(identity_uuid, name, source, status)
        matches.append((TraceMatch(trace_pk, file_uuid, trace_id, round(distance, 4)), who))
    return matches
