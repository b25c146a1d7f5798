"""Face detection with OpenCV Zoo's YuNet (``zoo.py``), verified by BlazeFace where YuNet is unsure.

YuNet (a 0.12 MB int8 network, its weights folded to float32 and run by onnxruntime with OpenCV's decoding:
``zoo.YuNet``) runs on the whole frame at its own
size — a 1080p frame is one input, no tiles — and finds faces from about 12 px up; a second pass
on the frame at a quarter size catches faces too large for the native pass (a 600 px profile in
1080p). Frames from 720p up to 1080p are searched for small faces enlarged to 1080p (:data:`SMALL_FACE_ENLARGE`),
so a face gets as many of YuNet's pixels as it would in a 1080p frame. Asked not to look for small faces
(``small_faces=False``, the pipeline's every other sample of 720p and more), the native pass sees the
frame at half size instead: a quarter of the cost, faces from
about :data:`REDUCED_MIN_FACE_PX`. Every box then gets a second opinion from BlazeFace (``blazeface.py``, the Faces v2
detector), which scores a crop of the box with context: boxes YuNet is unsure of (:data:`MIN_SCORE`
.. :data:`SURE_SCORE`) are dropped when it scores them under :data:`VERIFY_SCORE` (most backs of
heads, hands and emblems), and every face's score is the lower of the two — the scale of Faces v2's
scores, on which the tracker's embedding gate was set, so a dark or blurred face both detectors
doubt is followed but not embedded. The second opinion reads four boxes per 192x192 input.
Why YuNet, and every threshold: measured on the demo's labelled
frames and on the small-face set (bench/faces_small), docs/faces.md ("Small faces"). BlazeFace
alone, on tiles, found no face under ~24 px.

Landmarks (frame pixels, YuNet's order): right eye, left eye, nose tip, right and left mouth
corner — the person's right is on the image's left.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from media_api.faces import zoo
from media_api.faces.blazeface import BlazeFaceDetector, DetectedFace

#: YuNet boxes scoring below this are dropped (OpenCV Zoo's demo threshold).
MIN_SCORE = 0.7
#: YuNet boxes scoring at least this are kept as they are; those between MIN_SCORE and this are verified.
SURE_SCORE = 0.85
#: An unsure box is kept when BlazeFace's verification scores it at least this.
VERIFY_SCORE = 0.2
#: Sure boxes shorter than this get no second opinion and keep YuNet's score: for a sure box BlazeFace only
#: lowers the score, which decides whether a face is embedded, and faces this small never are
#: (``tracker.MIN_EMBED_HEIGHT``). In a crowd they are most boxes: ~13 ms a 720p sample, ~23 ms at 1080p.
#: (BlazeFace reads four boxes to an input, so the bigger sure boxes' scores may move by a few hundredths
#: with the company they lost.)
SECOND_OPINION_MIN_PX = 32
#: Frames are analysed at most this many pixels (a 1920x1080 frame); larger ones are shrunk first,
#: so the cost per frame stays bounded (a 4K frame then finds faces from about 24 px).
MAX_PIXELS = 1920 * 1080
#: The second pass sees the frame shrunk this many times (a 600 px face becomes 150 px, a size YuNet
#: knows well) and costs 1/16 of the native pass; it keeps only faces at least BIG_PASS_MIN_PX tall
#: (frame pixels): smaller ones come from the native pass, which sees them better.
BIG_PASS_SHRINK = 4
BIG_PASS_MIN_PX = 128
#: Boxes of the two passes overlapping more than this (IoU) are one face; the better-scored box is kept.
NMS_IOU = 0.3
#: A frame of at least this many pixels may be searched without its small faces (``small_faces=False``):
#: the native pass then sees it shrunk REDUCED_SHRINK times (a quarter of the work; faces from about
#: REDUCED_MIN_FACE_PX). Smaller frames are always searched whole (their native pass is cheap).
REDUCED_MIN_PIXELS = 1280 * 720
REDUCED_SHRINK = 2
#: The smallest face (frame pixels high) a reduced search is expected to find: YuNet finds faces from
#: about 12 px of its input, and on the labelled sets the half-size pass missed faces up to 52 px
#: that the native pass found (docs/faces.md, "Speed").
REDUCED_MIN_FACE_PX = 56
#: Frames from REDUCED_MIN_PIXELS (720p) up to MAX_PIXELS are searched for small faces enlarged up to this many
#: times (at most to MAX_PIXELS: 1280x720 becomes 1920x1080), so their small faces reach YuNet with as many
#: pixels as a 1080p frame's would: 16-24 px faces of a 720p crowd become 24-36 px (docs/faces.md, "Crowds").
SMALL_FACE_ENLARGE = 1.5



class YuNetDetector:
    """Finds faces in an RGB frame of any size, best score first. One instance per thread of work (BlazeFace's
    interpreter is not thread-safe; YuNet's onnxruntime session, one per process, is); ``threads`` goes to
    BlazeFace's interpreter. OpenCV keeps its own
    thread count: changing it (``cv2.setNumThreads``) in a worker forked from a process whose OpenCV
    threads already ran deadlocks in OpenCV (seen in the test suite).

    ``native_only`` and ``verify=False`` switch parts off, to measure them (bench/eval_faces.py)."""

    def __init__(self, threads: int = 2, *, min_score: float = MIN_SCORE, native_only: bool = False,
                 verify: bool = True) -> None:
        self.min_score = min_score
        self.native_only = native_only
        self._verifier = BlazeFaceDetector(threads=threads, short_range=False) if verify else None

    def detect(self, rgb: np.ndarray, small_faces: bool = True) -> list[DetectedFace]:
        """Faces of ``rgb``, best score first. ``small_faces=False`` may skip faces under about
        :data:`REDUCED_MIN_FACE_PX` on big frames (see :func:`reduces`) for a quarter of the work."""
        height, width = rgb.shape[:2]
        faces = [face for face in (_face(r, width, height) for r in self.candidates(rgb, small_faces))
                 if face is not None]
        return self.verify(rgb, faces)

    def verify(self, rgb: np.ndarray, faces: list[DetectedFace]) -> list[DetectedFace]:
        """YuNet's ``faces`` of ``rgb`` after BlazeFace's second opinion (:meth:`verified`), those it drops left out."""
        return [face for face in self.verified(rgb, faces) if face is not None]

    def verified(self, rgb: np.ndarray, faces: list[DetectedFace]) -> list[DetectedFace | None]:
        """Each of YuNet's ``faces`` after BlazeFace's second opinion: None for an unsure one it does not confirm,
        else the face with the lower of the two scores (unchanged without a verifier). Sure faces under
        SECOND_OPINION_MIN_PX are returned as they are (BlazeFace would only lower their score)."""
        if self._verifier is None:
            return list(faces)
        # Unsure boxes BlazeFace does not confirm are dropped. Every face keeps the lower of its two
        # scores: the confidence stays on the scale of Faces v2's (BlazeFace's verification score), on
        # which the tracker's embedding gate was set, and a face both detectors doubt (dark, blurred)
        # is kept as a face but not embedded. Unsure and sure boxes are read in separate batches (four
        # cells share one BlazeFace input, so a batch's company shifts a score by a few hundredths).
        second: dict[int, float] = {}
        for group in ([i for i, f in enumerate(faces) if f.score < SURE_SCORE],
                      [i for i, f in enumerate(faces) if f.score >= SURE_SCORE and f.height >= SECOND_OPINION_MIN_PX]):
            boxes = [(faces[i].x, faces[i].y, faces[i].width, faces[i].height) for i in group]
            second.update(zip(group, self._verifier.second_opinion(rgb, boxes), strict=True))
        kept: list[DetectedFace | None] = []
        for i, face in enumerate(faces):
            if i not in second:  # sure and too small ever to be embedded: no opinion asked
                kept.append(face)
            elif face.score >= SURE_SCORE or second[i] >= VERIFY_SCORE:
                kept.append(replace(face, score=round(min(face.score, second[i]), 4)))
            else:
                kept.append(None)
        return kept

    def candidates(self, rgb: np.ndarray, small_faces: bool = True) -> list[np.ndarray]:
        """YuNet's rows (frame pixels, best score first) of both passes, merged, before the second opinion."""
        height, width = rgb.shape[:2]
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        shrink = min(1.0, (MAX_PIXELS / (width * height)) ** 0.5)
        if shrink < 1.0:
            bgr = cv2.resize(bgr, (round(width * shrink), round(height * shrink)), interpolation=cv2.INTER_AREA)
        enlarge = min(SMALL_FACE_ENLARGE, (MAX_PIXELS / (width * height)) ** 0.5) if reduces(width, height) else 1.0
        if small_faces and enlarge > 1.0:
            size = (round(width * enlarge), round(height * enlarge))
            enlarged = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
            rows = self._run(enlarged, width / enlarged.shape[1], height / enlarged.shape[0])
        elif small_faces or not reduces(width, height):
            rows = self._run(bgr, 1.0 / shrink)
        else:
            reduced = cv2.resize(bgr, (bgr.shape[1] // REDUCED_SHRINK, bgr.shape[0] // REDUCED_SHRINK),
                                 interpolation=cv2.INTER_AREA)
            rows = self._run(reduced, bgr.shape[1] / reduced.shape[1] / shrink)
        if not self.native_only:
            small = cv2.resize(bgr, (max(1, bgr.shape[1] // BIG_PASS_SHRINK), max(1, bgr.shape[0] // BIG_PASS_SHRINK)),
                               interpolation=cv2.INTER_AREA)
            scale = bgr.shape[1] / small.shape[1] / shrink
            rows += [r for r in self._run(small, scale) if r[3] >= BIG_PASS_MIN_PX]
        return _suppress(rows)

    def _run(self, bgr: np.ndarray, scale: float, scale_y: float | None = None) -> list[np.ndarray]:
        """YuNet rows of one image, in frame pixels (``scale``: frame pixels per image pixel; ``scale_y``, if
        the vertical one differs)."""
        detector = zoo.yunet(bgr.shape[1], bgr.shape[0], self.min_score)
        _, found = detector.detect(bgr)
        if found is None:
            return []
        found = found.copy()
        found[:, 0:14:2] *= scale  # x, width and the landmarks' x
        found[:, 1:14:2] *= scale if scale_y is None else scale_y
        return list(found)


def reduces(width: int, height: int) -> bool:
    """Whether a search without small faces does less work on a ``width`` x ``height`` frame."""
    return width * height >= REDUCED_MIN_PIXELS


def _suppress(rows: list[np.ndarray]) -> list[np.ndarray]:
    """Best-scored first; a row overlapping a kept one by more than NMS_IOU is the same face."""
    kept: list[np.ndarray] = []
    for row in sorted(rows, key=lambda r: -float(r[14])):
        if all(_iou(row, other) <= NMS_IOU for other in kept):
            kept.append(row)
    return kept


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0.0, float(w)) * max(0.0, float(h))
    union = float(a[2] * a[3] + b[2] * b[3]) - inter
    return inter / union if union > 0 else 0.0


def _face(row: np.ndarray, width: int, height: int) -> DetectedFace | None:
    """A face clamped inside the frame, or None when less than 2x2 pixels of it are inside."""
    x0, y0 = max(0, int(round(row[0]))), max(0, int(round(row[1])))
    x1, y1 = min(width, int(round(row[0] + row[2]))), min(height, int(round(row[1] + row[3])))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    points = tuple((float(row[4 + 2 * i]), float(row[5 + 2 * i])) for i in range(5))
    return DetectedFace(x0, y0, x1 - x0, y1 - y0, round(float(row[14]), 4), points)
