"""128-d face embeddings with dlib's ResNet (face_recognition_model_v1) and 5-point landmarks.

The model files come from the ``face-recognition-models`` package. Its ``__init__`` imports
``pkg_resources`` (gone from setuptools ≥ 81), so the files are located with
``importlib.util.find_spec`` without importing the package.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import dlib
import numpy as np

from media_api.faces.detector import Face

EMBEDDING_DIM = 128
#: Distance under which dlib's model says "same person" (its documented 0.6 operating point).
SAME_PERSON_DISTANCE = 0.6


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


class FaceEmbedder:
    """Aligns each face on 5 landmarks and computes its 128-d descriptor (L2 norm ≈ 1)."""

    def __init__(self) -> None:
        directory = models_dir()
        self._shapes = dlib.shape_predictor(str(directory / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(directory / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, rgb: np.ndarray, faces: list[Face]) -> np.ndarray:
        """One float32 row per face, in the order given."""
        if not faces:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        shapes = dlib.full_object_detections()
        for face in faces:
            shapes.append(self._shapes(rgb, face.rect()))
        descriptors = self._net.compute_face_descriptor(rgb, shapes)
        return np.asarray([np.asarray(d) for d in descriptors], dtype=np.float32)


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
