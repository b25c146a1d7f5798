"""Face detection with dlib's HOG frontal-face detector (compiled into dlib; no model file).

Why HOG: on 2 CPU cores it is the fastest offline detector that ships with a wheel and
finds frontal faces reliably (measurements in docs/faces.md). Its sliding window is 80x80 px,
so frames are upsampled once when they are small (below 720 px high) and downscaled when they
are larger than 1080 px high, which keeps the smallest findable face near 40 px in 360p video
and the cost per frame bounded for 4K video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dlib
import numpy as np

#: HOG score threshold (dlib's ``adjust_threshold``); 0.0 is dlib's own default.
SCORE_THRESHOLD = 0.0
#: Frames are downscaled to at most this height before detection.
MAX_WORK_HEIGHT = 1080
#: Frames (after downscaling) lower than this are upsampled once by the detector.
UPSAMPLE_BELOW_HEIGHT = 720


@dataclass(frozen=True)
class Face:
    """A detected face box in display pixels of the original frame (clamped inside it)."""

    x: int
    y: int
    width: int
    height: int
    score: float

    @property
    def confidence(self) -> float:
        """The HOG score mapped to 0..1 (logistic; score 0 → 0.5, 1 → 0.88, 2 → 0.98)."""
        return round(1.0 / (1.0 + math.exp(-2.0 * self.score)), 4)

    def rect(self) -> dlib.rectangle:
        return dlib.rectangle(self.x, self.y, self.x + self.width - 1, self.y + self.height - 1)


def work_size(width: int, height: int) -> tuple[int, int, float, int]:
    """(work width, work height, scale, upsample count) for a frame of ``width`` x ``height``."""
    scale = min(1.0, MAX_WORK_HEIGHT / height)
    work_w = max(1, int(round(width * scale))) // 2 * 2
    work_h = max(1, int(round(height * scale))) // 2 * 2
    upsample = 1 if work_h < UPSAMPLE_BELOW_HEIGHT else 0
    return work_w, work_h, scale, upsample


def clamp_box(left: float, top: float, right: float, bottom: float, width: int, height: int) -> tuple[int, ...] | None:
    """Integer (x, y, w, h) clamped inside the frame, or None when nothing is left."""
    x0 = max(0, min(width - 1, int(round(left))))
    y0 = max(0, min(height - 1, int(round(top))))
    x1 = max(0, min(width, int(round(right))))
    y1 = max(0, min(height, int(round(bottom))))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1 - x0, y1 - y0


class FaceDetector:
    """Finds frontal faces in an RGB frame; one instance per thread (dlib objects are not shared)."""

    def __init__(self, threshold: float = SCORE_THRESHOLD) -> None:
        self._detector = dlib.get_frontal_face_detector()
        self.threshold = threshold

    def detect(self, work_rgb: np.ndarray, scale: float, upsample: int, frame_w: int, frame_h: int) -> list[Face]:
        """Faces in ``work_rgb`` (the frame resized by ``scale``), mapped back to frame pixels."""
        rects, scores, _ = self._detector.run(work_rgb, upsample, self.threshold)
        faces: list[Face] = []
        for rect, score in zip(rects, scores, strict=True):
            box = clamp_box(rect.left() / scale, rect.top() / scale, (rect.right() + 1) / scale,
                            (rect.bottom() + 1) / scale, frame_w, frame_h)
            if box is not None:
                faces.append(Face(*box, score=float(score)))
        return faces
