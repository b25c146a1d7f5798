"""128-d face embeddings with dlib's ResNet (face_recognition_model_v1) on 5-point aligned face chips.

The model files come from the ``face-recognition-models`` package. Its ``__init__`` imports
``pkg_resources`` (gone from setuptools ≥ 81), so the files are located with
``importlib.util.find_spec`` without importing the package.

An embedding costs about 80 ms on one core and dlib holds the GIL while computing it, so the
pipeline computes them in a worker process (:mod:`media_api.faces.workers`): the main process
aligns the face (5 landmarks and a 150x150 chip, ~1 ms) and sends the chip; the worker returns
the vector (:func:`embed_chip`).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import dlib
import numpy as np

EMBEDDING_DIM = 128
#: Distance under which dlib's model says "same person" for two single faces (its documented 0.6).
SAME_PERSON_DISTANCE = 0.6
CHIP_SIZE = 150
CHIP_PADDING = 0.25


class ModelFilesMissing(RuntimeError):
    """The face-recognition-models package (with its .dat files) is not installed."""


@lru_cache(maxsize=1)
def models_dir() -> Path:
    """Directory holding the shipped ``.dat`` model files."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesMissing("face-recognition-models is not installed (pip install -r requirements.txt)")
    directory = Path(list(spec.submodule_search_locations)[0]) / "models"
    if not (directory / "dlib_face_recognition_resnet_model_v1.dat").is_file():
        raise ModelFilesMissing(f"model files not found in {directory}")
    return directory


@lru_cache(maxsize=1)
def _shape_predictor() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(models_dir() / "shape_predictor_5_face_landmarks.dat"))


@lru_cache(maxsize=1)
def _network() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(str(models_dir() / "dlib_face_recognition_resnet_model_v1.dat"))


def face_chip(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The face aligned on its 5 landmarks: a CHIP_SIZE x CHIP_SIZE RGB image (what the network reads)."""
    x, y, w, h = box
    shape = _shape_predictor()(rgb, dlib.rectangle(x, y, x + w - 1, y + h - 1))
    return dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING)


def embed_chip(chip: np.ndarray) -> np.ndarray:
    """The 128-d descriptor of one aligned chip (float32, L2 norm ≈ 1)."""
    return np.asarray(_network().compute_face_descriptor(chip), dtype=np.float32)


def load_network() -> None:
    """Load the ResNet once (in a worker process, before the first chip arrives)."""
    _network()


def normalise(vector: np.ndarray) -> np.ndarray:
    """The vector scaled to unit length (float32)."""
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def to_bytes(vector: np.ndarray) -> bytes:
    """What is stored in ``Trace.embedding``: little-endian float32."""
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(blob: bytes | memoryview | None) -> np.ndarray | None:
    """The stored embedding back as a float32 vector (None when absent or malformed)."""
    if blob is None:
        return None
    data = bytes(blob)
    if len(data) != EMBEDDING_DIM * 4:
        return None
    return np.frombuffer(data, dtype="<f4").astype(np.float32)
