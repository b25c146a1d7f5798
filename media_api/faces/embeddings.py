"""128-d face embeddings: OpenCV Zoo's SFace (the pipeline's) and dlib's ResNet (the former one).

**SFace** (``zoo.SFACE``, run by OpenVINO: ``zoo.sface_features``): the face is aligned on five
landmarks into a 112x112 image (:func:`align_crop`, OpenCV's ``alignCrop``) and the network
gives a 128-d vector; traces store it L2-normalised, so the Euclidean distance used by suggestions
and clustering is ``sqrt(2 * cosine distance)``. The landmarks come from YuNet run on a fixed-size
crop around the face box (:func:`align_face`), so any detector's box will do and one YuNet
instance serves every face. YuNet finding no face on that crop (a strong profile, a back of a head, a blur)
means no embedding: that is the gate for "a face SFace can read", not a frontal-pose rule — the
Faces v2 frontal check refused three-quarter faces SFace matches well. Calibration on an
identity-labelled set: ``media_api/faces/calibration.py`` and docs/faces.md.

An embedding costs ~9 ms on one core (OpenVINO; ~30 with OpenCV's DNN), so the pipeline computes them in a worker
process (:mod:`media_api.faces.workers`): the main process aligns (~2 ms) and sends the 112x112
face; the worker returns the vector (:func:`embed_aligned`).

**dlib** (``face_recognition_model_v1`` on 5-point aligned 150x150 chips, model files from the
``face-recognition-models`` package, located with ``importlib.util.find_spec`` because its
``__init__`` imports the removed ``pkg_resources``): the Faces v2 embedding, kept so that
``bench/eval_identity.py`` can compare both on the same faces. Vectors of different models are
never compared: every stored embedding carries its model's name (:data:`MODEL_NAME`).
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import cv2
import dlib
import numpy as np

from media_api.faces import zoo

EMBEDDING_DIM = 128
#: The model of every embedding the pipeline stores now (``Trace.embedding_model``).
MODEL_NAME = zoo.SFACE.name
#: The Faces v2 model (dlib's ResNet), for comparison and for embeddings stored before SFace.
DLIB_MODEL_NAME = "dlib-resnet-v1"
#: The crop handed to YuNet for landmarks: the face box's longer side becomes ALIGN_FACE pixels,
#: centred in an ALIGN_INPUT square (the rest is context; outside the frame, black).
ALIGN_INPUT = 224
ALIGN_FACE = 112
#: YuNet's score on that crop below which a face is not embedded (its landmarks are not trusted).
ALIGN_MIN_SCORE = 0.5
#: The YuNet face on the crop must overlap the expected box this much (IoU) to be the same face.
ALIGN_MIN_IOU = 0.3
#: Faces turned further than this are not embedded: 1 looks at the camera, 0 is a profile (the nose at
#: or beyond an eye, by YuNet's landmarks). Three-quarter views pass. Measured on bench/identity_set:
#: profiles put the same person 0.8-1.0 apart (cosine), farther than different people (docs/faces.md).
ALIGN_MIN_FRONTAL = 0.2
#: Faces flatter than this (standard deviation of the grey levels inside the aligned face, 0-255) are not
#: embedded: a face in the dark is a smooth blob whose vector sits near every other dark blob's. The
#: calibration set's readable faces all have at least 17.5 (its darkest: an audience face at 17.5), so
#: the thresholds were never measured below it; the Hamilton close-up's dark audience faces have 4-7.
ALIGN_MIN_CONTRAST = 12.0
#: SFace's input: the aligned face's side, and where its five reference landmarks go (right eye, left eye, nose
#: tip, right and left mouth corner) with their mean, as OpenCV's face_recognize.cpp writes them.
ALIGN_SIZE = 112
_REFERENCE = np.float32([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                         [70.7299, 92.2041]])
_REFERENCE_MEAN = np.float32([56.0262, 71.9008])
CHIP_SIZE = 150
CHIP_PADDING = 0.25


def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - ix * iy
    return ix * iy / union if union > 0 else 0.0


def frontal(row: np.ndarray) -> float:
    """1 for a face looking at the camera, 0 for a profile: where the nose lies between the eyes (a YuNet row)."""
    right_eye, left_eye, nose = float(row[4]), float(row[6]), float(row[8])
    span = left_eye - right_eye
    if abs(span) < 1e-6:
        return 0.0
    return max(0.0, min(1.0, 1.0 - 2.0 * abs((nose - right_eye) / span - 0.5)))


def contrast(aligned: np.ndarray) -> float:
    """Standard deviation of the grey levels in the middle of an aligned 112x112 face (eyes to chin)."""
    return float(cv2.cvtColor(aligned[16:96, 16:96], cv2.COLOR_BGR2GRAY).std())


def align_face(image: np.ndarray, box: tuple[int, int, int, int], *, rgb: bool = True) -> np.ndarray | None:
    """The face in ``box`` aligned for SFace (112x112 BGR), or None when YuNet finds no readable face there
    (none found, scored under ALIGN_MIN_SCORE, turned further than ALIGN_MIN_FRONTAL, or flatter than
    ALIGN_MIN_CONTRAST). :func:`align_face_scored` also says how frontal it is.
    """
    found = align_face_scored(image, box, rgb=rgb)
    return None if found is None else found[0]


def align_face_scored(image: np.ndarray, box: tuple[int, int, int, int], *,
                      rgb: bool = True) -> tuple[np.ndarray, float] | None:
    """(aligned face, :func:`frontal` of its landmarks), or None for a face :func:`align_face` refuses.

    ``image`` is the whole frame (RGB by default, as the pipeline decodes it; ``rgb=False`` for
    BGR). The box is scaled so its longer side is ALIGN_FACE pixels inside an ALIGN_INPUT square
    crop (one affine warp, black outside the frame); YuNet on that crop gives the five landmarks
    of the face overlapping the box best, and the crop is warped onto SFace's reference points at 112x112
    (:func:`align_crop`: what OpenCV's ``alignCrop`` does).
    """
    x, y, w, h = box
    if max(w, h) <= 0:
        return None
    crop, faces, scale = yunet_around(image, box, rgb=rgb)
    if not len(faces):
        return None
    expected = (ALIGN_INPUT / 2 - w * scale / 2, ALIGN_INPUT / 2 - h * scale / 2, w * scale, h * scale)
    overlaps = [_iou(expected, row[:4]) for row in faces]
    best = int(np.argmax(overlaps))
    pose = frontal(faces[best])
    if overlaps[best] < ALIGN_MIN_IOU or pose < ALIGN_MIN_FRONTAL:
        return None
    aligned = align_crop(crop, faces[best])
    return (aligned, pose) if aligned is not None and contrast(aligned) >= ALIGN_MIN_CONTRAST else None


def yunet_around(image: np.ndarray, box: tuple[float, float, float, float], *, rgb: bool = True,
                 face_px: int = ALIGN_FACE, input_px: int = ALIGN_INPUT,
                 min_score: float = ALIGN_MIN_SCORE) -> tuple[np.ndarray, np.ndarray, float]:
    """YuNet on a square crop around ``box``: (the BGR crop, YuNet's rows on it in crop pixels — empty when
    none scored ``min_score`` — and the crop's scale, crop pixels per frame pixel).

    The box's longer side becomes ``face_px`` pixels, centred in an ``input_px`` square (black outside the
    frame): by default the crop :func:`align_face` reads landmarks from. The box's centre is the crop's
    centre, so a crop point (u, v) is the frame point (cx + (u - input_px / 2) / scale, cy + (v - input_px /
    2) / scale). A face bigger than ``face_px`` is shrunk by area averaging first (:func:`_shrunk_around`):
    an affine warp samples without filtering (OpenCV's warpAffine has no INTER_AREA), and a 300 px face
    sampled every third pixel aliases into a different vector (docs/faces.md, "Big faces").
    """
    x, y, w, h = box
    scale = face_px / max(w, h)
    cx, cy = x + w / 2, y + h / 2
    source, left, top, sx, sy = (image, 0, 0, 1.0, 1.0) if scale >= 1 else _shrunk_around(image, cx, cy,
                                                                                        input_px / scale, scale)
    matrix = np.float32([[scale / sx, 0, input_px / 2 + (left - cx) * scale],
                         [0, scale / sy, input_px / 2 + (top - cy) * scale]])
    crop = cv2.warpAffine(source, matrix, (input_px, input_px), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)
    if rgb:
        crop = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    _, faces = zoo.yunet(input_px, input_px, min_score).detect(crop)
    return crop, (np.empty((0, 15), np.float32) if faces is None else faces), scale


def _shrunk_around(image: np.ndarray, cx: float, cy: float, side: float,
                   scale: float) -> tuple[np.ndarray, int, int, float, float]:
    """The part of the frame inside the ``side`` square centred on (cx, cy), shrunk ``scale`` times by area
    averaging: (pixels, the part's left and top in the frame, the horizontal and vertical scale it got)."""
    height, width = image.shape[:2]
    left, top = max(0, math.floor(cx - side / 2)), max(0, math.floor(cy - side / 2))
    right, bottom = min(width, math.ceil(cx + side / 2)), min(height, math.ceil(cy + side / 2))
    if right <= left or bottom <= top:  # the square lies outside the frame: the crop is black
        return np.zeros((1, 1) + image.shape[2:], image.dtype), left, top, scale, scale
    part = image[top:bottom, left:right]
    size = (max(1, round(part.shape[1] * scale)), max(1, round(part.shape[0] * scale)))
    return (cv2.resize(part, size, interpolation=cv2.INTER_AREA), left, top,
            size[0] / part.shape[1], size[1] / part.shape[0])


def align_crop(image: np.ndarray, row: np.ndarray) -> np.ndarray | None:
    """The 112x112 face SFace reads: ``image`` warped onto SFace's reference points by a YuNet row's landmarks
    (OpenCV's ``FaceRecognizerSF.alignCrop``, the same bytes); None where :func:`reference_transform` is."""
    matrix = reference_transform(row)
    return None if matrix is None else cv2.warpAffine(image, matrix, (ALIGN_SIZE, ALIGN_SIZE), flags=cv2.INTER_LINEAR)


def reference_transform(row: np.ndarray) -> np.ndarray | None:
    """The 2x3 similarity taking a YuNet row's five landmarks onto SFace's reference points: the transform of
    OpenCV's ``FaceRecognizerSF.alignCrop`` (face_recognize.cpp: Umeyama's least squares), computed as it does
    — means and products in float32, sums in float64, OpenCV's own SVD — so that the warped face is the same
    bytes (a test compares them) without loading OpenCV's copy of the network just to align. None for five
    landmarks on one point (no face to align; OpenCV would divide by zero)."""
    source = np.asarray(row[4:14], np.float32).reshape(5, 2)
    mean = np.array([(((source[0, k] + source[1, k]) + source[2, k]) + source[3, k] + source[4, k]) / np.float32(5)
                     for k in (0, 1)], np.float32)
    centred, reference = source - mean, _REFERENCE - _REFERENCE_MEAN
    variance = _sum(centred[:, 0] * centred[:, 0]) / 5 + _sum(centred[:, 1] * centred[:, 1]) / 5
    if variance <= 0:
        return None
    covariance = np.array([[_sum(reference[:, r] * centred[:, c]) / 5 for c in (0, 1)] for r in (0, 1)])
    signs = np.array([1.0, -1.0 if _det(covariance) < 0 else 1.0])
    singular, u, vt = cv2.SVDecomp(covariance)  # OpenCV's Jacobi SVD: its signs where LAPACK's could differ
    singular = singular.ravel()
    rotation_signs = signs
    if (singular > singular.max() * 2 * np.finfo(np.float32).tiny).sum() == 1:  # rank 1
        rotation_signs = np.array([1.0, 1.0 if _det(u) * _det(vt) > 0 else -1.0])
    rotation = u @ (np.diag(rotation_signs) @ vt)
    scale = 1.0 / variance * (singular[0] * signs[0] + singular[1] * signs[1])
    shift = [rotation[k, 0] * float(mean[0]) + rotation[k, 1] * float(mean[1]) for k in (0, 1)]
    return np.array([[rotation[0, 0] * scale, rotation[0, 1] * scale, float(_REFERENCE_MEAN[0]) - scale * shift[0]],
                     [rotation[1, 0] * scale, rotation[1, 1] * scale, float(_REFERENCE_MEAN[1]) - scale * shift[1]]])


def _sum(products: np.ndarray) -> float:
    """float32 products summed one by one in float64, as face_recognize.cpp sums them."""
    total = 0.0
    for value in products:
        total += float(value)
    return total


def _det(matrix: np.ndarray) -> float:
    return matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0]


def embed_aligned(aligned: np.ndarray) -> np.ndarray:
    """SFace's 128-d vector of an aligned face, L2-normalised (float32)."""
    return normalise(zoo.sface_features(aligned))


def load_sface() -> None:
    """Load SFace once (in a worker process, before the first face arrives); checks the file's sha256."""
    zoo.load_sface()


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
    """Load dlib's ResNet once (the Faces v2 embedding)."""
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
