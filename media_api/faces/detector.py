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
from media_api.faces.embeddings import yunet_around
from media_api.faces.yunet import MIN_SCORE, REDUCED_MIN_FACE_PX, YuNetDetector, reduces

#: A followed face that no detection of a sample matched is looked for again on a crop around its box
#: (:func:`detect_near`): the box's longer side scaled to NEAR_FACE_PX in a NEAR_INPUT_PX square — a 24 px
#: face seen 2.7 times as big, where YuNet finds turned, blurred or half-hidden faces it scores under its
#: threshold at their own size — by the detector's own rules (YuNet's MIN_SCORE, BlazeFace's second opinion).
#: One YuNet input of 160x160: ~2 ms.
NEAR_FACE_PX = 64
NEAR_INPUT_PX = 160
#: Boxes shorter than this are not looked at again (seen four times bigger, a 12 px face is mostly blur).
NEAR_MIN_PX = 16


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

    def detect_near(self, rgb: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[list[Face]]:
        """For each box, the face YuNet finds nearest its centre on a crop around it seen bigger (NEAR_FACE_PX;
        none for boxes under NEAR_MIN_PX), as a list of one or none, in frame pixels (inside the frame), with
        BlazeFace's second opinion as :meth:`detect` gives it (all boxes' faces at once: it reads four a time)."""
        nearest = [_nearest_face(rgb, box) if box[3] >= NEAR_MIN_PX else None for box in boxes]
        checked = iter(self._detector.verified(rgb, [face for face in nearest if face is not None]))
        verified = [None if face is None else next(checked) for face in nearest]
        return [[] if f is None else [Face(f.x, f.y, f.width, f.height, f.score, f.keypoints)] for f in verified]


def _nearest_face(rgb: np.ndarray, box: tuple[int, int, int, int]) -> DetectedFace | None:
    """Of YuNet's faces (MIN_SCORE) on a crop around ``box`` whose longer side becomes NEAR_FACE_PX, the one nearest
    the box's centre, in frame pixels (None: no face inside the frame)."""
    height, width = rgb.shape[:2]
    x, y, w, h = box
    _, rows, scale = yunet_around(rgb, box, face_px=NEAR_FACE_PX, input_px=NEAR_INPUT_PX, min_score=MIN_SCORE)
    centre_x, centre_y, half = x + w / 2, y + h / 2, NEAR_INPUT_PX / 2

    def frame_point(u: float, v: float) -> tuple[float, float]:  # crop pixels -> frame pixels (yunet_around)
        return float(centre_x + (u - half) / scale), float(centre_y + (v - half) / scale)

    found = []
    for row in rows:
        left, top = frame_point(row[0], row[1])
        right, bottom = frame_point(row[0] + row[2], row[1] + row[3])
        x0, y0 = max(0, round(left)), max(0, round(top))
        x1, y1 = min(width, round(right)), min(height, round(bottom))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            marks = tuple(frame_point(row[4 + 2 * i], row[5 + 2 * i]) for i in range(5))
            found.append(DetectedFace(x0, y0, x1 - x0, y1 - y0, round(float(row[14]), 4), marks))
    return min(found, key=lambda f: (f.x + f.width / 2 - centre_x) ** 2 + (f.y + f.height / 2 - centre_y) ** 2,
               default=None)


__all__ = ["REDUCED_MIN_FACE_PX", "Face", "FaceDetector", "detect", "detect_near", "load_detector", "reduces"]

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


def detect_near(rgb: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[list[Face]]:
    """:meth:`FaceDetector.detect_near` with this process's detector: where the tracker looks again for faces
    a sample's detection missed (which of the faces found is the track's is the tracker's choice)."""
    return _worker_detector().detect_near(rgb, boxes)
