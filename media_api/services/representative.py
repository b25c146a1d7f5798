"""The representative face of a trace, and its 320×320 thumbnail.

Selection (spec §4): stage 1 in SQL — the ``CANDIDATES`` detections with the largest
``area × confidence`` (``quality_score``); stage 2 — decode those frames in one sorted pass
(each GOP once, :mod:`media_api.ffmpeg.frames`), score every face crop with FFmpeg's
``blurdetect`` on a fixed-size luma crop, keep the least blurry (ties: higher
quality_score, then earlier frame). The choice is stored on the trace with the trace's
``detections_version`` and reused until the detections change.

The media work is :func:`warm`, which takes a :class:`WarmUnit` holding everything it needs
and touches no database, so the same function serves one HTTP request in-process and
thousands of traces in ``prewarm_thumbnails``' worker processes. Thumbnails of the winners
are produced in the same pass (the winning frame is already decoded) and cached under a key
made of the face's frame and box.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.db.models import ExpressionWrapper, F, FloatField, Window
from django.db.models.functions import RowNumber

from media_api.ffmpeg import images
from media_api.ffmpeg.frames import FrameReader, FrameReadError, api_error
from media_api.ffmpeg.images import Box
from media_api.ffmpeg.index import FrameIndexData
from media_api.ffmpeg.process import media_job_slot
from media_api.models import Detection, MediaFile, Trace
from media_api.services import image_cache
from media_api.services.files import frame_index_for
from momentry.errors import NotFound

logger = logging.getLogger("media_api.representative")

CANDIDATES = 10
NO_USABLE_FACE = "no usable face"


@dataclass(frozen=True)
class Face:
    """One candidate detection."""

    frame_number: int
    box: Box
    confidence: float

    @property
    def quality_score(self) -> float:
        return self.box.width * self.box.height * self.confidence


@dataclass(frozen=True)
class Representative:
    face: Face
    #: None when blurdetect finds no edge to measure (a dark or flat, low-contrast face: it answers NaN).
    blur_score: float | None


def measured(blur: float | None) -> float | None:
    """A blur score fit for ranking, storing and JSON: NaN (nothing measurable) or infinity is None."""
    return blur if blur is not None and math.isfinite(blur) else None


def _blur_rank(blur: float | None) -> float:
    """Unmeasurable faces rank after every measured one (they show no detail at all)."""
    return math.inf if blur is None else blur


@dataclass
class WarmUnit:
    """One batch of media work on one file: pick faces for ``candidates``, render thumbnails.

    ``rerender`` holds traces whose stored representative is current but whose thumbnail
    is missing from the cache (only the thumbnail is made again).
    """

    file_uuid: str
    path: str
    index: FrameIndexData
    width: int
    height: int
    candidates: dict[int, list[Face]] = field(default_factory=dict)
    rerender: dict[int, Face] = field(default_factory=dict)

    @classmethod
    def for_file(cls, media_file: MediaFile, **parts) -> WarmUnit:
        return cls(media_file.file_uuid, media_file.path, frame_index_for(media_file), media_file.width,
                   media_file.height, **parts)


@dataclass(frozen=True)
class Choice:
    """What :func:`warm` decided for one trace: a representative, or None with a reason."""

    trace_pk: int
    representative: Representative | None
    reason: str = ""


def thumbnail_key(file_uuid: str, face: Face) -> image_cache.ImageKey:
    box = face.box
    return image_cache.ImageKey(
        file_uuid, f"face-{face.frame_number}-{box.x}-{box.y}-{box.width}-{box.height}-{images.THUMBNAIL_SIZE}"
    )


# --------------------------------------------------------------------------- stage 1 (SQL)


def _quality() -> ExpressionWrapper:
    return ExpressionWrapper(F("width") * F("height") * F("confidence"), output_field=FloatField())


def candidates_for(trace_pks: Iterable[int]) -> dict[int, list[Face]]:
    """The top ``CANDIDATES`` detections of each trace by area × confidence, in one query.

    Boxes the detector drew come before boxes the tracker carried between samples (those can lag
    the face by a few pixels): tracked ones only fill in for a trace with fewer than ten.
    """
    pks = list(trace_pks)
    if not pks:
        return {}
    rows = (
        Detection.objects.filter(trace_id__in=pks)
        .annotate(rank=Window(RowNumber(), partition_by=[F("trace_id")],
                              order_by=[F("origin").asc(), _quality().desc(), F("frame_number").asc(),
                                        F("id").asc()]))
        .filter(rank__lte=CANDIDATES)
        .order_by()
        .values_list("trace_id", "frame_number", "x", "y", "width", "height", "confidence")
    )
    found: dict[int, list[Face]] = defaultdict(list)
    for trace_pk, frame, x, y, width, height, confidence in rows:
        found[trace_pk].append(Face(frame, Box(x, y, width, height), confidence))
    return dict(found)


# --------------------------------------------------------------------------- stage 2 (media)


def _usable(box: Box, width: int, height: int) -> Box | None:
    """The box clipped to the frame; None when nothing of it is inside."""
    left, top = max(0, box.x), max(0, box.y)
    right, bottom = min(width, box.x + box.width), min(height, box.y + box.height)
    if right - left < 1 or bottom - top < 1:
        return None
    return Box(left, top, right - left, bottom - top)


class _Decoded:
    """One decoded frame with its luma plane and RGB conversion made on first use."""

    def __init__(self, frame) -> None:
        self.frame = frame
        self._luma = None
        self._rgb = None

    @property
    def luma(self):
        if self._luma is None:
            self._luma = images.luma(self.frame)
        return self._luma

    def thumbnail(self, box: Box) -> bytes:
        if self._rgb is None:
            self._rgb = images.to_rgb(self.frame)
        return images.jpeg_bytes(images.face_square(self._rgb, box))


def warm(unit: WarmUnit) -> list[Choice]:
    """Decode every needed frame of ``unit`` once, pick faces, cache the winners' thumbnails.

    Needs no database. The caller holds a media job slot. Raises :class:`FrameReadError`
    when the file cannot be decoded.
    """
    wanted: dict[int, list[tuple[int, Face]]] = defaultdict(list)  # frame -> (trace, candidate)
    finishing: dict[int, list[int]] = defaultdict(list)  # frame -> traces whose last candidate it is
    rerender: dict[int, list[Face]] = defaultdict(list)
    choices: list[Choice] = []
    for trace_pk, faces in unit.candidates.items():
        usable = [Face(f.frame_number, box, f.confidence) for f in faces
                  if (box := _usable(f.box, unit.width, unit.height)) is not None]
        if not usable:
            choices.append(Choice(trace_pk, None, NO_USABLE_FACE))
            continue
        for face in usable:
            wanted[face.frame_number].append((trace_pk, face))
        finishing[max(f.frame_number for f in usable)].append(trace_pk)
    for face in unit.rerender.values():
        rerender[face.frame_number].append(face)

    best: dict[int, tuple[tuple[float, float, int], Representative, bytes]] = {}
    with FrameReader(unit.path, unit.index) as reader:
        for number, frame in reader.read_many([*wanted, *rerender]):
            decoded = _Decoded(frame)
            for face in rerender.get(number, ()):
                image_cache.store(thumbnail_key(unit.file_uuid, face), decoded.thumbnail(face.box))
            for trace_pk, face in wanted.get(number, ()):
                blur = measured(images.blur_score(decoded.luma, face.box))
                rank = (_blur_rank(blur), -face.quality_score, face.frame_number)
                if trace_pk not in best or rank < best[trace_pk][0]:
                    best[trace_pk] = (rank, Representative(face, blur), decoded.thumbnail(face.box))
            for trace_pk in finishing.get(number, ()):
                _, representative, thumbnail = best.pop(trace_pk)
                image_cache.store(thumbnail_key(unit.file_uuid, representative.face), thumbnail)
                choices.append(Choice(trace_pk, representative))
    return choices


@contextlib.contextmanager
def decoding(file_uuid: str, path: str, wait_seconds: float | None = None) -> Iterator[None]:
    """Hold a media job slot; a file that cannot be decoded becomes a logged ``MediaError``."""
    with media_job_slot(wait_seconds):
        try:
            yield
        except FrameReadError as exc:  # the source's own answer (store down 503, gone 404) or MEDIA_ERROR
            logger.error("decoding %s (%s) failed: %s", file_uuid, path, exc)
            raise api_error(exc) from None


def warm_with_slot(unit: WarmUnit, wait_seconds: float | None = None) -> list[Choice]:
    """:func:`warm` inside a media job slot, with decoding failures as a logged ``MediaError``."""
    with decoding(unit.file_uuid, unit.path, wait_seconds):
        return warm(unit)


# --------------------------------------------------------------------------- stored choice


def stored(trace: Trace) -> Representative | None:
    """The representative stored on the trace, if still current."""
    if not trace.has_current_representative:
        return None
    box = Box(trace.rep_x, trace.rep_y, trace.rep_width, trace.rep_height)
    return Representative(Face(trace.rep_frame_number, box, trace.rep_confidence), measured(trace.rep_blur_score))


def save(trace_pk: int, version: int, representative: Representative) -> bool:
    """Store the choice unless the detections changed meanwhile (then it is simply recomputed)."""
    face = representative.face
    return bool(
        Trace.objects.filter(pk=trace_pk, detections_version=version).update(
            rep_version=version, rep_frame_number=face.frame_number, rep_x=face.box.x, rep_y=face.box.y,
            rep_width=face.box.width, rep_height=face.box.height, rep_confidence=face.confidence,
            rep_quality_score=face.quality_score, rep_blur_score=representative.blur_score,
        )
    )


def representative_for(media_file: MediaFile, trace: Trace) -> Representative:
    """The trace's representative face: stored, or computed now (once, even under concurrency)."""
    representative = stored(trace)
    if representative is not None:
        return representative
    with image_cache.render_lock(f"rep/{trace.pk}/{trace.detections_version}"):
        trace.refresh_from_db()
        representative = stored(trace)
        if representative is not None:
            return representative
        candidates = candidates_for([trace.pk])
        choice = warm_with_slot(WarmUnit.for_file(media_file, candidates=candidates))[0] if candidates else None
        if choice is None or choice.representative is None:
            raise NotFound("This trace has no usable face.", {"trace_id": trace.trace_id})
        save(trace.pk, trace.detections_version, choice.representative)
        return choice.representative


def thumbnail_for(media_file: MediaFile, representative: Representative) -> bytes:
    """The 320×320 JPEG of the face (cached; rendered from one frame when missing)."""
    face = representative.face

    def render() -> bytes:
        with decoding(media_file.file_uuid, media_file.path):
            with FrameReader(media_file.path, frame_index_for(media_file)) as reader:
                return _Decoded(reader.read(face.frame_number)).thumbnail(face.box)

    return image_cache.get_or_render(thumbnail_key(media_file.file_uuid, face), render)


__all__ = [
    "CANDIDATES",
    "Choice",
    "Face",
    "Representative",
    "WarmUnit",
    "candidates_for",
    "decoding",
    "representative_for",
    "save",
    "stored",
    "thumbnail_for",
    "thumbnail_key",
    "warm",
    "warm_with_slot",
]
