"""Representative face and trace thumbnail, checked against an independent computation.

The test picks the top 10 by area × confidence in Python from the detection rows, has the
ffmpeg CLI decode those frames sequentially (``select``) and score each face with
``blurdetect`` itself, and expects the API to return the argmin — no shared code with the
service beyond the constants (10 candidates, 128 px scoring size).
"""

from __future__ import annotations

import io
import json
import re
import subprocess

import av
import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from media_api.ffmpeg import images
from media_api.models import Trace
from media_api.services import representative
from media_api.services.detections_import import import_detections
from tests.conftest import FACENET, HAMILTON, REPO

DEMO_DETECTIONS = REPO / "demo" / "detections"


def demo_rows(stem: str) -> list[dict]:
    return json.loads((DEMO_DETECTIONS / f"{stem}.json").read_text())["detections"]


def ffmpeg(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([settings.FFMPEG_BINARY, "-hide_banner", "-nostdin" if stdin is None else "-y", *args],
                          input=stdin, capture_output=True, check=True, timeout=300)


def cli_luma_frames(path, frames: list[int], width: int, height: int) -> dict[int, np.ndarray]:
    """The Y plane of each frame, decoded sequentially by the ffmpeg CLI."""
    wanted = sorted(set(frames))
    select = "+".join(f"eq(n\\,{n})" for n in wanted)
    out = ffmpeg(["-i", str(path), "-vf", f"select='{select}',extractplanes=y", "-fps_mode", "passthrough",
                  "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]).stdout
    planes = np.frombuffer(out, np.uint8).reshape(len(wanted), height, width)
    return dict(zip(wanted, planes, strict=True))


def cli_blur(plane: np.ndarray, row: dict) -> float:
    face = np.ascontiguousarray(plane[row["y"]:row["y"] + row["height"], row["x"]:row["x"] + row["width"]])
    out = ffmpeg(["-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{face.shape[1]}x{face.shape[0]}", "-i", "pipe:0",
                  "-vf", "scale=128:128:flags=bicubic,blurdetect,metadata=print:file=-", "-f", "null", "-"],
                 stdin=face.tobytes()).stdout.decode()
    return float(re.search(r"lavfi\.blur=(\S+)", out).group(1))  # "nan" (or "-nan") when it finds no edge


def expected_choice(path, rows: list[dict], trace_id: int, width: int, height: int) -> tuple[dict, float]:
    mine = [r for r in rows if r["trace_id"] == trace_id]
    # boxes the detector drew first, boxes the tracker carried only to fill up to ten
    top = sorted(mine, key=lambda r: (r.get("origin", "detected") != "detected",
                                      -r["width"] * r["height"] * r["confidence"], r["frame_number"]))[:10]
    planes = cli_luma_frames(path, [r["frame_number"] for r in top], width, height)
    scored = [(cli_blur(planes[r["frame_number"]], r), -r["width"] * r["height"] * r["confidence"], r) for r in top]
    blur, _, best = min(scored, key=lambda s: (s[0], s[1], s[2]["frame_number"]))
    return best, blur


@pytest.mark.parametrize(("fixture", "path", "stem", "trace_id"), [
    ("facenet", FACENET, "facenet_pytorch_video", 2),
    ("facenet", FACENET, "facenet_pytorch_video", 3),
    ("hamilton", HAMILTON, "face_recognition_short_hamilton_clip", 2),
])
def test_representative_face_is_the_least_blurry_of_the_top_ten(request, api_client, fixture, path, stem, trace_id):
    media_file = request.getfixturevalue(fixture)
    rows = demo_rows(stem)
    import_detections(media_file, rows)
    best, blur = expected_choice(path, rows, trace_id, media_file.width, media_file.height)

    response = api_client.get(f"/api/v1/file/{media_file.file_uuid}/trace/{trace_id}/representative-face")
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert set(body) == {"success", "file_uuid", "trace_id", "face_count", "representative"}
    assert body["trace_id"] == trace_id and body["file_uuid"] == media_file.file_uuid
    assert body["face_count"] == sum(1 for r in rows if r["trace_id"] == trace_id)
    rep = body["representative"]
    assert set(rep) == {"frame_number", "timestamp_secs", "bbox", "confidence", "quality_score", "blur_score"}
    assert rep["frame_number"] == best["frame_number"]
    assert rep["bbox"] == {k: best[k] for k in ("x", "y", "width", "height")}
    assert rep["confidence"] == pytest.approx(best["confidence"])
    assert rep["quality_score"] == pytest.approx(best["width"] * best["height"] * best["confidence"], rel=1e-6)
    assert rep["blur_score"] == pytest.approx(blur, abs=0.05)
    assert rep["timestamp_secs"] == pytest.approx(best["frame_number"] / media_file.fps, abs=1e-3)


def test_stored_and_reused_until_detections_change(api_client, facenet, monkeypatch):
    rows = demo_rows("facenet_pytorch_video")
    import_detections(facenet, rows)
    route = f"/api/v1/file/{facenet.file_uuid}/trace/2/representative-face"
    first = api_client.get(route).json()["representative"]
    trace = Trace.objects.get(file=facenet, trace_id=2)
    assert trace.rep_version == trace.detections_version and trace.rep_frame_number == first["frame_number"]
    detail = api_client.get(f"/api/v1/file/{facenet.file_uuid}/trace/2").json()
    assert detail["representative"]["frame_number"] == first["frame_number"]

    # Reused: no decoding at all on the second call.
    from media_api.ffmpeg import frames

    original = frames.FrameReader.__init__

    def refuse(*args, **kwargs):
        raise AssertionError("decoded a stored representative again")

    monkeypatch.setattr(frames.FrameReader, "__init__", refuse)
    assert api_client.get(route).json()["representative"] == first
    monkeypatch.setattr(frames.FrameReader, "__init__", original)

    # A much larger, confident face on a sharp frame changes the candidates: recomputed.
    import_detections(facenet, [{"trace_id": 2, "frame_number": 60, "x": 700, "y": 300, "width": 420,
                                 "height": 420, "confidence": 0.99}])
    trace.refresh_from_db()
    assert trace.rep_version != trace.detections_version
    again = api_client.get(route).json()["representative"]
    trace.refresh_from_db()
    assert trace.rep_version == trace.detections_version
    assert again["quality_score"] != first["quality_score"] or again["frame_number"] != first["frame_number"]


def test_unknown_trace_and_trace_without_faces_are_404(api_client, hamilton):
    base = f"/api/v1/file/{hamilton.file_uuid}/trace"
    for suffix in ("representative-face", "thumbnail"):
        body = api_client.get(f"{base}/99/{suffix}").json()
        assert body["error"]["code"] == "NOT_FOUND"
    Trace.objects.create(file=hamilton, trace_id=7)
    for suffix in ("representative-face", "thumbnail"):
        response = api_client.get(f"{base}/7/{suffix}")
        assert response.status_code == 404 and "no usable face" in response.json()["error"]["message"]


def reference_rgb(path, n: int) -> np.ndarray:
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == n:
                return images.to_rgb(frame)
    raise AssertionError(n)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float32) - b.astype(np.float32)) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def expected_square(rgb: np.ndarray, left: int, top: int, side: int) -> np.ndarray:
    patch = Image.fromarray(np.ascontiguousarray(rgb[top:top + side, left:left + side]))
    return np.asarray(patch.resize((320, 320), Image.Resampling.LANCZOS))


@pytest.mark.parametrize(("box", "square"), [
    # A face in the open: a square of 1.25 × the longer edge centred on the box.
    ((300, 100, 80, 100), (278, 88, 125)),
    # At the top-left corner: the square is shifted back inside, not shrunk.
    ((0, 0, 50, 80), (0, 0, 100)),
    # Taller than the frame allows: cut to the frame's height, still square.
    ((100, 0, 300, 360), (70, 0, 360)),
])
def test_trace_thumbnail_is_a_320_square_around_the_face(api_client, hamilton, box, square):
    x, y, w, h = box
    import_detections(hamilton, [{"trace_id": 5, "frame_number": 150, "x": x, "y": y, "width": w, "height": h,
                                  "confidence": 0.9}])
    response = api_client.get(f"/api/v1/file/{hamilton.file_uuid}/trace/5/thumbnail")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    picture = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    assert picture.shape == (320, 320, 3)
    rgb = reference_rgb(HAMILTON, 150)
    left, top, side = square
    own = psnr(picture, expected_square(rgb, left, top, side))
    moved = psnr(picture, expected_square(rgb, min(left + 12, 640 - side), top, side)) if side < 600 else 0
    assert own > 28 and own > moved + 3, (own, moved)


def test_trace_thumbnail_etag_304_and_cache(api_client, facenet, settings):
    import_detections(facenet, demo_rows("facenet_pytorch_video"))
    route = f"/api/v1/file/{facenet.file_uuid}/trace/1/thumbnail"
    first = api_client.get(route)
    assert first.status_code == 200 and first["Cache-Control"] == f"private, max-age={settings.MOMENTRY_CACHE_MAX_AGE}"
    etag = first["ETag"]
    assert api_client.get(route, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert api_client.get(route, HTTP_IF_NONE_MATCH='"other"').content == first.content
    # Rendered in the same pass as the representative face: one image per trace in the cache.
    assert len(list((settings.CACHE_DIR / "images").rglob("face-*.jpg"))) == 1


def test_concurrent_requests_compute_once(transactional_db, facenet, monkeypatch):
    """Four threads ask at once: the face is chosen in one decoding pass, all get the same bytes."""
    import threading

    from django.db import connection

    import_detections(facenet, demo_rows("facenet_pytorch_video"))
    calls = []
    real_warm = representative.warm

    def counting(unit):
        calls.append(unit)
        return real_warm(unit)

    monkeypatch.setattr(representative, "warm", counting)
    results, errors = [], []
    barrier = threading.Barrier(4)

    def fetch():
        try:
            trace = Trace.objects.get(file=facenet, trace_id=3)
            barrier.wait()
            rep = representative.representative_for(facenet, trace)
            results.append(representative.thumbnail_for(facenet, rep))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 4 and len(set(results)) == 1 and results[0][:2] == b"\xff\xd8"
    assert len(calls) == 1


def test_a_face_blurdetect_cannot_measure_ranks_last_and_is_answered_as_null(api_client, hamilton):
    """Hamilton's trace 3 (the audience member in the dark behind the performer, out of focus) is a dark,
    flat face: FFmpeg's own blurdetect finds no edge in it and says NaN.

    That must be neither a 500 (NaN is no JSON) nor a winner over a face it can measure (NaN compares
    false with everything, so the first candidate seen used to stay best).
    """
    rows = demo_rows("face_recognition_short_hamilton_clip")
    dark = [r for r in rows if r["trace_id"] == 3]
    planes = cli_luma_frames(HAMILTON, [dark[0]["frame_number"]], hamilton.width, hamilton.height)
    assert np.isnan(cli_blur(planes[dark[0]["frame_number"]], dark[0]))  # the CLI agrees: nothing to measure
    measured = next(r for r in rows if r["trace_id"] == 7 and r["frame_number"] == 100)
    mixed = [{**dark[0], "trace_id": 50, "confidence": 0.99},  # the larger face, first in the file
             {**measured, "trace_id": 50, "confidence": 0.5}]
    import_detections(hamilton, dark + mixed)
    base = f"/api/v1/file/{hamilton.file_uuid}/trace"

    response = api_client.get(f"{base}/3/representative-face")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["representative"]["blur_score"] is None
    detail = api_client.get(f"{base}/3")
    assert detail.status_code == 200 and detail.json()["representative"]["blur_score"] is None
    assert api_client.get(f"{base}/3/thumbnail").status_code == 200

    chosen = api_client.get(f"{base}/50/representative-face").json()["representative"]
    assert chosen["frame_number"] == 100 and chosen["blur_score"] > 0
