"""The vendored identity models (OpenCV Zoo's YuNet and SFace) and the calibration derived from them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from media_api.faces import zoo

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "media"


def _frame_bgr(clip: str, index: int) -> np.ndarray:
    with av.open(str(DEMO / f"{clip}.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="bgr24")
    raise AssertionError(f"{clip} has no frame {index}")


@pytest.mark.parametrize("model", [zoo.YUNET, zoo.YUNET_FP32, zoo.SFACE, zoo.SFACE_UNBLOCKED], ids=lambda m: m.name)
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


@pytest.mark.parametrize("index", [0, 1], ids=["yunet", "sface"])
def test_the_graphs_the_runtimes_run_are_the_zoo_files_rewritten(index):
    """The graphs onnxruntime and OpenVINO run are what scripts/derive_models.py makes of the zoo's int8bq
    files, byte for byte: no weight in them was changed by hand."""
    from scripts.derive_models import derivations

    source, derived, derive = derivations()[index]
    assert derive(zoo.verified_bytes(source).tobytes()) == zoo.verified_bytes(derived).tobytes()


@pytest.mark.parametrize("clip, index", [
    ("face_recognition_short_hamilton_clip", 10), ("face_recognition_short_hamilton_clip", 213),
    ("facenet_pytorch_video", 28), ("facenet_pytorch_video", 82),
])
def test_sface_on_openvino_aligns_and_embeds_as_opencv_does(clip, index):
    """Every face YuNet finds on the frame (and on a face-sized crop around it, as the pipeline aligns): the
    aligned face is the bytes OpenCV's ``alignCrop`` makes, and its vector is OpenCV's (``FaceRecognizerSF``
    on the zoo's file) to float rounding — so stored vectors, thresholds and the model name stay valid."""
    from media_api.faces import embeddings

    image = _frame_bgr(clip, index)
    _, rows = zoo.yunet().detect(image)
    reference = zoo.opencv_sface()
    compared = 0
    for row in rows:
        crop, crop_rows, _ = embeddings.yunet_around(image, tuple(float(v) for v in row[:4]), rgb=False)
        for picture, landmarks in [(image, row)] + [(crop, r) for r in crop_rows]:
            aligned = reference.alignCrop(picture, landmarks)
            ours = embeddings.align_crop(picture, landmarks)
            assert np.array_equal(ours, aligned)
            expected = embeddings.normalise(reference.feature(aligned).ravel())
            assert np.linalg.norm(embeddings.embed_aligned(aligned) - expected) < 2e-5
            compared += 1
    assert compared >= 4


@pytest.mark.parametrize("clip, index, shrink", [
    ("face_recognition_short_hamilton_clip", 10, 1), ("face_recognition_short_hamilton_clip", 213, 1),
    ("facenet_pytorch_video", 28, 1), ("facenet_pytorch_video", 28, 2), ("facenet_pytorch_video", 82, 4),
])
@pytest.mark.parametrize("score_threshold", [0.7, 0.5])
def test_yunet_on_onnxruntime_answers_as_opencv_does(clip, index, shrink, score_threshold):
    """The same faces as ``cv2.FaceDetectorYN`` on the zoo's file, in the same order, to float rounding:
    decoding, thresholds and suppression are OpenCV's (frame sizes that are and are not multiples of 32)."""
    image = _frame_bgr(clip, index)
    if shrink > 1:
        image = cv2.resize(image, (image.shape[1] // shrink, image.shape[0] // shrink), interpolation=cv2.INTER_AREA)
    height, width = image.shape[:2]
    _, expected = zoo.opencv_yunet(width, height, score_threshold).detect(image)
    _, found = zoo.yunet(width, height, score_threshold).detect(image)
    assert expected is not None and found is not None
    assert found.shape == expected.shape and found.dtype == np.float32
    np.testing.assert_allclose(found[:, :14], expected[:, :14], atol=0.01)
    np.testing.assert_allclose(found[:, 14], expected[:, 14], atol=1e-4)


def test_the_alignment_is_opencvs_on_random_and_degenerate_landmarks():
    """reference_transform is alignCrop's transform for any five points — collinear ones too, where the SVD's
    signs are arbitrary and only OpenCV's own SVD gives OpenCV's warp — and five points on one spot are no face."""
    from media_api.faces.embeddings import align_crop, reference_transform

    rng = np.random.default_rng(19)
    image = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    reference = zoo.opencv_sface()
    for case in range(300):
        row = np.zeros(15, np.float32)
        points = rng.uniform(40, 260, (5, 2)) if case % 3 else np.linspace(10, 50, 5)[:, None].repeat(2, axis=1)
        row[4:14] = np.asarray(points, np.float32).ravel()
        ours = align_crop(image, row)
        assert np.array_equal(ours, reference.alignCrop(image, row)), case
    row = np.zeros(15, np.float32)
    row[4:14] = 7.0
    assert reference_transform(row) is None


def test_yunet_finds_faces_with_landmarks_and_sface_embeds_them():
    """Hamilton frame 10 (wide shot): two labelled faces; the same face a frame later stays close."""
    first, second = _frame_bgr("face_recognition_short_hamilton_clip", 10), _frame_bgr(
        "face_recognition_short_hamilton_clip", 11
    )
    height, width = first.shape[:2]
    detector = zoo.yunet(width, height)
    assert zoo.yunet(width // 2, height) is detector  # one detector per thresholds, for any size
    _, faces = detector.detect(first)
    _, faces_next = detector.detect(second)
    assert faces is not None and faces.shape[1] == 15 and len(faces) >= 2
    from media_api.faces.embeddings import align_crop

    def vector(image, row):
        return zoo.sface_features(align_crop(image, row))

    vectors = [vector(first, row) for row in faces[:2]]
    again = vector(second, faces_next[0])
    assert vectors[0].shape == (128,)

    def cosine(a, b):
        return 1.0 - float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    assert cosine(vectors[0], again) < cosine(vectors[0], vectors[1])


def assert_confident_is_the_closest_stranger(record: dict) -> None:
    """The open-set rule: *confident* (one click names a trace) is the distance no two different people came
    within on the calibration set — per-pair FAR 0, single faces and exemplar sets (closest pair) alike —
    however each face was read (as stored, re-compressed, at 3/4 size, its box moved: ``READINGS``), and not
    less (that distance rounded down to 3 decimals). A per-pair FAR p above 0 gives a person named nowhere
    about N x p chance of a confident wrong name among N named; a reading moves a stranger pair by up to 0.37."""
    assert record["far_targets"]["confident"] == 0.0
    assert record["readings"] == ["jpeg75", "three_quarters", "box_moved"]
    single, sets = record["closest_strangers_read_any_way"][0], record["sets"]["min"]["closest_strangers_read_any_way"]
    assert single == sets <= record["impostor"]["min"]  # a reading can only bring strangers closer
    # clustering compares set means, and a one-face set's mean is its face: the cluster distance is under both
    assert record["sets"]["centroid"]["thresholds_cosine"]["cluster"] <= record["thresholds_cosine"]["cluster"]
    for part in (record, record["sets"]["min"]):
        confident = part["thresholds_cosine"]["confident"]
        assert part["rates"]["confident"]["false_accepts"] == 0
        assert single - 0.0011 < confident <= single, (confident, single)


def test_calibration_is_what_the_committed_identity_set_gives():
    """Recompute SFace's calibration from bench/identity_set/ (every crop's sha256 checked): it must be
    the committed calibration.json, so no threshold can be edited by hand or drift from its evidence."""
    from bench import eval_identity
    from media_api.faces import calibration

    faces, set_hash = eval_identity.load_set()
    stored = calibration.load()
    assert stored["set_sha256"] == set_hash, "the identity set changed: rerun bench/eval_identity.py --write"
    assert stored["model_sha256"] == zoo.SFACE.sha256
    fresh = eval_identity.sface_calibration(faces, set_hash)
    for key in ("faces", "embedded", "below_min_face_px", "unreadable", "people", "genuine_pairs", "impostor_pairs"):
        assert fresh[key] == stored[key], key
    # thresholds are 3-decimal floors: a distance a hair from a step may land one step away on another machine
    for name, value in stored["thresholds_cosine"].items():
        assert fresh["thresholds_cosine"][name] == pytest.approx(value, abs=1.5e-3), name
        assert fresh["rates"][name]["false_accepts"] == stored["rates"][name]["false_accepts"], name
    # exemplar sets (what suggestions and clustering compare): the same simulated sets, the same thresholds
    for key in ("seed", "sets", "genuine_pairs", "impostor_pairs"):
        assert fresh["sets"][key] == stored["sets"][key], key
    for linkage in ("min", "centroid"):
        for name, value in stored["sets"][linkage]["thresholds_cosine"].items():
            assert fresh["sets"][linkage]["thresholds_cosine"][name] == pytest.approx(value, abs=1.5e-3), (linkage,
                                                                                                           name)
            assert (fresh["sets"][linkage]["rates"][name]["false_accepts"]
                    == stored["sets"][linkage]["rates"][name]["false_accepts"]), (linkage, name)
    assert_confident_is_the_closest_stranger(stored)
    assert_confident_is_the_closest_stranger(fresh)
    assert stored["sets"]["centroid"]["rates"]["cluster"]["false_accepts"] == 0
    from identities import suggestions

    assert suggestions.CONFIDENT_DISTANCE == calibration.SET_CONFIDENT_DISTANCE == pytest.approx(
        (2 * stored["sets"]["min"]["thresholds_cosine"]["confident"]) ** 0.5, abs=1e-4)
    assert suggestions.SUGGESTION_MAX_DISTANCE == pytest.approx(
        (2 * stored["sets"]["min"]["thresholds_cosine"]["offered"]) ** 0.5, abs=1e-4)
    assert suggestions.CLUSTER_DISTANCE == pytest.approx(
        (2 * stored["sets"]["centroid"]["thresholds_cosine"]["cluster"]) ** 0.5, abs=1e-4)
    # what the set says the thresholds must achieve
    assert stored["set_sha256"] and stored["people"] >= 20 and stored["faces"] >= 80
    assert stored["rates"]["cluster"]["false_accepts"] == 0
    assert calibration.CONFIDENT_DISTANCE == pytest.approx((2 * stored["thresholds_cosine"]["confident"]) ** 0.5,
                                                           abs=1e-4)


def test_a_calibration_of_another_model_is_refused(tmp_path):
    from media_api.faces import calibration

    record = json.loads(calibration.CALIBRATION_FILE.read_text())
    record["model_sha256"] = "0" * 64
    other = tmp_path / "calibration.json"
    other.write_text(json.dumps(record))
    with pytest.raises(calibration.CalibrationMismatch, match="eval_identity.py --write"):
        calibration.load(other)


def test_an_altered_crop_of_the_identity_set_is_detected(tmp_path):
    from bench import eval_identity

    manifest = json.loads(eval_identity.MANIFEST.read_text())
    first = manifest["faces"][0]
    (tmp_path / first["file"]).parent.mkdir(parents=True)
    (tmp_path / first["file"]).write_bytes((eval_identity.SET_DIR / first["file"]).read_bytes() + b"\0")
    (tmp_path / "manifest.json").write_text(json.dumps({"faces": [first]}))
    with pytest.raises(ValueError, match="differs from the manifest"):
        eval_identity.load_set(tmp_path / "manifest.json")


def test_turned_faces_the_old_frontal_check_refused_are_embedded_and_recognised():
    """The performer's medium shots (Hamilton frames 108-210, faces 85-103 px) turn his head: Faces v2's
    frontal check (nose between BlazeFace's ear points >= 0.5) refused these faces (measured 0.0-0.49), so
    that shot had few or no embeddings. SFace, aligned on YuNet's landmarks, reads them, and they match his
    photo from another source (face_recognition's example photo): each within the offered distance, the
    shot's faces as an exemplar set (their closest one) within the confident distance — the same person
    across sources, confidently. (Measured 2026-12-05: 0.938, 1.053, 0.824, 0.816 against confident 1.0217
    and offered 1.1924; the most turned, frame 120, is a weak match on its own.)"""
    from media_api.faces import calibration, embeddings
    from media_api.faces.detector import detect
    from media_api.faces.tracker import FaceTracker, Track

    photo = next(f for f in json.loads((REPO / "bench" / "identity_set" / "manifest.json").read_text())["faces"]
                 if f["file"].startswith("photos/lin_manuel_miranda/"))
    image = cv2.imread(str(REPO / "bench" / "identity_set" / photo["file"]))
    reference = embeddings.embed_aligned(embeddings.align_face(image, photo["box"], rgb=False))
    distances = []
    for frame in (114, 120, 204, 210):
        rgb = cv2.cvtColor(_frame_bgr("face_recognition_short_hamilton_clip", frame), cv2.COLOR_BGR2RGB)
        performer = max(detect(rgb), key=lambda face: face.height)  # the one big face of the medium shot
        assert FaceTracker(rgb.shape[1], rgb.shape[0], 29.97).wants_embedding(Track(key=1, shot=0), performer, frame)
        aligned = embeddings.align_face(rgb, performer.box)
        assert aligned is not None, frame
        distances.append(float(np.linalg.norm(embeddings.embed_aligned(aligned) - reference)))
    assert max(distances) <= calibration.SET_OFFERED_DISTANCE, distances
    assert min(distances) <= calibration.SET_CONFIDENT_DISTANCE, distances
    assert sum(d <= calibration.CONFIDENT_DISTANCE for d in distances) >= 3, distances


def test_profiles_and_faces_yunet_cannot_find_get_no_embedding():
    """The profile close-up (frame 30) and a crop with no face: no embedding rather than a misleading one
    (profiles put the same person farther apart than different people on the calibration set)."""
    from media_api.faces import embeddings
    from media_api.faces.detector import detect

    rgb = cv2.cvtColor(_frame_bgr("face_recognition_short_hamilton_clip", 30), cv2.COLOR_BGR2RGB)
    profile = max(detect(rgb), key=lambda face: face.height)
    assert profile.height > 150 and embeddings.align_face(rgb, profile.box) is None
    assert embeddings.align_face(rgb, (0, 0, 60, 60)) is None  # a dark corner of the stage


def test_an_unreadable_face_is_retried_every_half_second_a_bounded_number_of_times():
    """Each try runs YuNet on a crop: a track whose face never becomes readable costs at most
    MAX_EMBED_TRIES tries, at least EMBED_RETRY_SECONDS apart, however long it lasts."""
    from media_api.faces import tracker
    from media_api.faces.detector import Face

    fps = 30.0
    follower = tracker.FaceTracker(640, 360, fps)
    track = tracker.Track(key=1, shot=0)
    face = Face(100, 100, 80, 80, 0.95)
    tried = []
    for frame in range(0, 3000, 6):  # a sample every 0.2 s for 100 s; the face is never readable
        if follower.wants_embedding(track, face, frame):
            track.last_tried, track.embed_tries = frame, track.embed_tries + 1
            tried.append(frame)
    assert len(tried) == tracker.MAX_EMBED_TRIES
    assert min(b - a for a, b in zip(tried, tried[1:], strict=False)) >= tracker.EMBED_RETRY_SECONDS * fps


@pytest.mark.parametrize(("frame", "box"), [(48, (181, 61, 57, 86)), (234, (588, 47, 49, 74))])
def test_faces_in_the_dark_get_no_embedding(frame, box, monkeypatch):
    """Two faces of the dark Hamilton audience (boxes YuNet draws there): YuNet finds landmarks on them,
    but they are nearly flat (grey-level spread 4-7 where the calibration set's faces have >= 17.5), and
    such faces all look alike to SFace (two different people came out a confident match). No embedding."""
    from media_api.faces import embeddings

    rgb = cv2.cvtColor(_frame_bgr("face_recognition_short_hamilton_clip", frame), cv2.COLOR_BGR2RGB)
    assert embeddings.align_face(rgb, box) is None
    gate = embeddings.ALIGN_MIN_CONTRAST
    monkeypatch.setattr(embeddings, "ALIGN_MIN_CONTRAST", 0.0)
    aligned = embeddings.align_face(rgb, box)  # readable but for the gate: it is the contrast that refuses it
    assert aligned is not None and embeddings.contrast(aligned) < gate
