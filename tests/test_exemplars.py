"""Trace exemplar sets (issue 19, item 3): a few face vectors per trace, compared as sets.

Real faces (demo clips, bench/identity_set photos) through the real detector, YuNet alignment and
SFace; the suggestion test uses the demo's stored traces and real vectors of two people.
"""

from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pytest

from media_api.faces import calibration, embeddings, exemplars
from tests.conftest import REPO

HAMILTON = REPO / "demo" / "media" / "face_recognition_short_hamilton_clip.mp4"


def _frames(path, wanted: set[int]) -> dict[int, np.ndarray]:
    with av.open(str(path)) as container:
        return {i: frame.to_ndarray(format="rgb24") for i, frame in enumerate(container.decode(video=0))
                if i in wanted and i <= max(wanted)}


def _photo_vector(folder: str) -> np.ndarray:
    entry = next(f for f in json.loads((REPO / "bench" / "identity_set" / "manifest.json").read_text())["faces"]
                 if f["file"].startswith(f"photos/{folder}/"))
    image = cv2.imread(str(REPO / "bench" / "identity_set" / entry["file"]))
    return embeddings.embed_aligned(embeddings.align_face(image, entry["box"], rgb=False))


def test_large_turned_faces_are_embedded_and_recognised():
    """The issue's couple: 570-670 px faces in 1080p, one three-quarter, got no embedding. Here the performer's
    turned head (Hamilton frames 114 and 204) blown up 6x into a 1920x1080 picture: 630-750 px faces, as
    turned as Faces v2's frontal check refused. The pipeline's gates pass them, they are embedded with a
    high quality, and each matches his photo from another source within the confident distance."""
    from media_api.faces.detector import detect
    from media_api.faces.tracker import FaceTracker, Track

    reference = _photo_vector("lin_manuel_miranda")
    for number, rgb in sorted(_frames(HAMILTON, {114, 204}).items()):
        x, y, w, h = max(detect(rgb), key=lambda face: face.height).box
        big = cv2.resize(rgb, None, fx=6, fy=6, interpolation=cv2.INTER_CUBIC)
        left = int(min(max(0, (x + w / 2) * 6 - 960), big.shape[1] - 1920))
        top = int(min(max(0, (y + h / 2) * 6 - 540), big.shape[0] - 1080))
        picture = np.ascontiguousarray(big[top:top + 1080, left:left + 1920])
        face = max(detect(picture), key=lambda f: f.height)
        assert face.height >= 570, (number, face.height)
        assert FaceTracker(1920, 1080, 29.97).wants_embedding(Track(key=1, shot=0), face, number)
        found = embeddings.align_face_scored(picture, face.box)
        assert found is not None, number
        aligned, pose = found
        assert pose < 0.6  # turned, not frontal
        assert exemplars.quality(face.height, pose, aligned) > 0.5
        distance = float(np.linalg.norm(embeddings.embed_aligned(aligned) - reference))
        assert distance <= calibration.CONFIDENT_DISTANCE, (number, distance)


def test_a_big_face_is_shrunk_by_area_averaging_for_its_landmarks():
    """The crop YuNet reads landmarks from (and SFace's face is cut from) shrinks a big face by area averaging:
    an affine warp alone samples every few pixels, and on detail finer than that (a one-pixel checkerboard
    here; hair, stubble and skin texture in a 300 px face) it aliases — on dlib's collage of four bald
    actors, one stranger pair came within the confident distance that way (docs/faces.md, "Big faces").
    The crop keeps its geometry: a frame point lands where ``yunet_around``'s scale says."""
    board = np.dstack([(np.indices((1080, 1920)).sum(axis=0) % 2 * 255).astype(np.uint8)] * 3)
    crop, _, scale = embeddings.yunet_around(board, (800, 400, 400, 400))
    assert scale == pytest.approx(112 / 400)
    assert crop[60:164, 60:164].std() < 5  # the grey a checkerboard averages to (warpAffine alone: std 43)
    # two dots, one at the box's centre and one off it; also a box by the frame's corner, of an odd size (its
    # square clipped by the frame), and a box wholly outside the frame
    for box, (dx, dy) in (((800, 400, 400, 400), (100, 0)), ((5, 7, 301, 301), (80, 40))):
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        dots = np.zeros((1080, 1920, 3), np.uint8)
        for x, y in ((cx, cy), (cx + dx, cy + dy)):
            dots[round(y - 20.5):round(y + 20.5), round(x - 20.5):round(x + 20.5)] = 255
        crop, _, scale = embeddings.yunet_around(dots, box)
        rows, columns = np.nonzero(crop[:, :, 0] > 64)
        second = columns >= 112 + dx * scale / 2
        for part, (u, v) in ((~second, (112, 112)), (second, (112 + dx * scale, 112 + dy * scale))):
            weights = crop[rows[part], columns[part], 0].astype(float)
            assert np.average(columns[part], weights=weights) + 0.5 == pytest.approx(u, abs=0.6), box
            assert np.average(rows[part], weights=weights) + 0.5 == pytest.approx(v, abs=0.6), box
    assert not embeddings.yunet_around(dots, (2500, 1500, 400, 400))[0].any()


