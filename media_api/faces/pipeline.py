"""Decode a video, detect and embed faces on every K-th frame, track them, store traces.

Frame numbers are decode-order presentation indices (spec §1): frame N is the N-th frame
PyAV decodes. Every frame is looked at for scene cuts (a 64x36 grey thumbnail, cheap), but
faces are detected only on sampled frames: every ``stride``-th frame, plus the first frame
after each cut so new shots start their traces at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from django.db import transaction
from tqdm import tqdm

from media_api.faces.detector import FaceDetector, work_size
from media_api.faces.embeddings import FaceEmbedder, from_bytes, normalise, to_bytes
from media_api.faces.tracker import Track, Tracker
from media_api.models import Detection, MediaFile, Trace

#: Faces are detected about this many times per second of video by default.
SAMPLES_PER_SECOND = 5
#: Mean absolute grey difference (0..1) between consecutive thumbnails that marks a cut.
CUT_PIXEL_DIFF = 0.08
#: Grey-histogram change (total variation, 0..1) that marks a cut.
CUT_HIST_DIFF = 0.25
#: A track unseen for this many seconds ends.
MAX_GAP_SECONDS = 1.0
#: Traces with fewer detections are dropped.
MIN_FACES = 3


class FrameCountMismatch(RuntimeError):
    """PyAV decoded a different number of frames than the registered frame index holds."""


class FacesAlreadyDetected(Exception):
    """The file already has traces; pass ``replace=True`` to discard them and detect again."""


@dataclass
class FaceAnalysis:
    """What the pipeline found in one video (not yet stored)."""

    tracks: list[Track]
    frames_decoded: int
    frames_sampled: int
    cuts: list[int]
    seconds: float
    stride: int
    faces_embedded: int = 0

    def rows(self) -> list[dict[str, Any]]:
        """Detections in the spec §7 import format; trace ids are 1.. in order of first frame."""
        rows = []
        for trace_id, track in enumerate(self.tracks, start=1):
            for frame_number, face in zip(track.frames, track.faces, strict=True):
                rows.append({"trace_id": trace_id, "frame_number": frame_number, "x": face.x, "y": face.y,
                             "width": face.width, "height": face.height, "confidence": face.confidence,
                             "label": "face"})
        return rows

    def trace_embeddings(self) -> dict[int, np.ndarray]:
        return {trace_id: track.mean_embedding() for trace_id, track in enumerate(self.tracks, start=1)}


@dataclass
class DetectResult:
    """Summary of one ``detect_faces`` run (what the command prints and a task reports)."""

    file_uuid: str
    detections: int
    traces: int
    frames_decoded: int
    frames_sampled: int
    cuts: list[int] = field(default_factory=list)
    seconds: float = 0.0
    stride: int = 1


def default_stride(fps: float) -> int:
    """About :data:`SAMPLES_PER_SECOND` detections per second of video (at least every frame)."""
    return max(1, int(round(fps / SAMPLES_PER_SECOND)))


class SceneCutDetector:
    """Flags a frame whose thumbnail differs sharply from the previous frame's."""

    def __init__(self) -> None:
        self._previous: tuple[np.ndarray, np.ndarray] | None = None

    def is_cut(self, grey: np.ndarray) -> bool:
        grey = grey.astype(np.float32)
        hist = np.histogram(grey, bins=32, range=(0, 256))[0] / grey.size
        previous, self._previous = self._previous, (grey, hist)
        if previous is None:
            return False
        pixel_diff = float(np.abs(grey - previous[0]).mean()) / 255.0
        hist_diff = float(np.abs(hist - previous[1]).sum()) / 2.0
        return pixel_diff >= CUT_PIXEL_DIFF or hist_diff >= CUT_HIST_DIFF


