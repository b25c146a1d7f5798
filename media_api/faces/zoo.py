"""OpenCV Zoo's YuNet face detector and SFace face recogniser, vendored in ``models/``.

Each runs on the runtime measured fastest for it on one core, on the zoo's own weights:

* **YuNet** on onnxruntime (:class:`YuNet`): 2-2.5x OpenCV's DNN (a 1080p frame ~45 ms against ~110 ms;
  the detector is most of a face analysis' CPU; OpenVINO: ~50 ms). Its weights are folded to float32 once
  (``scripts/derive_models.py``: OpenCV folds them the same way at load) and the network's output is decoded
  as OpenCV's ``FaceDetectorYN`` decodes it (face_detect.cpp): the same rows to float rounding.
* **SFace** on OpenVINO (:func:`sface_features`): ~9 ms a face against ~30 with OpenCV's DNN and ~24 with
  onnxruntime, in float32 (the precision is pinned: OpenVINO would pick bfloat16 on CPUs that have it), on
  the zoo's int8 weights with their blocked dequantisation written in standard operators
  (``scripts/derive_models.py``). Its vectors are OpenCV's to 4e-6 (L2, unit vectors), so they keep SFace's
  model name and calibration. The alignment is OpenCV's ``alignCrop`` (``embeddings.align_crop``).

Both are checked against OpenCV's own (:func:`opencv_yunet`, :func:`opencv_sface`) by
tests/test_identity_calibration.py. The model files are read into memory, checked against the sha256
recorded here and handed to the runtime *as those bytes*: what is hashed is exactly what runs, and a file
altered on disk is refused with :class:`ModelFileAltered` instead of silently producing different vectors.
Nothing is downloaded; provenance and licences are in ``models/SOURCE.md``. The runtimes are imported on
first use: a web process that never embeds a photo never loads them.

No runtime object is shared between threads or processes: each process makes its own (keyed by pid, so a
forked worker does too), to be used from one thread (the pipeline's main thread, a worker process, or under
a lock: ``services/face_search.py``).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

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
#: YUNET with its block-quantised weights folded to float32, the graph onnxruntime runs (derived from YUNET by
#: scripts/derive_models.py, which a test re-runs; input height and width free).
YUNET_FP32 = ZooModel(
    name="yunet-2023mar-int8bq-folded-fp32",
    filename="face_detection_yunet_2023mar_int8bq_folded_fp32.onnx",
    sha256="235f40c22475ff773bbd7836afb11663d9ab6956ef17d479bf52740c3387ab3b",
    size=241_303,
)
SFACE = ZooModel(
    name="sface-2021dec-int8bq",
    filename="face_recognition_sface_2021dec_int8bq.onnx",
    sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    size=10_667_852,
)
#: SFACE with its blocked dequantisation written in standard operators, the graph OpenVINO runs (derived from
#: SFACE by scripts/derive_models.py, which a test re-runs; the same int8 weights, restored to float32 at load).
SFACE_UNBLOCKED = ZooModel(
    name="sface-2021dec-int8bq-unblocked",
    filename="face_recognition_sface_2021dec_int8bq_unblocked.onnx",
    sha256="7060a1bfc3526368c21372af606cbac0a5a201b933b6797038e57e4a51b793f7",
    size=10_692_758,
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


@lru_cache(maxsize=3)
def _model_buffer(model: ZooModel) -> np.ndarray:
    return verified_bytes(model)


_EMPTY_CONFIG = np.empty(0, dtype=np.uint8)


#: YuNet's three heads: anchors 8, 16 and 32 pixels apart.
_STRIDES = (8, 16, 32)


class YuNet:
    """YuNet on onnxruntime, answering as ``cv2.FaceDetectorYN.detect`` does, for BGR images of any size.

    ``detect(image)`` returns ``(1, faces)``, ``faces`` None or one float32 row per face, best score first: x,
    y, w, h, the 5 landmarks (right eye, left eye, nose tip, right and left mouth corner; x, y each) and the
    score. As OpenCV: the image is padded right and bottom to a multiple of 32, each of the three heads'
    anchors decoded (score = sqrt(cls x obj), both clamped to 0..1), boxes under the score threshold
    dropped, the rest suppressed by ``cv2.dnn.NMSBoxes`` on integer boxes.
    """

    STRIDES = _STRIDES
    OUTPUTS = [f"{head}_{stride}" for head in ("cls", "obj", "bbox", "kps") for stride in _STRIDES]

    def __init__(self, session: Any, score_threshold: float, nms_threshold: float, top_k: int) -> None:
        self._session = session
        self.score_threshold, self.nms_threshold, self.top_k = score_threshold, nms_threshold, top_k

    def detect(self, image: np.ndarray) -> tuple[int, np.ndarray | None]:
        height, width = image.shape[:2]
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        blob = np.zeros((1, 3, padded_h, padded_w), np.float32)  # cv2.dnn.blobFromImage's, at a fifth of its cost
        blob[0, :, :height, :width] = image.transpose(2, 0, 1)
        outputs = self._session.run(self.OUTPUTS, {"input": blob})
        faces = [self._decode(outputs, i, stride, padded_w // stride) for i, stride in enumerate(self.STRIDES)]
        faces = np.concatenate(faces)
        if len(faces) > 1:
            boxes = faces[:, :4].astype(np.int32)  # OpenCV suppresses on int(x), int(y), int(w), int(h)
            keep = cv2.dnn.NMSBoxes(boxes, faces[:, 14], self.score_threshold, self.nms_threshold, 1.0, self.top_k)
            faces = faces[np.asarray(keep, dtype=np.int64).reshape(-1)]
        return 1, (faces if len(faces) else None)

    def _decode(self, outputs: list[np.ndarray], head: int, stride: int, columns: int) -> np.ndarray:
        """The rows of one head (anchors ``stride`` pixels apart), those under the score threshold left out."""
        n = len(self.STRIDES)
        cls, obj = (np.clip(outputs[head + k * n].reshape(-1), 0.0, 1.0) for k in (0, 1))
        score = np.sqrt(cls * obj)
        anchors = np.flatnonzero(score >= self.score_threshold)
        bbox = outputs[head + 2 * n].reshape(-1, 4)[anchors]
        kps = outputs[head + 3 * n].reshape(-1, 10)[anchors]
        column = (anchors % columns).astype(np.float32)
        row = (anchors // columns).astype(np.float32)
        step = np.float32(stride)
        faces = np.empty((len(anchors), 15), np.float32)
        faces[:, 2] = np.exp(bbox[:, 2]) * step
        faces[:, 3] = np.exp(bbox[:, 3]) * step
        faces[:, 0] = (column + bbox[:, 0]) * step - faces[:, 2] / 2
        faces[:, 1] = (row + bbox[:, 1]) * step - faces[:, 3] / 2
        faces[:, 4:14:2] = (kps[:, 0::2] + column[:, None]) * step
        faces[:, 5:14:2] = (kps[:, 1::2] + row[:, None]) * step
        faces[:, 14] = score[anchors]
        return faces


@lru_cache(maxsize=2)
def _yunet_session(pid: int) -> Any:
    """One onnxruntime session per process (``pid``: a forked worker makes its own), on one thread: each
    process is one lane of the cores (the pipeline's detector processes use the others). Imported here: web
    processes, which read the calibration next door, never load the runtime."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    # Memory patterns plan one layout per input shape, and YuNet sees many (frames, crops): without them a
    # process holds ~140 MB after its first 1080p frame instead of ~210, and runs as fast (docs/faces.md).
    options.enable_mem_pattern = False
    return onnxruntime.InferenceSession(_model_buffer(YUNET_FP32).tobytes(), options,
                                        providers=["CPUExecutionProvider"])


@lru_cache(maxsize=16)
def _yunet(pid: int, score_threshold: float, nms_threshold: float, top_k: int) -> YuNet:
    return YuNet(_yunet_session(pid), score_threshold, nms_threshold, top_k)


def yunet(
    width: int = 0,
    height: int = 0,
    score_threshold: float = YUNET_SCORE_THRESHOLD,
    nms_threshold: float = YUNET_NMS_THRESHOLD,
    top_k: int = YUNET_TOP_K,
) -> YuNet:
    """This process's YuNet with these thresholds; it takes BGR images of any size (``width`` and ``height``,
    which sized OpenCV's detector, are no longer needed)."""
    return _yunet(os.getpid(), float(score_threshold), float(nms_threshold), int(top_k))


def opencv_yunet(width: int, height: int, score_threshold: float = YUNET_SCORE_THRESHOLD) -> cv2.FaceDetectorYN:
    """OpenCV's own YuNet on the zoo's file, for images of exactly ``width`` x ``height``: the reference
    :class:`YuNet` is checked against (tests) and measured against (bench)."""
    return cv2.FaceDetectorYN.create("onnx", _model_buffer(YUNET), _EMPTY_CONFIG, (int(width), int(height)),
                                     float(score_threshold), YUNET_NMS_THRESHOLD, YUNET_TOP_K)


@lru_cache(maxsize=2)
def _sface_request(pid: int) -> Any:
    """This process's OpenVINO inference request for SFace (``pid``: a forked worker compiles its own), on one
    thread and in float32."""
    import openvino

    core = openvino.Core()
    network = core.read_model(verified_bytes(SFACE_UNBLOCKED).tobytes())  # not kept: compiled, it is not read again
    compiled = core.compile_model(network, "CPU", {
        "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",  # bfloat16 where the CPU has it would move the vectors by ~0.01
    })
    return compiled.create_infer_request()


def load_sface() -> None:
    """Compile SFace in this process now (a worker, before its first face), checking the file's sha256."""
    _sface_request(os.getpid())


def sface_features(aligned: np.ndarray) -> np.ndarray:
    """SFace's 128 float32 values (not unit length) for a 112x112 BGR aligned face: what
    ``cv2.FaceRecognizerSF.feature`` gives, whose input blob (RGB, planar, unscaled) is built the same way."""
    blob = np.ascontiguousarray(aligned[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32)[None]
    return _sface_request(os.getpid()).infer({0: blob})[0].reshape(-1).copy()


@lru_cache(maxsize=1)
def opencv_sface() -> cv2.FaceRecognizerSF:
    """OpenCV's SFace recogniser on the zoo's file: the reference :func:`sface_features` and
    ``embeddings.align_crop`` are checked against (tests) and measured against (bench).
    ``alignCrop(bgr_image, yunet_row)`` gives the 112x112 aligned face, ``feature(aligned)`` its 1x128 vector."""
    return cv2.FaceRecognizerSF.create("onnx", _model_buffer(SFACE), _EMPTY_CONFIG)