def test_choose_keeps_the_best_face_then_the_most_different_and_packs_them():
    rng = np.random.default_rng(3)
    base = embeddings.normalise(rng.normal(size=128))
    other = embeddings.normalise(base + 0.12 * rng.normal(size=128))  # another pose: clearly apart
    twin = embeddings.normalise(base + 0.001 * rng.normal(size=128))  # the same picture again, in effect
    far = embeddings.normalise(rng.normal(size=128))
    vectors, qualities = [twin, base, other, far], [0.9, 0.5, 0.4, 0.05]
    chosen = exemplars.choose(vectors, qualities, limit=3)
    assert chosen[0] == 0  # the best face first
    assert set(chosen) == {0, 2, 3}  # the near duplicate of the best face adds nothing
    assert exemplars.choose(vectors, qualities, limit=4) == chosen  # ... even with room left
    packed = exemplars.pack([vectors[i] for i in chosen])
    assert len(packed) == 3 * 128 * 4
    matrix = exemplars.unpack(packed)
    assert matrix.shape == (3, 128) and np.allclose(np.linalg.norm(matrix, axis=1), 1, atol=1e-5)
    assert exemplars.unpack(packed[:-4]) is None and exemplars.unpack(None) is None
    query = np.vstack([other, far])
    pairwise = min(float(np.linalg.norm(a - b)) for a in query for b in matrix)
    assert exemplars.set_distance(query, matrix) == pytest.approx(pairwise, abs=1e-5) == pytest.approx(0, abs=1e-5)
    # the mean leans to the better faces
    mean = exemplars.weighted_mean([base, far], [0.9, 0.1])
    assert float(mean @ base) > float(mean @ far)


@pytest.mark.django_db
def test_suggestions_compare_exemplar_sets_not_means(hamilton, staff_user):
    """A person named from a trace with two different looks (two people's real vectors stand in for a frontal and
    a turned face): a trace looking like the second is suggested confidently through that exemplar, though the
    named trace's mean is beyond the offered distance. Without the exemplars (the mean alone) it is not."""
    from identities import curation
    from identities.models import Identity
    from identities.suggestions import CONFIDENT_DISTANCE, SUGGESTION_MAX_DISTANCE, suggest_identities
    from media_api.models import Trace
    from media_api.services.detections_import import import_detections

    rows = json.loads((REPO / "demo" / "detections" / "face_recognition_short_hamilton_clip.json").read_text())
    import_detections(hamilton, rows["detections"])
    look_a, look_b = _photo_vector("lin_manuel_miranda"), _photo_vector("barack_obama")
    named, query = Trace.objects.filter(file=hamilton).order_by("trace_id")[:2]
    for trace, vectors in ((named, [look_a, look_b]), (query, [look_b])):
        trace.exemplars = exemplars.pack(vectors)
        trace.embedding = embeddings.to_bytes(exemplars.weighted_mean(vectors, [1.0, 0.15][: len(vectors)]))
        trace.embedding_model = embeddings.MODEL_NAME
        trace.save()
    person = Identity.objects.create(name="Two looks")
    curation.bind_traces(person, [named.pk], user=staff_user)
    means_apart = float(np.linalg.norm(embeddings.from_bytes(named.embedding) - embeddings.from_bytes(query.embedding)))
    assert means_apart > SUGGESTION_MAX_DISTANCE

    suggestions = suggest_identities(query)
    assert [s.name for s in suggestions] == ["Two looks"]
    assert suggestions[0].distance <= CONFIDENT_DISTANCE and suggestions[0].confident

    Trace.objects.filter(pk=named.pk).update(exemplars=None)  # only the mean left: the evidence is gone
    assert suggest_identities(query) == []
    Trace.objects.filter(pk=named.pk).update(exemplars=exemplars.pack([look_a, look_b]), embedding_model="other")
    assert suggest_identities(query) == []  # another model's vectors are never compared


