"""A trace's evidence: a few face vectors chosen for quality and difference, and how two sets compare.

One mean vector per trace threw evidence away: a trace seen frontal and then three-quarter, or
sharp and then blurred, averaged into a face that is neither, and a close-up and a wide shot of one
person could only meet through that average. A trace now keeps up to :data:`MAX_EXEMPLARS` unit
vectors (``Trace.exemplars``, packed float32, best first) of its best faces — sharp, frontal enough,
big enough (:func:`quality`) — picked so that they differ (:func:`choose`: a face almost identical to
one already kept adds nothing), and ``Trace.embedding`` stays one mean (older readers and fast paths:
the cast page's grouping, the joining of a track's pieces): a re-embed's is the quality-weighted mean of
its exemplars, the pipeline's the plain mean of every face the track embedded (what its pieces were
joined by). Both pick and order exemplars by :func:`quality`.

Comparing two traces (or a trace and a person) is then a distance between two sets
(:func:`set_distance`): the smallest distance between one exemplar of each — the person's face
most like this one, in the conditions most like these. Its thresholds are calibrated on simulated
exemplar sets of the identity set (``bench/eval_identity.py``, ``calibration.json`` ``sets``):
the minimum over more pairs is smaller for different people too, so it has its own thresholds.
A trace without exemplars (imported, or embedded before they existed) is the set of its one mean.
Every set carries its model through ``Trace.embedding_model``: sets of two models are never compared.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from media_api.faces.embeddings import EMBEDDING_DIM, normalise

#: Vectors kept per trace: the pipeline embeds up to 3 faces a track (a joined track more), a re-embed
#: up to this many of its best candidates. Four 512-byte vectors: 2 KB a trace.
MAX_EXEMPLARS = 4
#: A face closer than this (Euclidean, unit vectors; cosine 0.02) to one already kept is a near duplicate:
#: the same frame twice, in effect. It is not kept.
DUPLICATE_DISTANCE = 0.2
#: Face height (frame pixels) from which size adds nothing: SFace reads a 112x112 aligned face.
FULL_SIZE_PX = 112
#: Sharpness (variance of the Laplacian of the aligned face's grey image) from which a face counts as sharp;
#: measured on bench/identity_set's readable faces (2026-12-05): photos 123 / 279 / 893 (5 % / median / 95 %),
#: video crops 4 / 31 / 268 — most video faces are softer than any photo.
SHARP_LAPLACIAN = 150.0


def quality(face_px: float, frontal: float, aligned: np.ndarray | None = None) -> float:
    """How much a face's vector is worth as evidence, 0..1: big enough, frontal enough, sharp.

    Each factor is at most 1 and never 0 for a face the pipeline embeds (a gate already refused the
    worst): size ``min(1, px / FULL_SIZE_PX)``, pose ``0.5 + frontal / 2`` (three-quarter faces are
    read well, profiles are refused earlier), sharpness of the aligned face ``min(1, lap / SHARP)``,
    floored at 0.1 so a blurred face still counts a little.
    """
    size = min(1.0, max(face_px, 1.0) / FULL_SIZE_PX)
    pose = 0.5 + 0.5 * min(1.0, max(0.0, frontal))
    sharp = 1.0
    if aligned is not None:
        grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY) if aligned.ndim == 3 else aligned
        sharp = max(0.1, min(1.0, float(cv2.Laplacian(grey, cv2.CV_32F).var()) / SHARP_LAPLACIAN))
    return size * pose * sharp


def choose(vectors: Sequence[np.ndarray], qualities: Sequence[float] | None = None,
           limit: int = MAX_EXEMPLARS) -> list[int]:
    """Positions of the vectors to keep, best first: the best face, then each time the face adding the most.

    "Adding the most" is quality x distance to the nearest face already kept (a different pose or
    light is new evidence); a near duplicate — closer than DUPLICATE_DISTANCE to one kept — is never
    kept (it would only weigh the same evidence twice). Without qualities, all count the same and
    the earliest wins ties.
    """
    count = len(vectors)
    if count == 0:
        return []
    weights = np.ones(count) if qualities is None else np.asarray(qualities, dtype=np.float64)
    matrix = np.vstack([normalise(v) for v in vectors])
    chosen = [int(np.argmax(weights))]
    nearest = np.linalg.norm(matrix - matrix[chosen[0]], axis=1)
    while len(chosen) < min(limit, count):
        gain = np.where(nearest >= DUPLICATE_DISTANCE, weights * nearest, -np.inf)
        gain[chosen] = -np.inf
        best = int(np.argmax(gain))
        if not np.isfinite(gain[best]):
            break
        chosen.append(best)
        nearest = np.minimum(nearest, np.linalg.norm(matrix - matrix[best], axis=1))
    return chosen


def weighted_mean(vectors: Sequence[np.ndarray], qualities: Sequence[float] | None = None) -> np.ndarray:
    """The unit quality-weighted mean (``Trace.embedding``)."""
    weights = np.ones(len(vectors)) if qualities is None else np.asarray(qualities, dtype=np.float64)
    return normalise(np.average(np.vstack(vectors), axis=0, weights=weights))


def pack(vectors: Sequence[np.ndarray]) -> bytes | None:
    """What ``Trace.exemplars`` stores: unit vectors, little-endian float32, concatenated (None: none)."""
    if not len(vectors):
        return None
    return b"".join(np.asarray(normalise(v), dtype="<f4").tobytes() for v in vectors)


def unpack(blob: bytes | memoryview | None) -> np.ndarray | None:
    """The stored exemplars as a (k, 128) float32 matrix (None when absent or malformed)."""
    if blob is None:
        return None
    data = bytes(blob)
    if not data or len(data) % (EMBEDDING_DIM * 4):
        return None
    return np.frombuffer(data, dtype="<f4").reshape(-1, EMBEDDING_DIM).astype(np.float32)


def of_trace(exemplars: bytes | memoryview | None, embedding: bytes | memoryview | None) -> np.ndarray | None:
    """A trace's set: its exemplars, or its one mean vector when it has none (None: neither)."""
    matrix = unpack(exemplars)
    if matrix is not None:
        return matrix
    from media_api.faces.embeddings import from_bytes

    vector = from_bytes(embedding)
    return None if vector is None else normalise(vector)[None, :]


def set_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest Euclidean distance between an exemplar of ``a`` and one of ``b`` (unit rows)."""
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * float((a @ b.T).max()))))


def set_distances(query: np.ndarray, sets: np.ndarray, owners: np.ndarray, count: int) -> np.ndarray:
    """:func:`set_distance` from ``query`` to ``count`` sets at once.

    ``sets`` stacks every exemplar of every set (unit rows), ``owners`` says which set (0..count-1)
    each row belongs to; one matrix product, then the largest similarity per owner.
    """
    best = np.full(count, -1.0, dtype=np.float64)
    if len(sets):
        similarity = (sets @ query.T).max(axis=1).astype(np.float64)
        np.maximum.at(best, owners, similarity)
    return np.sqrt(np.clip(2.0 - 2.0 * best, 0.0, None))


__all__ = ["MAX_EXEMPLARS", "choose", "of_trace", "pack", "quality", "set_distance", "set_distances", "unpack",
           "weighted_mean"]