def analyse_video(path: str | Path, fps: float, stride: int | None = None, progress: bool = False,
                  total_frames: int | None = None) -> FaceAnalysis:
    """Run detection, embedding and tracking over the whole video (no database access)."""
    if stride is not None and stride < 1:
        raise ValueError("stride must be at least 1")
    started = time.perf_counter()
    stride = stride or default_stride(fps)
    detector = FaceDetector()
    embedder = FaceEmbedder()
    tracker = Tracker(max_gap=max(stride, int(round(fps * MAX_GAP_SECONDS))), stride=stride, min_faces=MIN_FACES)
    cuts_detector = SceneCutDetector()
    cuts: list[int] = []
    sampled = 0
    decoded = 0
    next_sample = 0
    embedded = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        bar = tqdm(total=total_frames or stream.frames or None, unit="frame", disable=not progress,
                   desc=Path(path).name[:30])
        for frame_number, frame in enumerate(container.decode(stream)):
            decoded += 1
            bar.update(1)
            if cuts_detector.is_cut(frame.to_ndarray(format="gray", width=64, height=36)):
                cuts.append(frame_number)
                tracker.cut()
                next_sample = frame_number
            if frame_number < next_sample:
                continue
            next_sample = frame_number + stride
            sampled += 1
            embedded += _detect_on_frame(frame, frame_number, detector, embedder, tracker)
        bar.close()
    return FaceAnalysis(tracks=tracker.finish(), frames_decoded=decoded, frames_sampled=sampled, cuts=cuts,
                        seconds=time.perf_counter() - started, stride=stride, faces_embedded=embedded)


def _detect_on_frame(frame: av.VideoFrame, frame_number: int, detector: FaceDetector, embedder: FaceEmbedder,
                     tracker: Tracker) -> int:
    width, height = frame.width, frame.height
    work_w, work_h, scale, upsample = work_size(width, height)
    rgb = frame.to_ndarray(format="rgb24")
    work = rgb if scale == 1.0 else frame.to_ndarray(format="rgb24", width=work_w, height=work_h)
    scale_used = work_w / width if scale != 1.0 else 1.0
    faces = detector.detect(work, scale_used, upsample, width, height)
    return tracker.update(frame_number, faces, lambda chosen: embedder.embed(rgb, chosen))


def store_analysis(media_file: MediaFile, analysis: FaceAnalysis, replace: bool = False) -> tuple[int, int]:
    """Write detections, traces and trace embeddings in one transaction; (detections, traces)."""
    from media_api.services.detections_import import import_detections

    rows = analysis.rows()
    with transaction.atomic():
        existing = Trace.objects.filter(file=media_file)
        if existing.exists():
            if not replace:
                raise FacesAlreadyDetected(
                    f"{media_file.file_uuid} already has traces; use --replace to detect again")
            # Old trace ids would otherwise keep their identity bindings on different people.
            Detection.objects.filter(file=media_file).delete()
            existing.delete()
        if not rows:
            return 0, 0
        result = import_detections(media_file, rows)
        store_trace_embeddings(media_file, analysis.trace_embeddings())
    return result.detections, result.traces_touched


def store_trace_embeddings(media_file: MediaFile, embeddings: dict[int, Any]) -> int:
    """Set ``Trace.embedding`` (float32 bytes, L2-normalised) by trace_id; returns traces updated.

    Also used by the demo loader for the ``trace_embeddings`` key of demo/detections/*.json.
    """
    traces = list(Trace.objects.filter(file=media_file, trace_id__in=[int(k) for k in embeddings]))
    by_id = {int(k): v for k, v in embeddings.items()}
    for trace in traces:
        trace.embedding = to_bytes(normalise(np.asarray(by_id[trace.trace_id], dtype=np.float32)))
    Trace.objects.bulk_update(traces, ["embedding"], batch_size=1000)
    return len(traces)


def detect_faces(media_file: MediaFile, stride: int | None = None, replace: bool = False,
                 progress: bool = True) -> DetectResult:
    """Detect, embed and track faces in a registered file and store the traces (the task entry point)."""
    analysis = analyse_video(media_file.path, media_file.fps, stride=stride, progress=progress,
                             total_frames=media_file.total_frames)
    if analysis.frames_decoded != media_file.total_frames:
        # Frame numbers would not match the registered frame index; refuse rather than misplace boxes.
        raise FrameCountMismatch(f"decoded {analysis.frames_decoded} frames, the frame index has "
                           f"{media_file.total_frames}")
    detections, traces = store_analysis(media_file, analysis, replace=replace)
    return DetectResult(file_uuid=media_file.file_uuid, detections=detections, traces=traces,
                        frames_decoded=analysis.frames_decoded, frames_sampled=analysis.frames_sampled,
                        cuts=analysis.cuts, seconds=analysis.seconds, stride=analysis.stride)


__all__ = ["DetectResult", "FaceAnalysis", "FacesAlreadyDetected", "FrameCountMismatch", "analyse_video",
           "default_stride", "detect_faces", "from_bytes", "store_analysis", "store_trace_embeddings"]
