"""The face-following crop clip (``…/trace/{id}/video?crop=face&size=N``) on the real Hamilton clip.

Real FFmpeg renders of the demo's own traces (trace 7 walks 140 px across the frame, trace 4
moves 260 px). What the clip shows is checked against the source: for sampled frames the test
decodes the source frame itself, cuts the square it computes from the stored detections with the
documented rule (its own numpy code below, not the module's), scales it and compares by PSNR; a
crop a quarter-side off must compare clearly worse, so the check can tell.
"""

from __future__ import annotations

import io
import json
import logging

import av
import cv2
import numpy as np
import pytest

from media_api.models import Detection, Trace
from media_api.services.detections_import import import_detections
from tests.conftest import REPO
from tests.test_trace_video import body, ffmpeg_starts, top_level_boxes

URL = "/api/v1/file/{uuid}/trace/{trace}/video?crop=face&size={size}"


@pytest.fixture(autouse=True)
def _own_cache(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.CACHE_DIR = tmp_path / "cache"


@pytest.fixture
def demo(hamilton):
    data = json.loads((REPO / "demo" / "detections" / "face_recognition_short_hamilton_clip.json").read_text())
    import_detections(hamilton, data["detections"])
    return hamilton


def expected_crops(media_file, trace_id: int, first: int, last: int) -> dict[int, tuple[int, int, int]]:
    """The documented rule, written out independently: interpolate, 0.5 s centred mean, 1.6x square, inside."""
    trace = Trace.objects.get(file=media_file, trace_id=trace_id)
    rows = sorted(Detection.objects.filter(trace=trace).values_list("frame_number", "x", "y", "width", "height"))
    known = {f: (x, y, w, h) for f, x, y, w, h in reversed(rows)}
    frames = sorted(known)
    every = list(range(frames[0], frames[-1] + 1))
    columns = [np.interp(every, frames, [known[f][k] for f in frames]) for k in range(4)]
    x, y, w, h = columns
    window = round(float(media_file.fps_fraction) * 0.5)
    window += 1 - window % 2
    half = window // 2

    def mean(values):
        return [float(np.mean([values[min(max(i + d, 0), len(values) - 1)] for d in range(-half, half + 1)]))
                for i in range(len(values))]

    cx, cy, size = mean(x + w / 2), mean(y + h / 2), mean(np.maximum(w, h) * 1.6)
    out = {}
    for frame in range(first, last + 1):
        i = min(max(frame - every[0], 0), len(every) - 1)
        side = int(min(max(round(size[i]), 2), media_file.width, media_file.height))
        side -= side % 2
        left = int(min(max(round(cx[i] - side / 2), 0), media_file.width - side))
        top = int(min(max(round(cy[i] - side / 2), 0), media_file.height - side))
        out[frame] = (left - left % 2, top - top % 2, side)
    return out


def luma_frames(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data), format="mp4") as container:
        return [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]


