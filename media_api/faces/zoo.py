"""OpenCV Zoo's YuNet face detector and SFace face recogniser, vendored in ``models/``.

Both are run by OpenCV itself (``cv2.FaceDetectorYN`` and ``cv2.FaceRecognizerSF`` from
opencv-contrib-python-headless), so they need no other runtime. The model files are read into
memory, checked against the sha256 recorded here and handed to OpenCV *as those bytes*: what is
hashed is exactly what runs, and a file altered on disk is refused with :class:`ModelFileAltered`
instead of silently producing different vectors. Nothing is downloaded; provenance and licences
are in ``models/SOURCE.md``.

OpenCV's objects are not thread-safe and ``FaceDetectorYN.setInputSize`` costs ~30 ms, so callers
get one cached detector per input size (:func:`yunet`) and one recogniser (:func:`sface`) per
process; use them from one thread (the pipeline's main thread or a worker process).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

MODELS_DIR = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True)
class ZooModel:
    """One vendored model file and the digest it must have."""

    name: str
    filename: str
    sha256: str
    size: int

    @property
    def path(self) -> Path:
        return MODELS_DIR / self.filename


YUNET = ZooModel(
    name="yunet-2023mar-int8bq",
    filename="face_detection_yunet_2023mar_int8bq.onnx",
    sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    size=122_489,
)
SFACE = ZooModel(
    name="sface-2021dec-int8bq",
    filename="face_recognition_sface_2021dec_int8bq.onnx",
    sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    size=10_667_852,
)

#: YuNet's default score threshold in OpenCV Zoo's demo (boxes below it are dropped).
YUNET_SCORE_THRESHOLD = 0.7
YUNET_NMS_THRESHOLD = 0.3
YUNET_TOP_K = 5000


class ModelFileAltered(RuntimeError):
    """A vendored model file is missing or its bytes are not the ones recorded in zoo.py."""


def verified_bytes(model: ZooModel) -> np.ndarray:
    """The model file's bytes (uint8 array, as OpenCV's buffer loaders want), after checking its sha256."""
    try:
        data = model.path.read_bytes()
    except FileNotFoundError:
        raise ModelFileAltered(f"{model.path} is missing (it is vendored in the repository)") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != model.sha256:
        raise ModelFileAltered(
            f"{model.path} has sha256 {digest} ({len(data)} bytes), expected {model.sha256} "
            f"({model.size} bytes): restore the file from git (see models/SOURCE.md)"
        )
    return np.frombuffer(data, dtype=np.uint8)


@lru_cache(maxsize=2)
def _model_buffer(model: ZooModel) -> np.ndarray:
    return verified_bytes(model)


_EMPTY_CONFIG = np.empty(0, dtype=np.uint8)


@lru_cache(maxsize=16)
def yunet(
    width: int,
    height: int,
    score_threshold: float = YUNET_SCORE_THRESHOLD,
    nms_threshold: float = YUNET_NMS_THRESHOLD,
    top_k: int = YUNET_TOP_K,
) -> cv2.FaceDetectorYN:
    """A YuNet detector for images of exactly ``width`` x ``height`` (BGR), cached per size and thresholds.

    ``detect(image)`` returns ``(ok, faces)`` with one row per face: x, y, w, h, the 5 landmarks
    (right eye, left eye, nose tip, right and left mouth corner; x, y each) and the score.
    """
    return cv2.FaceDetectorYN.create(
        "onnx", _model_buffer(YUNET), _EMPTY_CONFIG, (int(width), int(height)),
        float(score_threshold), float(nms_threshold), int(top_k),
    )


@lru_cache(maxsize=1)
def sface() -> cv2.FaceRecognizerSF:
    """The SFace recogniser: ``alignCrop(bgr_image, yunet_row)`` gives the 112x112 aligned face,
    ``feature(aligned)`` its 1x128 float32 vector (not unit length)."""
    return cv2.FaceRecognizerSF.create("onnx", _model_buffer(SFACE), _EMPTY_CONFIG)
