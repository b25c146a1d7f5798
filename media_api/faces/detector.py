"""Face detection: what the pipeline asks of a detector, answered by BlazeFace (``blazeface.py``).

The pipeline needs boxes in display pixels of the full frame with a 0..1 confidence; the
BlazeFace module decides tiling, scales and verification itself. Why BlazeFace (and not dlib's
HOG, the first detector): measured recall, precision and speed are in docs/faces.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import dlib
import numpy as np

from media_api.faces.blazeface import BlazeFaceDetector, DetectedFace


@dataclass(frozen=True)
class Face(DetectedFace):
    """A face box in display pixels of the original frame (inside it), the detector's score 0..1 and
    BlazeFace's six points (right eye, left eye, nose tip, mouth, right ear, left ear), with what the
    pipeline derives from them."""

    @property
    def frontal(self) -> float:
        """1 for a face looking at the camera, 0 for a profile: where the nose lies between the ears.

        The face embedding is only reliable on faces that are not turned much (dlib's model was
        trained on mostly frontal faces); unknown (no keypoints) counts as frontal.
        """
        if len(self.keypoints) < 6:
            return 1.0
        nose, right_ear, left_ear = self.keypoints[2][0], self.keypoints[4][0], self.keypoints[5][0]
        span = left_ear - right_ear
        if abs(span) < 1e-6:
            return 0.0
        position = (nose - right_ear) / span
        return max(0.0, min(1.0, 1.0 - 2.0 * abs(position - 0.5)))

    @property
    def confidence(self) -> float:
        return round(float(self.score), 4)

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.width, self.height

    def rect(self) -> dlib.rectangle:
        return dlib.rectangle(self.x, self.y, self.x + self.width - 1, self.y + self.height - 1)


class FaceDetector:
    """Finds faces in an RGB frame of any size. One instance per thread of work (it holds an interpreter)."""

    def __init__(self, threads: int = 2) -> None:
        self._detector = BlazeFaceDetector(threads=threads)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        # BlazeFaceDetector already keeps only boxes of at least 2x2 pixels inside the frame.
        return [Face(f.x, f.y, f.width, f.height, f.score, f.keypoints) for f in self._detector.detect(rgb)]


#: Runtime threads of a detector in a worker process (the main process decodes and tracks meanwhile).
WORKER_THREADS = 1


@lru_cache(maxsize=1)
def _worker_detector() -> FaceDetector:
    return FaceDetector(threads=WORKER_THREADS)


def load_detector() -> None:
    """Load the models once (in a worker process, before the first frame arrives)."""
    _worker_detector()


def detect(rgb: np.ndarray) -> list[Face]:
    """Faces of one frame, with this process's detector (what a detection worker runs)."""
    return _worker_detector().detect(rgb)
