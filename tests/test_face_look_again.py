"""A closer look where a followed face was missed (issue 19: small faces, faces turning or half hidden).

The detector misses a face it scores at the edge of its threshold on one sample and finds on the next; a
track missed twice ends. Before a track counts as missed, YuNet looks again on a crop around it seen bigger
(``detector.detect_near``), by the detector's own rules (``FaceTracker.observe(look_near=)``). Measured on
the crowd mosaics (bench/bench_crowd.py, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import av
import cv2
import numpy as np

from bench.eval_faces import load_labels
from media_api.faces.detector import Face, FaceDetector
from media_api.faces.followers import HoldFollower
from media_api.faces.tracker import FaceTracker, _found_again, same_face, same_faces
from media_api.faces.yunet import SECOND_OPINION_MIN_PX, SURE_SCORE
from tests.conftest import FACENET

SCALE = 0.4  # the 1080p demo clip at 768x432: its faces 15-45 px


def _first_frame_and_faces() -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The demo clip's first labelled frame shrunk to SCALE, and its labelled faces (not ignored) there."""
    with av.open(str(FACENET)) as source:
        frame = next(source.decode(video=0)).to_ndarray(format="rgb24")
    small = cv2.resize(frame, (round(1920 * SCALE), round(1080 * SCALE)), interpolation=cv2.INTER_AREA)
    labels = load_labels()["facenet_pytorch_video"]["frames"]["0"]
    boxes = [tuple(round(v * SCALE) for v in (f["x"], f["y"], f["w"], f["h"])) for f in labels if not f["ignore"]]
    return small, boxes


def test_a_closer_look_finds_the_faces_around_their_boxes_in_frame_pixels():
    """Around each labelled face of 16 px or more, the closer look finds that face: the box it gives, in the
    frame's pixels, is the label's face (not a neighbour's, not off by the crop's scale)."""
    rgb, boxes = _first_frame_and_faces()
    boxes = [box for box in boxes if box[3] >= 16]
    found = FaceDetector(threads=1).detect_near(rgb, boxes)
    assert len(found) == len(boxes) and len(boxes) >= 6
    hits = [faces[0] for box, faces in zip(boxes, found, strict=True) if faces and same_face(box, faces[0].box) > 0]
    assert len(hits) >= 0.8 * len(boxes), (boxes, found)
    for face in hits:
        assert 0 < face.score <= 1 and len(face.keypoints) == 5
        for px, py in face.keypoints[:2]:  # the eyes, in frame pixels too
            assert face.x - 2 <= px <= face.x + face.width + 2 and face.y <= py <= face.y + face.height
    assert FaceDetector(threads=1).detect_near(rgb, [(10, 10, 12, 12)]) == [[]]  # too small to look at


def _run(look_near, seen=(0, 5), frames=21, min_height=0) -> FaceTracker:
    """A tracker over blank frames (faces coast): FACE detected on the samples ``seen``, OTHER on every sample."""
    tracker = FaceTracker(640, 360, 25.0, make_follower=HoldFollower)
    grey = tracker.track_image(np.zeros((360, 640), np.uint8))
    for frame in range(frames):
        tracker.advance(frame, grey)
        if frame % 5 == 0:
            tracker.observe(frame, grey, [FACE, OTHER] if frame in seen else [OTHER], min_height, look_near)
    return tracker


FACE, OTHER = Face(100, 100, 30, 36, 0.8), Face(300, 100, 30, 36, 0.9)


def _found_beside(boxes):
    """A closer look that finds a face just beside every box."""
    return [[Face(box[0] + 2, box[1] + 1, 30, 36, 0.95)] for box in boxes]


def test_a_track_the_sample_missed_is_confirmed_by_the_closer_look():
    """A face detected on two samples and missed by the next ones is confirmed there when the closer look finds
    it (detected boxes, no miss) — on MAX_MISSES + 1 samples in a row at most: then it is missed as without a
    look, and missed twice it ends. Without a look it ends at once."""
    looks: list[list[tuple]] = []

    def look_near(boxes):
        looks.append(list(boxes))
        return _found_beside(boxes)

    tracker = _run(look_near, frames=31)
    track = next(t for t in tracker.close() if t.boxes[0][0] == 100)
    assert [track.detected[f] for f in (0, 5, 10, 15)] == [True] * 4
    assert track.boxes[10] == (102, 101, 30, 36) and track.scores[10] == 0.95  # the face the closer look found
    assert track.end == 19  # not looked for at 20 (two looks in a row), missed at 20 and 25: cut back to 19
    assert looks and all((300, 100, 30, 36) not in boxes for boxes in looks)  # the other track was matched

    blind = next(t for t in _run(None, frames=31).close() if t.boxes[0][0] == 100)
    assert blind.end == 9  # missed at 10 and 15


