"""What follows a face between two detector samples, with the cost bounded in crowds.

The tracker (``tracker.py``) asks for one follower per face it anchors. Median Flow costs about
0.5–1 ms per face and frame, so a crowd shot with 100 detected faces would cost 50–100 ms per
frame in the main process — more than decoding a 1080p frame. :class:`FollowerBudget` hands out
Median Flow followers to at most :data:`MAX_FOLLOWED` faces at a time (a follower is given back when
its track re-anchors or ends; at each sample the tracker takes back the followers of the tracks
detected on it and hands them out again biggest face first, the faces that move most pixels); any
other face coasts (:class:`HoldFollower`): it
moves on as it moved between its last two detections, and once the next sample confirms it the
tracker redraws its boxes on the straight line between the two detections. Measured on crowd
mosaics of the demo clip (bench/bench_crowd.py): 1080p, ~63 faces a frame, faces >= 24 px 94.2 %
(every face followed: 96.5 %, the old hold-the-box budget: 84.1 %). The detector still finds every
face on every sample.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import cv2
import numpy as np

#: Faces followed by Median Flow at the same time; the others hold their box between samples.
MAX_FOLLOWED = 24
#: ... in a crowd whose small faces are searched on every sample (pipeline.SmallFaceCadence): there the
#: detections come every sample and coasting between them loses little, where Median Flow costs
#: ~0.5 ms a face and frame (bench/bench_crowd.py, 2026-12-05 06:46 UTC: 720p crowd 9.6 -> 8.1 CPU-s for
#: 8.3 s, >= 24 px unchanged, precision 98.8 -> 97.9 %; 1080p crowd 18.9 -> 17.2, >= 24 px 97.6 -> 97.1 %).
CROWD_FOLLOWED = 8

Rect = tuple[float, float, float, float]


class HoldFollower:
    """A follower that needs no image: it keeps the box it was given, or moves it by a steady ``motion``
    (per frame: dx, dy, dw, dh, set by the tracker from the face's last two detections), and never
    loses it. ``init``/``update`` like OpenCV's. Its boxes are a guess: the tracker redraws them
    between the two detections once the next sample confirms the face (``coasts``)."""

    coasts = True

    def __init__(self) -> None:
        self._box: Rect = (0.0, 0.0, 0.0, 0.0)
        self._motion: Rect = (0.0, 0.0, 0.0, 0.0)

    def init(self, image: np.ndarray, box: Rect) -> None:
        self._box = tuple(float(v) for v in box)
        self._motion = (0.0, 0.0, 0.0, 0.0)

    def move(self, motion: Rect) -> None:
        """Move the box by ``motion`` on every following frame."""
        self._motion = tuple(float(v) for v in motion)

    def update(self, image: np.ndarray) -> tuple[bool, Rect]:
        x, y, w, h = self._box
        dx, dy, dw, dh = self._motion
        self._box = (x + dx - dw / 2, y + dy - dh / 2, max(2.0, w + dw), max(2.0, h + dh))
        return True, self._box


class _Counted:
    """An OpenCV follower counted against the budget while something holds it."""

    def __init__(self, follower) -> None:
        self._follower = follower

    def init(self, image: np.ndarray, box: Rect) -> None:
        self._follower.init(image, box)

    def update(self, image: np.ndarray) -> tuple[bool, Rect]:
        return self._follower.update(image)


class FollowerBudget:
    """A follower factory for :class:`~media_api.faces.tracker.FaceTracker`: Median Flow while fewer than
    ``limit`` are alive (``crowd_limit`` while :attr:`crowd` is set), else :class:`HoldFollower`. One per
    tracker (not thread-safe). Lowering the limit takes no follower away: a track keeps its own until it
    re-anchors or ends."""

    def __init__(self, limit: int = MAX_FOLLOWED,
                 make: Callable[[], object] = cv2.legacy.TrackerMedianFlow_create,
                 crowd_limit: int | None = None) -> None:
        self.normal_limit = limit
        self.crowd_limit = CROWD_FOLLOWED if crowd_limit is None else crowd_limit
        self.crowd = False
        self._make = make
        self._alive: weakref.WeakSet[_Counted] = weakref.WeakSet()

    @property
    def limit(self) -> int:
        """The Median Flow followers allowed now."""
        return self.crowd_limit if self.crowd else self.normal_limit

    @property
    def alive(self) -> int:
        """Median Flow followers some track still holds."""
        return len(self._alive)

    def __call__(self) -> object:
        if len(self._alive) >= self.limit:
            return HoldFollower()
        follower = _Counted(self._make())
        self._alive.add(follower)
        return follower
