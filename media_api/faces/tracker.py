"""Following detected faces from sampled frame to sampled frame into traces.

A face joins a running track when its appearance embedding is close to the track's
(same person) *and* its box is near the track's last box (same place, allowing for motion
between sampled frames). Pairs are matched greedily, cheapest first, so two people
crossing keep their own tracks as long as they look different. A scene cut ends every
track; a track that has not been seen for ``max_gap`` frames ends too. Tracks with fewer
than ``min_faces`` detections are dropped as noise (a single HOG hit on a pattern).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from media_api.faces.detector import Face
from media_api.faces.embeddings import normalise

#: Embedding distance above which a face never joins a track (dlib's same-person point is 0.6).
MATCH_DISTANCE = 0.55
#: How far (in face widths) a face may move between two sampled frames and stay on its track.
MAX_SHIFT = 1.5
#: Faces whose size differs from the track's last box by more than this factor do not join it.
MAX_SIZE_RATIO = 1.6


@dataclass
class Track:
    """A trace being built: its detections, embeddings and when it was last seen."""

    key: int
    frames: list[int] = field(default_factory=list)
    faces: list[Face] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    _sum: np.ndarray | None = None

    def add(self, frame_number: int, face: Face, embedding: np.ndarray) -> None:
        self.frames.append(frame_number)
        self.faces.append(face)
        self.embeddings.append(embedding)
        self._sum = embedding.copy() if self._sum is None else self._sum + embedding

    @property
    def last_frame(self) -> int:
        return self.frames[-1]

    @property
    def last_face(self) -> Face:
        return self.faces[-1]

    def mean_embedding(self) -> np.ndarray:
        """Mean of the face embeddings, L2-normalised (what is stored on the trace)."""
        return normalise(self._sum / len(self.embeddings))


def iou(a: Face, b: Face) -> float:
    ix = max(0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    iy = max(0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union else 0.0


def _shift(a: Face, b: Face) -> float:
    """Centre distance in units of the larger face width."""
    dx = (a.x + a.width / 2) - (b.x + b.width / 2)
    dy = (a.y + a.height / 2) - (b.y + b.height / 2)
    return float(np.hypot(dx, dy)) / max(a.width, b.width, 1)


class Tracker:
    """Online tracker: call :meth:`update` per sampled frame, :meth:`cut` at scene cuts, then :meth:`finish`."""

    def __init__(self, max_gap: int, min_faces: int = 3) -> None:
        self.max_gap = max_gap
        self.min_faces = min_faces
        self._active: list[Track] = []
        self._done: list[Track] = []
        self._next_key = 1

    def _pair_cost(self, track: Track, face: Face, embedding: np.ndarray) -> float | None:
        ratio = max(face.width, track.last_face.width) / max(1, min(face.width, track.last_face.width))
        if ratio > MAX_SIZE_RATIO:
            return None
        overlap = iou(track.last_face, face)
        if overlap < 0.05 and _shift(track.last_face, face) > MAX_SHIFT:
            return None
        distance = min(float(np.linalg.norm(track.embeddings[-1] - embedding)),
                       float(np.linalg.norm(track.mean_embedding() - normalise(embedding))))
        if distance > MATCH_DISTANCE:
            return None
        return distance + 0.3 * (1.0 - overlap)

    def update(self, frame_number: int, faces: list[Face], embeddings: np.ndarray) -> None:
        """Assign this frame's faces to running tracks or start new ones."""
        self._expire(frame_number)
        pairs = []
        for ti, track in enumerate(self._active):
            for fi, face in enumerate(faces):
                cost = self._pair_cost(track, face, embeddings[fi])
                if cost is not None:
                    pairs.append((cost, ti, fi))
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        for _, ti, fi in sorted(pairs):
            if ti in used_tracks or fi in used_faces:
                continue
            self._active[ti].add(frame_number, faces[fi], embeddings[fi])
            used_tracks.add(ti)
            used_faces.add(fi)
        for fi, face in enumerate(faces):
            if fi not in used_faces:
                track = Track(key=self._next_key)
                self._next_key += 1
                track.add(frame_number, face, embeddings[fi])
                self._active.append(track)

    def _expire(self, frame_number: int) -> None:
        keep = []
        for track in self._active:
            (self._done if frame_number - track.last_frame > self.max_gap else keep).append(track)
        self._active = keep

    def cut(self) -> None:
        """A scene cut: no running track may continue past it."""
        self._done.extend(self._active)
        self._active = []

    def finish(self) -> list[Track]:
        """All tracks long enough to keep, ordered by first frame."""
        self.cut()
        kept = [t for t in self._done if len(t.frames) >= self.min_faces]
        return sorted(kept, key=lambda t: (t.frames[0], t.faces[0].x, t.key))