def source_luma(media_file, numbers: list[int]) -> dict[int, np.ndarray]:
    """The source frames by a sequential decode (frame N is the N-th picture in presentation order)."""
    wanted, found = set(numbers), {}
    with av.open(str(media_file.path)) as container:
        pictures = sorted(container.decode(video=0), key=lambda frame: frame.pts)
    for n, frame in enumerate(pictures):
        if n in wanted:
            found[n] = frame.to_ndarray(format="gray")
    return found


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def region(frame: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    x, y, side = box
    return cv2.resize(frame[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)


def quarter_off(box: tuple[int, int, int], width: int, height: int) -> tuple[int, int, int]:
    """The same square moved a quarter of its side (right or left, else down or up), inside the frame."""
    x, y, side = box
    step = side // 4
    for nx, ny in ((x + step, y), (x - step, y), (x, y + step), (x, y - step)):
        if 0 <= nx <= width - side and 0 <= ny <= height - side:
            return nx, ny, side
    raise AssertionError(f"no room to move {box}")


@pytest.mark.parametrize(("trace_id", "size"), [(7, 128), (4, 192)])
def test_the_clip_follows_the_face(api_client, demo, trace_id, size):
    response = api_client.get(URL.format(uuid=demo.file_uuid, trace=trace_id, size=size))
    assert response.status_code == 200, response.content[:300]
    data = body(response)
    trace = Trace.objects.get(file=demo, trace_id=trace_id)
    first, last = int(response["X-Momentry-Start-Frame"]), int(response["X-Momentry-End-Frame"])
    assert (first, last) == (trace.start_frame, trace.end_frame)  # no padding by default: the trace's frames

    with av.open(io.BytesIO(data), format="mp4") as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (size, size)
        assert stream.average_rate == demo.fps_fraction
        assert not container.streams.audio
    clip = luma_frames(data)
    assert len(clip) == last - first + 1

    crops = expected_crops(demo, trace_id, first, last)
    samples = [first, (first + last) // 2, last, first + (last - first) // 4]
    source = source_luma(demo, samples)
    for frame in samples:
        good = psnr(clip[frame - first], region(source[frame], crops[frame], size))
        shifted = quarter_off(crops[frame], demo.width, demo.height)
        off = psnr(clip[frame - first], region(source[frame], shifted, size))
        assert good > 30, (frame, good)
        assert good > off + 6, (frame, good, off)


def test_the_face_stays_in_the_crop(demo):
    """Every detection box (the face) lies inside its frame's crop, on both moving traces."""
    from media_api.ffmpeg.encode import Span
    from media_api.services import streaming

    for trace_id in (4, 7):
        trace = Trace.objects.get(file=demo, trace_id=trace_id)
        crops = streaming.face_crops(demo, trace, Span(trace.start_frame, trace.end_frame))
        assert {tuple(map(int, row)) for row in crops} <= set(
            expected_crops(demo, trace_id, trace.start_frame, trace.end_frame).values())
        for frame, x, y, w, h in Detection.objects.filter(trace=trace).values_list("frame_number", "x", "y", "width",
                                                                                   "height"):
            left, top, side = crops[frame - trace.start_frame]
            cx, cy = x + w / 2, y + h / 2
            assert left <= cx <= left + side and top <= cy <= top + side, (trace_id, frame)
            assert 0 <= left and left + side <= demo.width and 0 <= top and top + side <= demo.height


def test_cached_ranged_and_rendered_once(api_client, demo, caplog):
    caplog.set_level(logging.DEBUG, logger="media_api.ffmpeg")
    url = URL.format(uuid=demo.file_uuid, trace=7, size=96)
    warm = api_client.get(url, HTTP_RANGE="bytes=0-0")  # what the cast page's warm-up asks
    assert warm.status_code == 206 and len(body(warm)) == 1
    assert ffmpeg_starts(caplog) == 1
    whole = api_client.get(url)
    data = body(whole)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes" and int(whole["Content-Length"]) == len(data)
    assert top_level_boxes(data)[:3] == ["ftyp", "moov", "sidx"]
    middle = api_client.get(url, HTTP_RANGE="bytes=1000-2999")
    assert middle.status_code == 206 and middle["Content-Range"] == f"bytes 1000-2999/{len(data)}"
    assert body(middle) == data[1000:3000]
    assert api_client.get(url, HTTP_IF_NONE_MATCH=whole["ETag"]).status_code == 304
    assert ffmpeg_starts(caplog) == 1  # every answer after the first came from the cache

    # Another size, or the full-frame highlight video, is another file.
    other = api_client.get(URL.format(uuid=demo.file_uuid, trace=7, size=128))
    body(other)
    assert other["ETag"] != whole["ETag"]
    assert ffmpeg_starts(caplog) == 2
    # Changed detections render again.
    import_detections(demo, [{"trace_id": 7, "frame_number": 211, "x": 278, "y": 60, "width": 80, "height": 80,
                              "confidence": 0.9}])
    changed = api_client.get(url)
    assert body(changed) != data and changed["X-Momentry-End-Frame"] == "211"
    assert ffmpeg_starts(caplog) == 3


@pytest.mark.parametrize("query", ["crop=body", "crop=face&size=100", "crop=face&size=abc",
                                   "size=128", "crop=face&size=1e2", "crop=face&size=96.0"])
def test_bad_parameters_are_400(api_client, demo, query, caplog):
    caplog.set_level(logging.DEBUG, logger="media_api.ffmpeg")
    response = api_client.get(f"/api/v1/file/{demo.file_uuid}/trace/7/video?{query}")
    assert response.status_code == 400, query
    error = response.json()["error"]
    assert response.json()["success"] is False and error["code"] == "BAD_REQUEST"
    assert error["details"]["parameter"] in ("crop", "size")
    assert ffmpeg_starts(caplog) == 0


def test_padding_holds_the_first_and_last_crop(api_client, demo):
    response = api_client.get(URL.format(uuid=demo.file_uuid, trace=5, size=96) + "&padding=0.2")
    data = body(response)
    first, last = int(response["X-Momentry-Start-Frame"]), int(response["X-Momentry-End-Frame"])
    assert (first, last) == (48, 82)  # trace 5 is frames 54-77, ± 0.2 s
    assert len(luma_frames(data)) == last - first + 1


def test_a_render_over_its_time_is_killed_and_leaves_nothing(api_client, demo, settings, caplog):
    settings.MOMENTRY_FFMPEG_TIMEOUT = 0.05
    response = api_client.get(URL.format(uuid=demo.file_uuid, trace=7, size=256))
    assert response.status_code == 500 and response.json()["error"]["code"] == "MEDIA_ERROR"
    assert any("timed out" in record.getMessage() for record in caplog.records)
    assert not list((settings.CACHE_DIR / "clips").rglob("*.mp4"))  # neither a clip nor a temporary file


def test_a_full_job_pool_is_503_before_any_decoding(api_client, demo, settings, caplog):
    from media_api.ffmpeg.process import media_job_slot

    caplog.set_level(logging.DEBUG, logger="media_api.ffmpeg")
    settings.MOMENTRY_MAX_FFMPEG_JOBS, settings.MOMENTRY_FFMPEG_WAIT_SECONDS = 1, 0.1
    with media_job_slot():
        response = api_client.get(URL.format(uuid=demo.file_uuid, trace=7, size=96))
    assert response.status_code == 503 and response.json()["error"]["code"] == "BUSY" and response["Retry-After"]
    assert ffmpeg_starts(caplog) == 0
    assert api_client.get(URL.format(uuid=demo.file_uuid, trace=7, size=96)).status_code == 200
