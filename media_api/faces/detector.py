"""Face detection: what the pipeline asks of a detector, answered by YuNet (``yunet.py``).

The pipeline needs boxes in display pixels of the full frame with a 0..1 confidence and five
landmarks; the YuNet module decides passes, scales and verification itself. Why YuNet (and not
BlazeFace, the Faces v2 detector, which found no face under ~24 px, nor dlib's HOG, the first):
measured recall, precision and speed are in docs/faces.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import dlib
import numpy as np

from media_api.faces.blazeface import DetectedFace
from media_api.faces.yunet import REDUCED_MIN_FACE_PX, YuNetDetector, reduces


@dataclass(frozen=True)
class Face(DetectedFace):
    """A face box in display pixels of the original frame (inside it), the detector's score 0..1 and
    YuNet's five landmarks (right eye, left eye, nose tip, right and left mouth corner; the person's
    right is on the image's left), with what the pipeline derives from them."""

    @property
    def frontal(self) -> float:
        """1 for a face looking at the camera, 0 for a profile: where the nose tip lies between the eyes.

        The face embedding is only reliable on faces that are not turned much; unknown (no
        landmarks) counts as frontal.
        """
        if len(self.keypoints) < 3:
            return 1.0
        right_eye, left_eye, nose = self.keypoints[0][0], self.keypoints[1][0], self.keypoints[2][0]
        span = left_eye - right_eye
        if abs(span) < 1e-6:
            return 0.0
        position = (nose - right_eye) / span
        return max(0.0, min(1.0, 1.0 - 2.0 * abs(position - 0.5)))

    @property
    def confidence(self) -> float:
        return round(float(self.score), 4)

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.width, self.height

    def rect(self) -> dlib.rectangle:
        return dlib.rectangle(self.x, self.y, self.x + self.width - 1, self.y + self.height - 1)

    def yunet_row(self) -> np.ndarray:
        """The face as a ``cv2.FaceDetectorYN`` result row (what ``FaceRecognizerSF.alignCrop`` takes)."""
        points = [v for point in self.keypoints[:5] for v in point]
        return np.array([self.x, self.y, self.width, self.height, *points, self.score], np.float32)


class FaceDetector:
    """Finds faces in an RGB frame of any size. One instance per thread of work (it holds OpenCV and
    LiteRT models, which are not thread-safe)."""

    def __init__(self, threads: int = 2) -> None:
        self._detector = YuNetDetector(threads=threads)

    def detect(self, rgb: np.ndarray, small_faces: bool = True) -> list[Face]:
        """Faces of ``rgb``; ``small_faces=False``: faces under about :data:`REDUCED_MIN_FACE_PX` may be
        missed on frames of 720p and more, for a quarter of the work (the pipeline's other samples)."""
        # YuNetDetector already keeps only boxes of at least 2x2 pixels inside the frame.
        return [Face(f.x, f.y, f.width, f.height, f.score, f.keypoints)
                for f in self._detector.detect(rgb, small_faces)]


__all__ = ["REDUCED_MIN_FACE_PX", "Face", "FaceDetector", "detect", "load_detector", "reduces"]

#: Runtime threads of a detector in a worker process (the main process decodes and tracks meanwhile).
WORKER_THREADS = 1


@lru_cache(maxsize=1)
def _worker_detector() -> FaceDetector:
    return FaceDetector(threads=WORKER_THREADS)


def load_detector() -> None:
    """Load the models once (in a worker process, before the first frame arrives)."""
    _worker_detector()


def detect(rgb: np.ndarray, small_faces: bool = True) -> list[Face]:
    """Faces of one frame, with this process's detector (what a detection worker runs)."""
    return _worker_detector().detect(rgb, small_faces)