def test_a_closer_look_makes_no_face_and_takes_none():
    """A track detected once is not looked for (one detection is noise: an emblem found twice must not become a
    trace by closer looks); nor a small face on a sample that was not searched for small faces (it is neither
    confirmed nor missed there); and a face the look finds on another track's detection is not its face."""
    looks: list[list[tuple]] = []

    def look_near(boxes):
        looks.append(list(boxes))
        return _found_beside(boxes)

    _run(look_near, seen=(0,))
    assert looks == []
    _run(look_near, min_height=40)  # FACE is 36 px high
    assert looks == []

    track = _run(None, frames=6)._active[0]  # detected at 0 and 5: its last box (100, 100, 30, 36)
    beside, detection = Face(108, 100, 30, 36, 0.9), (125, 100, 30, 36)  # the detection is not the track's
    assert same_face(track.boxes[-1], detection) == 0 and same_face(beside.box, detection) > 0
    assert _found_again(track, [beside], []) == beside
    assert _found_again(track, [beside], [detection]) is None  # another track's face


def test_same_faces_is_same_face_for_many_pairs():
    """The vectorised check (tracks x detections in a crowd, common frames of two tracks) gives the same
    floats as the one-pair function, overlap, containment and size ratio rules included."""
    rng = np.random.default_rng(19)
    a = np.concatenate([rng.integers(0, 80, (4000, 2)), rng.integers(0, 50, (4000, 2))], axis=1)
    b = np.abs(a + rng.integers(-20, 20, (4000, 4)))
    pairs = same_faces(a, b)
    assert pairs.tolist() == [same_face(tuple(map(int, x)), tuple(map(int, y))) for x, y in zip(a, b, strict=True)]
    assert np.count_nonzero(pairs) > 500 and np.count_nonzero(pairs == 0) > 500
    matrix = same_faces(a[:30, None], b[:40])
    assert matrix.shape == (30, 40)
    assert all(matrix[i, j] == same_face(tuple(map(int, a[i])), tuple(map(int, b[j])))
               for i in range(30) for j in range(40))


def test_sure_faces_too_small_to_embed_get_no_second_opinion():
    """BlazeFace's second opinion only lowers a sure face's score, which decides embedding: a sure face too
    small ever to be embedded keeps YuNet's score (no BlazeFace run); a bigger one gets the lower of the two."""
    from media_api.faces.blazeface import DetectedFace

    rgb, _ = _first_frame_and_faces()
    blank = np.zeros_like(rgb)  # BlazeFace finds no face in black: a score far under YuNet's
    small = DetectedFace(100, 100, 20, SECOND_OPINION_MIN_PX - 1, 0.9, ())
    big = DetectedFace(200, 100, 40, SECOND_OPINION_MIN_PX + 8, 0.9, ())
    verifier = FaceDetector(threads=1)._detector
    kept_small, kept_big = verifier.verified(blank, [small, big])
    assert kept_small.score == 0.9 >= SURE_SCORE
    assert kept_big is not None and kept_big.score < 0.5


def test_the_pipeline_looks_again(monkeypatch):
    """``analyse_video`` hands the tracker its closer look (``pipeline.LOOK_AGAIN``): on the Hamilton clip it
    bridges samples the detector missed (longer traces, more detected boxes), and finds no face the labels do
    not have."""
    from bench.eval_faces import evaluate
    from media_api.faces import pipeline
    from media_api.ffmpeg.probe import probe_video
    from tests.conftest import HAMILTON

    probe = probe_video(HAMILTON)
    results = {}
    for look in (False, True):
        monkeypatch.setattr(pipeline, "LOOK_AGAIN", look)
        analysis = pipeline.analyse_video(HAMILTON, probe.index, float(probe.fps))
        boxes: dict[int, list] = {}
        for row in analysis.rows():
            boxes.setdefault(row["frame_number"], []).append((row["x"], row["y"], row["width"], row["height"]))
        results[look] = (analysis.rows(), evaluate(load_labels()["face_recognition_short_hamilton_clip"], boxes))
    (blind, blind_score), (looked, looked_score) = results[False], results[True]
    detected = [sum(row["origin"] == "detected" for row in rows) for rows in (blind, looked)]
    assert len(looked) > len(blind) and detected[1] > detected[0], (len(blind), len(looked), detected)
    assert looked_score["precision"] >= blind_score["precision"] and looked_score["recall"] >= blind_score["recall"]
