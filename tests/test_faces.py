"""Built-in face analysis (issue 7) on the two real demo clips.

The pipeline runs once per test session on each clip (session fixture, with every socket
refused so it must work offline); tests share that result. Boxes recorded below were
checked by rendering the frames to PNG and looking at them.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from itertools import combinations

import av
import numpy as np
import pytest
from django.core.management import CommandError, call_command

from media_api.faces.detector import FaceDetector, work_size
from media_api.faces.embeddings import EMBEDDING_DIM, from_bytes
from media_api.faces.pipeline import FaceAnalysis, analyse_video, default_stride, store_analysis
from media_api.models import Detection, Trace
from tests.conftest import FACENET, HAMILTON, REPO

HAMILTON_FPS = 2997 / 100
FACENET_FPS = 25.0

# (frame, (x, y, w, h)) of faces plainly visible on these frames, checked by eye on rendered PNGs.
HAMILTON_FACES = {
    0: [(515, 49, 53, 53)],      # wide shot: performer at the right, face by the microphone
    90: [(165, 76, 91, 91)],     # medium shot, performer facing the camera
    150: [(205, 46, 91, 91)],    # medium shot, hands raised
    204: [(247, 32, 108, 108)],  # medium shot, just before the cut to the audience
}
FACENET_FACES = {
    # red-haired man, white-haired woman (left); the boy is hidden behind a passer-by
    20: [(685, 613, 73, 73), (277, 693, 73, 73)],
    50: [(205, 693, 73, 73), (929, 711, 105, 105)],                       # white-haired woman, boy
    80: [(780, 653, 105, 105), (189, 669, 73, 73), (1157, 685, 73, 73)],  # boy, woman, man with glasses
}
HAMILTON_CUTS = (20, 82, 211)


class _NoNetwork(socket.socket):
    def __init__(self, *args, **kwargs):
        raise OSError("network access attempted during face analysis")


@pytest.fixture(scope="session")
def analyses() -> dict[str, FaceAnalysis]:
    """The pipeline on both clips at the default stride, with sockets refused."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "socket", _NoNetwork)
        patch.setattr(socket, "create_connection", _NoNetwork)
        return {
            "hamilton": analyse_video(HAMILTON, HAMILTON_FPS),
            "facenet": analyse_video(FACENET, FACENET_FPS),
        }


def _iou(a, b) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _detect_frames(path, frames: set[int]) -> dict[int, list[tuple[int, int, int, int]]]:
    detector = FaceDetector()
    found = {}
    with av.open(str(path)) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number not in frames:
                continue
            w, h, scale, upsample = work_size(frame.width, frame.height)
            work = frame.to_ndarray(format="rgb24", width=w, height=h)
            faces = detector.detect(work, w / frame.width, upsample, frame.width, frame.height)
            found[number] = [(f.x, f.y, f.width, f.height) for f in faces]
            if len(found) == len(frames):
                break
    return found


@pytest.mark.parametrize("path,expected", [(HAMILTON, HAMILTON_FACES), (FACENET, FACENET_FACES)],
                         ids=["hamilton", "facenet"])
def test_detector_finds_plainly_visible_faces(path, expected):
    found = _detect_frames(path, set(expected))
    for frame, boxes in expected.items():
        for box in boxes:
            best = max((_iou(box, got) for got in found[frame]), default=0.0)
            assert best > 0.5, f"frame {frame}: no detection near {box}; got {found[frame]}"


def _trace_boxes(analysis: FaceAnalysis) -> dict[int, list[tuple[int, tuple[int, int, int, int]]]]:
    by_frame: dict[int, list] = {}
    for number, track in enumerate(analysis.tracks, start=1):
        for frame, face in zip(track.frames, track.faces, strict=True):
            by_frame.setdefault(frame, []).append((number, (face.x, face.y, face.width, face.height)))
    return by_frame


@pytest.mark.parametrize("name,expected", [("hamilton", HAMILTON_FACES), ("facenet", FACENET_FACES)])
def test_traces_cover_the_visible_faces(analyses, name, expected):
    """Near each recorded frame, the stored traces have a box on each recorded face."""
    by_frame = _trace_boxes(analyses[name])
    for frame, boxes in expected.items():
        nearest = min(by_frame, key=lambda f: abs(f - frame))
        assert abs(nearest - frame) <= analyses[name].stride
        for box in boxes:
            assert max(_iou(box, got) for _, got in by_frame[nearest]) > 0.3, (frame, nearest, box)


def test_default_stride_is_about_five_per_second(analyses):
    assert default_stride(HAMILTON_FPS) == 6 and default_stride(FACENET_FPS) == 5
    assert analyses["hamilton"].frames_decoded == 275 and analyses["facenet"].frames_decoded == 105
    # every 6th frame plus the first frame after each of the 3 cuts, at most
    assert 46 <= analyses["hamilton"].frames_sampled <= 49
    assert analyses["facenet"].frames_sampled == 21


def test_scene_cuts_found_and_no_trace_spans_a_cut(analyses):
    hamilton = analyses["hamilton"]
    assert len(hamilton.cuts) == 3
    for found, expected in zip(hamilton.cuts, HAMILTON_CUTS, strict=True):
        assert abs(found - expected) <= 1
    assert hamilton.tracks, "no traces in the Hamilton clip"
    for track in hamilton.tracks:
        for cut in hamilton.cuts:
            assert not (track.frames[0] < cut <= track.frames[-1]), f"trace {track.frames} spans the cut at {cut}"
    # the performer is followed through the medium shots (82..210) as one trace
    longest = max(hamilton.tracks, key=lambda t: len(t.frames))
    assert longest.frames[0] >= 82 and longest.frames[-1] < 211 and len(longest.frames) >= 15
    assert analyses["facenet"].cuts == []


