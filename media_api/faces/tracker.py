"""Following detected faces from sampled frame to sampled frame into traces.

A face joins a running track when its appearance embedding is close to the track's
(same person) *and* its box is near the track's last box (same place, allowing for motion
between sampled frames). Pairs are matched greedily, cheapest first, so two people
crossing keep their own tracks as long as they look different.

Embedding a face costs about as much as detecting faces in a whole frame, so a face that
overlaps exactly one track's last box strongly (IoU ≥ 0.5) and nothing else nearby joins
that track without being embedded, except that every track embeds at least every
``EMBED_EVERY``-th face so its mean embedding follows the person. A scene cut ends every
track; a track that has not been seen for ``max_gap`` frames ends too. Tracks with fewer
than ``min_faces`` detections are dropped as noise (a single HOG hit on a pattern).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from media_api.faces.detector import Face
from media_api.faces.embeddings import normalise

#: Embedding distance above which a face never joins a track (dlib's same-person point is 0.6).
MATCH_DISTANCE = 0.55
#: How far (in face widths) a face may move per sampling step and stay on its track.
MAX_SHIFT_PER_STEP = 0.75
#: ... and at most this far however long the track was unseen.
MAX_SHIFT = 2.0
#: Faces whose size differs from the track's last box by more than this factor do not join it
#: (HOG boxes come in pyramid steps of about 1.2x, so this allows one step).
MAX_SIZE_RATIO = 1.3
#: IoU with a track's last box above which an unambiguous face joins it without an embedding.
SURE_IOU = 0.5
#: Overlap with any other box/track below which a match counts as unambiguous.
AMBIGUOUS_IOU = 0.2
#: A track embeds at least every this many faces.
EMBED_EVERY = 3


@dataclass
class Track:
    """A trace being built: its detections, embeddings and when it was last seen."""

    key: int
    frames: list[int] = field(default_factory=list)
    faces: list[Face] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    since_embedding: int = 0
    _sum: np.ndarray | None = None

    def add(self, frame_number: int, face: Face, embedding: np.ndarray | None) -> None:
        """Append a face; ``embedding`` is None when the face joined on overlap alone."""
        self.frames.append(frame_number)
        self.faces.append(face)
        if embedding is None:
            self.since_embedding += 1
            return
        self.since_embedding = 0
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

    def __init__(self, max_gap: int, stride: int = 1, min_faces: int = 3) -> None:
        self.max_gap = max_gap
        self.stride = max(1, stride)
        self.min_faces = min_faces
        self._active: list[Track] = []
        self._done: list[Track] = []
        self._next_key = 1

    def _pair_cost(self, frame_number: int, track: Track, face: Face, embedding: np.ndarray) -> float | None:
        ratio = max(face.width, track.last_face.width) / max(1, min(face.width, track.last_face.width))
        if ratio > MAX_SIZE_RATIO:
            return None
        steps = max(1.0, (frame_number - track.last_frame) / self.stride)
        if _shift(track.last_face, face) > min(MAX_SHIFT, MAX_SHIFT_PER_STEP * steps):
            return None
        overlap = iou(track.last_face, face)
        distance = min(float(np.linalg.norm(track.embeddings[-1] - embedding)),
                       float(np.linalg.norm(track.mean_embedding() - normalise(embedding))))
        if distance > MATCH_DISTANCE:
            return None
        return distance + 0.3 * (1.0 - overlap)

    def _sure_matches(self, faces: list[Face]) -> dict[int, int]:
        """face index → track index for faces that plainly continue one track (no embedding needed)."""
        if not self._active or not faces:
            return {}
        overlaps = np.array([[iou(t.last_face, f) for f in faces] for t in self._active])
        sure: dict[int, int] = {}
        for fi in range(len(faces)):
            ti = int(np.argmax(overlaps[:, fi]))
            if overlaps[ti, fi] < SURE_IOU or self._active[ti].since_embedding + 1 >= EMBED_EVERY:
                continue
            others_on_face = np.delete(overlaps[:, fi], ti)
            others_on_track = np.delete(overlaps[ti, :], fi)
            if (others_on_face >= AMBIGUOUS_IOU).any() or (others_on_track >= AMBIGUOUS_IOU).any():
                continue
            sure[fi] = ti
        return sure

    def update(self, frame_number: int, faces: list[Face], embed: Callable[[list[Face]], np.ndarray]) -> int:
        """Assign this frame's faces to running tracks or start new ones; returns how many were embedded.

        ``embed`` computes embeddings for a list of faces of this frame; it is called once, only
        for the faces whose track is not plain from the boxes alone.
        """
        self._expire(frame_number)
        sure = self._sure_matches(faces)
        for fi, ti in sure.items():
            self._active[ti].add(frame_number, faces[fi], None)
        todo = [fi for fi in range(len(faces)) if fi not in sure]
        vectors = embed([faces[fi] for fi in todo]) if todo else np.zeros((0, 0), dtype=np.float32)
        embeddings = {fi: vectors[k] for k, fi in enumerate(todo)}
        pairs = []
        for ti, track in enumerate(self._active):
            if ti in sure.values():
                continue
            for fi in todo:
                cost = self._pair_cost(frame_number, track, faces[fi], embeddings[fi])
                if cost is not None:
                    pairs.append((cost, ti, fi))
        used_tracks: set[int] = set(sure.values())
        used_faces: set[int] = set(sure)
        for _, ti, fi in sorted(pairs):
            if ti in used_tracks or fi in used_faces:
                continue
            self._active[ti].add(frame_number, faces[fi], embeddings[fi])
            used_tracks.add(ti)
            used_faces.add(fi)
        for fi in todo:
            if fi not in used_faces:
                track = Track(key=self._next_key)
                self._next_key += 1
                track.add(frame_number, faces[fi], embeddings[fi])
                self._active.append(track)
        return len(todo)

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
