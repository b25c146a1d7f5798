"""The vendored identity models (OpenCV Zoo's YuNet and SFace) and the calibration derived from them."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from media_api.faces import zoo

DEMO = Path(__file__).resolve().parent.parent / "demo" / "media"


def _frame_bgr(clip: str, index: int) -> np.ndarray:
    with av.open(str(DEMO / f"{clip}.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="bgr24")
    raise AssertionError(f"{clip} has no frame {index}")


@pytest.mark.parametrize("model", [zoo.YUNET, zoo.SFACE], ids=lambda m: m.name)
def test_vendored_model_matches_its_recorded_sha256(model):
    data = zoo.verified_bytes(model)
    assert data.size == model.size


def test_an_altered_model_file_is_refused(tmp_path, monkeypatch):
    altered = tmp_path / zoo.SFACE.filename
    shutil.copyfile(zoo.SFACE.path, altered)
    with altered.open("r+b") as handle:
        handle.seek(4096)
        byte = handle.read(1)
        handle.seek(4096)
        handle.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(zoo, "MODELS_DIR", tmp_path)
    with pytest.raises(zoo.ModelFileAltered, match="expected fb143eea"):
        zoo.verified_bytes(zoo.SFACE)
    altered.unlink()
    with pytest.raises(zoo.ModelFileAltered, match="missing"):
        zoo.verified_bytes(zoo.SFACE)


def test_yunet_finds_faces_with_landmarks_and_sface_embeds_them():
    """Hamilton frame 10 (wide shot): two labelled faces; the same face a frame later stays close."""
    first, second = _frame_bgr("face_recognition_short_hamilton_clip", 10), _frame_bgr(
        "face_recognition_short_hamilton_clip", 11
    )
    height, width = first.shape[:2]
    detector = zoo.yunet(width, height)
    assert zoo.yunet(width, height) is detector  # one detector per size
    _, faces = detector.detect(first)
    _, faces_next = detector.detect(second)
    assert faces is not None and faces.shape[1] == 15 and len(faces) >= 2
    recogniser = zoo.sface()
    vectors = [recogniser.feature(recogniser.alignCrop(first, row)).ravel() for row in faces[:2]]
    again = recogniser.feature(recogniser.alignCrop(second, faces_next[0])).ravel()
    assert vectors[0].shape == (128,)

    def cosine(a, b):
        return 1.0 - float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    assert cosine(vectors[0], again) < cosine(vectors[0], vectors[1])