@pytest.mark.django_db
def test_the_pipeline_stores_its_embedded_faces_as_exemplars(facenet):
    """The first second of the facenet clip through the real pipeline and store: every trace with an embedding
    has 1-4 unit exemplars of the same faces, the one of highest recorded quality first, whose mean is the stored
    embedding."""
    from media_api.faces.pipeline import analyse_video
    from media_api.models import Trace
    from media_api.services.faces import store_analysis
    from media_api.services.files import frame_index_for

    analysis = analyse_video(facenet.path, frame_index_for(facenet), facenet.fps, end=29, workers=False)
    store_analysis(facenet, analysis)
    traces = list(Trace.objects.filter(file=facenet, embedding__isnull=False))
    assert traces
    for trace in traces:
        matrix = exemplars.unpack(trace.exemplars)
        assert matrix is not None and 1 <= len(matrix) <= exemplars.MAX_EXEMPLARS, trace.trace_id
        assert trace.embedding_model == embeddings.MODEL_NAME
        track = analysis.tracks[trace.trace_id - 1]
        embedded = [embeddings.normalise(v) for v in track.embeddings]
        assert len(track.qualities) == len(embedded) and all(0 < q <= 1 for q in track.qualities)
        best = embedded[int(np.argmax(track.qualities))]
        assert float(np.linalg.norm(matrix[0] - best)) < 1e-5  # the best face first
        for row in matrix:  # each exemplar is one of the faces the pipeline embedded for this track
            assert min(float(np.linalg.norm(row - v)) for v in embedded) < 1e-5
        if len(matrix) == len(embedded):  # none dropped as a near duplicate: the stored mean is theirs
            mean = embeddings.from_bytes(trace.embedding)
            assert float(np.linalg.norm(exemplars.weighted_mean(list(matrix)) - mean)) < 1e-4
    assert not Trace.objects.filter(file=facenet, embedding__isnull=True, exemplars__isnull=False).exists()


@pytest.mark.django_db
def test_the_pipeline_puts_its_best_face_first(hamilton):
    """A track whose first faces are small and blurred (the performer's frontal close-up, Hamilton frame 150,
    shrunk and softened) and whose last is that close-up itself: the pipeline records each embedded face's
    quality, and the stored first exemplar is the sharp, big, frontal face, not the first one embedded. The
    stored embedding stays the plain mean of every face the track embedded."""
    from media_api.faces.detector import detect
    from media_api.faces.pipeline import FaceAnalysis, embed_face
    from media_api.faces.tracker import Track
    from media_api.models import Trace
    from media_api.services.faces import store_analysis

    sharp = _frames(HAMILTON, {150})[150]
    pictures = [cv2.resize(cv2.GaussianBlur(sharp, (0, 0), sigma), None, fx=scale, fy=scale,
                           interpolation=cv2.INTER_AREA) for sigma, scale in ((1.5, 0.45), (2.5, 0.6), (1.0, 0.4))]
    track = Track(key=1, shot=0)
    for number, picture in enumerate([*pictures, sharp]):
        face = max(detect(picture), key=lambda f: f.height)
        track.add(number, face.box, True, face.score)
        assert embed_face(track, picture, face, number, lambda fn, *args: fn(*args)), number
    assert len(track.qualities) == len(track.embeddings) == 4
    assert track.qualities[-1] > 2 * max(track.qualities[:-1]), track.qualities

    store_analysis(hamilton, FaceAnalysis(tracks=[track], start=0, end=3, frames_decoded=4, frames_sampled=4,
                                          cuts=[], seconds=0.0, stride=1))
    trace = Trace.objects.get(file=hamilton, trace_id=1)
    matrix = exemplars.unpack(trace.exemplars)
    assert float(np.linalg.norm(matrix[0] - track.embeddings[-1])) < 1e-5  # the close-up first
    assert float(np.linalg.norm(embeddings.from_bytes(trace.embedding) - track.mean_embedding())) < 1e-5
