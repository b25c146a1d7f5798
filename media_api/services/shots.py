"""Shots: a file's frames split at its hard cuts, stored as one :class:`~media_api.models.Shot` row each.

Face analysis already looks at every frame for cuts (a cut ends every trace), so storing its
shots costs nothing: :func:`media_api.services.faces.store_analysis` calls :func:`replace_shots`
with the cuts the pipeline found (chunked analysis included: :func:`media_api.faces.chunks.stitch`
gathers every chunk's cuts). For a file without face analysis, :func:`detect_shots` (the
``detect_shots`` job and command) decodes the file once through the FFmpeg layer's
:class:`~media_api.ffmpeg.frames.FrameReader` and runs the same
:class:`~media_api.faces.cuts.SceneCutDetector` on the same grey image the face pipeline gives it,
so both paths store the same shots for a file.

A file's shots cover every frame once, in order: shot ``k`` runs from cut ``k-1`` (frame 0 for
the first) to the frame before cut ``k`` (the last frame for the last). Seconds come from the
frame index (:class:`identities.cooccurrence.FrameClock`, variable frame rate included): a
shot's ``end_seconds`` is the end of its last frame, i.e. the next shot's ``start_seconds``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.db.models import Exists, OuterRef

from media_api.faces.cuts import SceneCutDetector
from media_api.faces.pipeline import luma
from media_api.faces.tracker import TRACK_MAX_WIDTH
from media_api.ffmpeg.frames import FrameReader
from media_api.models import MediaFile, Shot
from media_api.services.files import frame_index_for

#: Rows written per INSERT.
BATCH = 1000


class FrameCountMismatch(RuntimeError):
    """The decoder produced a different number of frames than the registered frame index holds."""


def shots_from_cuts(cuts: Iterable[int], total_frames: int) -> list[tuple[int, int]]:
    """``(start_frame, end_frame)`` (inclusive) of each shot of a file of ``total_frames`` with these cuts.

    A cut is the first frame of a new shot; cuts outside ``1..total_frames-1`` and repeats are
    ignored (a cut on frame 0 starts nothing new).
    """
    if total_frames <= 0:
        return []
    starts = [0, *sorted({int(c) for c in cuts if 0 < int(c) < total_frames})]
    ends = [s - 1 for s in starts[1:]] + [total_frames - 1]
    return list(zip(starts, ends, strict=True))


def replace_shots(media_file: MediaFile, cuts: Iterable[int]) -> int:
    """Store the file's shots for these cuts in place of its old ones (one transaction); returns how many."""
    rows = [Shot(file=media_file, index=index, start_frame=start, end_frame=end)
            for index, (start, end) in enumerate(shots_from_cuts(cuts, media_file.total_frames))]
    with transaction.atomic():
        Shot.objects.filter(file=media_file).delete()
        Shot.objects.bulk_create(rows, batch_size=BATCH)
    return len(rows)


def cut_image(grey: np.ndarray) -> np.ndarray:
    """The grey image the face pipeline gives the cut detector: the tracker's image (every
    ``ceil(width / TRACK_MAX_WIDTH)``-th pixel, :meth:`media_api.faces.tracker.FaceTracker.track_image`).

    The same image gives the same cuts, whichever path found them.
    """
    factor = max(1, math.ceil(grey.shape[1] / TRACK_MAX_WIDTH))
    return np.ascontiguousarray(grey[::factor, ::factor])


@dataclass
class DetectShotsResult:
    """Summary of one ``detect_shots`` run (what the command prints and a job reports)."""

    file_uuid: str
    shots: int
    cuts: list[int]
    frames_decoded: int
    seconds: float

    def as_dict(self) -> dict:
        return {"file_uuid": self.file_uuid, "shots": self.shots, "cuts": self.cuts,
                "frames_decoded": self.frames_decoded, "seconds": round(self.seconds, 2)}


def find_cuts(media_file: MediaFile, on_progress: Callable[[int, int], object] | None = None
              ) -> tuple[list[int], int]:
    """Decode every frame once and return ``(cuts, frames decoded)``; ``on_progress`` may raise to stop."""
    index = frame_index_for(media_file)
    total = len(index)
    cuts: list[int] = []
    decoded = 0
    if total == 0:
        return cuts, decoded
    detector = SceneCutDetector()
    report_every = max(1, int(round(media_file.fps or 1)))
    with FrameReader(media_file.path, index) as reader:
        for number, frame in reader.iter_range(0, total - 1):
            if on_progress is not None and number % report_every == 0:
                on_progress(number, total)
            decoded += 1
            if detector.is_cut(cut_image(luma(frame))) and number > 0:
                cuts.append(number)
    return cuts, decoded


def detect_shots(media_file: MediaFile, on_progress: Callable[[int, int], object] | None = None) -> DetectShotsResult:
    """Find the file's hard cuts by decoding it and store its shots (replacing any it had).

    Refuses to store anything when the decoder gives another frame count than the index
    (the shots would be shifted), like face analysis.
    """
    started = time.perf_counter()
    cuts, decoded = find_cuts(media_file, on_progress)
    if decoded != media_file.total_frames:
        raise FrameCountMismatch(f"decoded {decoded} frames, the frame index has {media_file.total_frames}; "
                                 "nothing was written")
    count = replace_shots(media_file, cuts)
    return DetectShotsResult(media_file.file_uuid, count, cuts, decoded, time.perf_counter() - started)


def files_for_shots(file_uuids: Sequence[str], missing: bool = False) -> list[MediaFile]:
    """The files named (all registered files when none is), oldest first; ``missing``: only those without shots."""
    files = MediaFile.objects.order_by("created_at", "pk")
    if file_uuids:
        files = files.filter(file_uuid__in=[u.lower() for u in file_uuids])
    if missing:
        files = files.exclude(Exists(Shot.objects.filter(file_id=OuterRef("pk"))))
    return list(files)


__all__ = ["DetectShotsResult", "FrameCountMismatch", "cut_image", "detect_shots", "files_for_shots", "find_cuts",
           "replace_shots", "shots_from_cuts"]