def test_facenet_clip_has_several_simultaneous_traces(analyses):
    facenet = analyses["facenet"]
    assert len(facenet.tracks) >= 3
    per_frame = {frame: len(entries) for frame, entries in _trace_boxes(facenet).items()}
    assert max(per_frame.values()) >= 3
    spans = [(t.frames[0], t.frames[-1]) for t in facenet.tracks]
    overlapping = [(a, b) for a, b in combinations(spans, 2) if a[0] <= b[1] and b[0] <= a[1]]
    assert len(overlapping) >= 3


def test_boxes_are_inside_the_frame(analyses):
    for name, (width, height) in (("hamilton", (640, 360)), ("facenet", (1920, 1080))):
        for row in analyses[name].rows():
            assert row["x"] >= 0 and row["y"] >= 0 and row["width"] > 0 and row["height"] > 0
            assert row["x"] + row["width"] <= width and row["y"] + row["height"] <= height
            assert 0.0 <= row["confidence"] <= 1.0


def test_same_trace_embeddings_are_closer_than_different_people(analyses):
    tracks = [t for t in analyses["facenet"].tracks if len(t.embeddings) >= 2]
    assert len(tracks) >= 3
    within = [float(np.linalg.norm(a - b)) for t in tracks for a, b in combinations(t.embeddings, 2)]
    between = [float(np.linalg.norm(a - b)) for s, t in combinations(tracks, 2)
               for a in s.embeddings for b in t.embeddings]
    assert np.mean(within) < np.mean(between) - 0.1
    assert np.median(within) < np.percentile(between, 10)
    # Trace means: the performer in the wide shot and in the medium shots (different cuts) is
    # nearer to himself than to anyone in the other clip.
    ham = [t.mean_embedding() for t in analyses["hamilton"].tracks]
    others = [t.mean_embedding() for t in analyses["facenet"].tracks]
    same = float(np.linalg.norm(ham[0] - ham[1]))
    assert same < min(float(np.linalg.norm(ham[0] - o)) for o in others)
    assert all(abs(float(np.linalg.norm(v)) - 1.0) < 1e-4 for v in ham + others)


def test_demo_detections_are_this_pipelines_output(analyses):
    """demo/detections/*.json must be what the pipeline produces now (regenerate them if this fails)."""
    for name, stem in (("hamilton", "face_recognition_short_hamilton_clip"), ("facenet", "facenet_pytorch_video")):
        data = json.loads((REPO / "demo" / "detections" / f"{stem}.json").read_text())
        rows = analyses[name].rows()
        assert [{k: r[k] for k in r if k != "confidence"} for r in data["detections"]] == \
            [{k: r[k] for k in r if k != "confidence"} for r in rows]
        assert np.allclose([r["confidence"] for r in data["detections"]], [r["confidence"] for r in rows], atol=1e-3)
        assert sorted(data["trace_embeddings"], key=int) == [str(i) for i in range(1, len(analyses[name].tracks) + 1)]


@pytest.mark.django_db
def test_store_writes_traces_embeddings_and_refuses_to_duplicate(analyses, hamilton):
    from identities.models import Identity

    analysis = analyses["hamilton"]
    detections, traces = store_analysis(hamilton, analysis)
    assert detections == len(analysis.rows()) == Detection.objects.filter(file=hamilton).count()
    assert traces == len(analysis.tracks) == Trace.objects.filter(file=hamilton).count()
    for trace in Trace.objects.filter(file=hamilton):
        vector = from_bytes(trace.embedding)
        assert vector is not None and vector.shape == (EMBEDDING_DIM,)
        assert trace.face_count >= 3 and trace.start_frame is not None
    bound = Trace.objects.get(file=hamilton, trace_id=1)
    bound.identity = Identity.objects.create(name="Performer")
    bound.save()
    with pytest.raises(Exception, match="already has traces"):
        store_analysis(hamilton, analysis)
    store_analysis(hamilton, analysis, replace=True)
    assert Trace.objects.filter(file=hamilton, identity__isnull=False).count() == 0
    assert Detection.objects.filter(file=hamilton).count() == detections


@pytest.mark.django_db
def test_detect_faces_command(hamilton, capsys):
    """The real command end to end (a sparse stride keeps it quick)."""
    call_command("detect_faces", hamilton.file_uuid, "--stride", "10", verbosity=0)
    summary = capsys.readouterr().out
    assert hamilton.file_uuid in summary and "traces" in summary and "scene cuts at [20, 82, 211]" in summary
    assert Trace.objects.filter(file=hamilton).exists()
    assert not Trace.objects.filter(file=hamilton, embedding__isnull=True).exists()
    with pytest.raises(CommandError, match="--replace"):
        call_command("detect_faces", hamilton.file_uuid, "--stride", "10", verbosity=0)
    with pytest.raises(CommandError, match="unknown file_uuid"):
        call_command("detect_faces", "0" * 32, verbosity=0)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare not available")
def test_runs_without_any_network():
    """In a fresh network namespace (no interfaces at all) the models load and faces are found."""
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n not permitted here")
    code = (
        "import os, sys, django; sys.path.insert(0, sys.argv[1]);"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'momentry.settings'); django.setup();"
        "from media_api.faces.pipeline import analyse_video;"
        "a = analyse_video(sys.argv[2], 29.97, stride=15);"
        "print(len(a.rows()), a.frames_decoded)"
    )
    result = subprocess.run(["unshare", "-n", sys.executable, "-c", code, str(REPO), str(HAMILTON)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    detections, decoded = map(int, result.stdout.split())
    assert decoded == 275 and detections > 0
