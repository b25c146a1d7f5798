"""Face analysis of a registered file, stored: dense traces, their embeddings, and who people are.

:func:`detect_faces` is the entry point for the command and the job queue: it runs the pipeline
(:mod:`media_api.faces.pipeline`, no database) and stores the result in one transaction through
the importer, so a failed run changes nothing.

Re-detecting a file replaces its traces, but people stay named: before the old traces go, every
new trace is compared with the old *bound* traces — on how many frames their boxes coincide
(IoU ≥ :data:`SAME_BOX_IOU`) and, where both have one, on their face embeddings — and inherits
the identity of the old trace it best continues. Only bound old traces are read, streamed
frame by frame; nothing is loaded per detection in Python beyond one pass.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import transaction

from media_api.faces import calibration, exemplars
from media_api.faces.embeddings import MODEL_NAME, from_bytes, normalise, to_bytes
from media_api.faces.pipeline import FaceAnalysis, analyse_video
from media_api.faces.tracker import iou
from media_api.models import Detection, MediaFile, Trace
from media_api.services.detections_import import import_detections
from media_api.services.files import frame_index_for
from media_api.services.shots import replace_shots

logger = logging.getLogger("media_api.faces")

#: Boxes of an old and a new trace on the same frame are the same face above this overlap.
SAME_BOX_IOU = 0.3
#: A new trace continues an old one when they coincide on at least this share of the shorter one's frames ...
MIN_SHARED = 0.3
#: ... and their embeddings (when both have one, of the same model) are closer than this: the top of the
#: calibrated weak band (the boxes coinciding is most of the evidence).
MAX_EMBEDDING_DISTANCE = calibration.OFFERED_DISTANCE


class FacesAlreadyDetected(Exception):
    """The file already has traces; pass ``replace=True`` to detect again."""


class FrameCountMismatch(RuntimeError):
    """The decoder produced a different number of frames than the registered frame index holds."""


@dataclass
class DetectResult:
    """Summary of one ``detect_faces`` run (what the command prints and a job reports)."""

    file_uuid: str
    detections: int
    traces: int
    frames_decoded: int
    frames_sampled: int
    cuts: list[int] = field(default_factory=list)
    seconds: float = 0.0
    stride: int = 1
    tracked: int = 0
    bindings_kept: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def detect_faces(media_file: MediaFile, stride: int | None = None, replace: bool = False,
                 progress: bool = False) -> DetectResult:
    """Analyse the whole file and store its traces (refuses a file with traces unless ``replace``)."""
    if not replace and Trace.objects.filter(file=media_file).exists():
        raise FacesAlreadyDetected(f"{media_file.file_uuid} already has traces; use --replace to detect again")
    analysis = analyse_video(media_file.path, frame_index_for(media_file), media_file.fps, stride=stride,
                             progress=progress)
    if analysis.frames_decoded != media_file.total_frames:
        raise FrameCountMismatch(f"decoded {analysis.frames_decoded} frames, the frame index has "
                                 f"{media_file.total_frames}; nothing was written")
    return store_analysis(media_file, analysis, replace=replace)


def store_analysis(media_file: MediaFile, analysis: FaceAnalysis, replace: bool = False) -> DetectResult:
    """Write detections, traces and embeddings in one transaction, carrying identities over to the new traces."""
    rows = analysis.rows()
    with transaction.atomic():
        existing = Trace.objects.select_for_update().filter(file=media_file)
        if existing.exists() and not replace:
            raise FacesAlreadyDetected(f"{media_file.file_uuid} already has traces; use --replace to detect again")
        inherited = carried_identities(media_file, analysis)
        Detection.objects.filter(file=media_file).delete()
        existing.delete()
        if rows:
            import_detections(media_file, rows)
            store_trace_embeddings(media_file, analysis.trace_embeddings())
            store_trace_exemplars(media_file, {trace_id: track.embeddings
                                               for trace_id, track in enumerate(analysis.tracks, start=1)},
                                  {trace_id: track.face_qualities()
                                   for trace_id, track in enumerate(analysis.tracks, start=1)})
        for identity_id, trace_ids in _group(inherited).items():
            Trace.objects.filter(file=media_file, trace_id__in=trace_ids).update(identity_id=identity_id)
        replace_shots(media_file, analysis.cuts)  # the cuts it found are the file's shots (issue 22)
    tracked = sum(1 for r in rows if r["origin"] == "tracked")
    return DetectResult(file_uuid=media_file.file_uuid, detections=len(rows), traces=len(analysis.tracks),
                        frames_decoded=analysis.frames_decoded, frames_sampled=analysis.frames_sampled,
                        cuts=analysis.cuts, seconds=analysis.seconds, stride=analysis.stride, tracked=tracked,
                        bindings_kept=len(inherited))


def _group(mapping: dict[int, int]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = defaultdict(list)
    for key, value in mapping.items():
        grouped[value].append(key)
    return grouped


def carried_identities(media_file: MediaFile, analysis: FaceAnalysis) -> dict[int, int]:
    """new trace_id → identity pk, for new traces that continue a bound old trace of the file."""
    bound = dict(Trace.objects.filter(file=media_file, identity__isnull=False).values_list("pk", "identity_id"))
    if not bound:
        return {}
    new_boxes: dict[int, list[tuple[int, tuple[int, int, int, int]]]] = defaultdict(list)
    for trace_id, track in enumerate(analysis.tracks, start=1):
        for frame, box in zip(track.frames, track.boxes, strict=True):
            new_boxes[frame].append((trace_id, box))
    shared: Counter = Counter()
    old_sizes: Counter = Counter()
    old_rows = (Detection.objects.filter(file=media_file, trace__identity__isnull=False).order_by()
                .values_list("trace_id", "frame_number", "x", "y", "width", "height").iterator(chunk_size=10000))
    for old_pk, frame, x, y, w, h in old_rows:
        old_sizes[old_pk] += 1
        for trace_id, box in new_boxes.get(frame, ()):
            if iou((x, y, w, h), box) >= SAME_BOX_IOU:
                shared[(old_pk, trace_id)] += 1
    new_sizes = {trace_id: len(track.frames) for trace_id, track in enumerate(analysis.tracks, start=1)}
    old_embeddings = {pk: from_bytes(blob) for pk, blob in Trace.objects.filter(
        file=media_file, identity__isnull=False, embedding_model=MODEL_NAME).values_list("pk", "embedding")}
    new_embeddings = analysis.trace_embeddings()
    best: dict[int, tuple[int, int]] = {}  # new trace_id → (shared frames, old pk)
    for (old_pk, trace_id), count in shared.items():
        if count < MIN_SHARED * min(old_sizes[old_pk], new_sizes[trace_id]):
            continue
        old, new = old_embeddings.get(old_pk), new_embeddings.get(trace_id)
        if old is not None and new is not None and float(np.linalg.norm(old - new)) > MAX_EMBEDDING_DISTANCE:
            continue  # the same place, but not the same face
        if count > best.get(trace_id, (0, 0))[0]:
            best[trace_id] = (count, old_pk)
    return {trace_id: bound[old_pk] for trace_id, (_, old_pk) in best.items()}


def store_trace_embeddings(media_file: MediaFile, embeddings: dict[int, Any], model: str = MODEL_NAME) -> int:
    """Set ``Trace.embedding`` (float32 bytes, L2-normalised) and ``embedding_model`` by trace_id; returns
    traces updated.

    (An import file's vectors, ``trace_embeddings`` and ``trace_exemplars``, are checked and stored by
    ``detections_import.import_detections`` itself.)
    """
    by_id = {int(k): v for k, v in embeddings.items()}
    traces = list(Trace.objects.filter(file=media_file, trace_id__in=list(by_id)))
    for trace in traces:
        trace.embedding = to_bytes(normalise(np.asarray(by_id[trace.trace_id], dtype=np.float32)))
        trace.embedding_model = model
    Trace.objects.bulk_update(traces, ["embedding", "embedding_model"], batch_size=1000)
    return len(traces)


def store_trace_exemplars(media_file: MediaFile, vectors: dict[int, list[Any]],
                          qualities: dict[int, list[float] | None] | None = None) -> int:
    """Set ``Trace.exemplars`` by trace_id from each track's embedded faces (the pipeline's, already gated
    for size, score, pose and contrast): up to MAX_EXEMPLARS of them, the best by ``qualities`` first
    (``exemplars.quality``: size, pose, sharpness, one per vector, as a re-embed ranks them), then the
    most different (``exemplars.choose``). Without a trace's qualities its faces count the same. Traces
    with no vector are left alone. Returns traces updated.

    ``Trace.embedding`` is not touched here: the pipeline's is the plain mean of every face the track
    embedded (what its pieces were joined by, and what the demo detections record).
    """
    qualities = qualities or {}
    chosen = {}
    for trace_id, faces in vectors.items():
        weights = qualities.get(trace_id)
        if weights is None or len(weights) != len(faces):
            weights = [1.0] * len(faces)
        pairs = [(np.asarray(v, dtype=np.float32), float(q)) for v, q in zip(faces, weights, strict=True)
                 if isinstance(v, np.ndarray)]
        if pairs:
            order = exemplars.choose([v for v, _ in pairs], [q for _, q in pairs])
            chosen[trace_id] = exemplars.pack([pairs[i][0] for i in order])
    traces = list(Trace.objects.filter(file=media_file, trace_id__in=list(chosen)))
    for trace in traces:
        trace.exemplars = chosen[trace.trace_id]
    Trace.objects.bulk_update(traces, ["exemplars"], batch_size=1000)
    return len(traces)


__all__ = ["DetectResult", "FacesAlreadyDetected", "FrameCountMismatch", "carried_identities", "detect_faces",
           "store_analysis", "store_trace_embeddings",
           "store_trace_exemplars"]
