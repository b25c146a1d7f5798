"""GET /api/v1/file/{uuid}/clip: frame-exact MPEG-TS against a sequential PyAV decode (both clips)."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from media_api.services.files import frame_index_for
from tests.conftest import FACENET, HAMILTON
from tests.test_ffmpeg_process import close_response


@pytest.fixture(autouse=True)
def _own_locks(settings, tmp_path):
    settings.DATA_DIR = tmp_path


_REFERENCE: dict[str, list[np.ndarray]] = {}


def reference_frames(path) -> list[np.ndarray]:
    """Every frame of the source, decoded sequentially from the start (the ground truth)."""
    key = str(path)
    if key not in _REFERENCE:
        with av.open(key) as container:
            _REFERENCE[key] = [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)]
    return _REFERENCE[key]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def fetch(client, url: str) -> tuple[object, bytes]:
    response = client.get(url)
    try:
        data = b"".join(response.streaming_content) if response.streaming else response.content
    finally:
        close_response(response)
    return response, data


def decode(data: bytes) -> tuple[list[np.ndarray], list[str]]:
    with av.open(io.BytesIO(data), format="mpegts") as container:
        kinds = [s.type for s in container.streams]
        frames = [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)]
    return frames, kinds


def assert_is_frame(decoded: np.ndarray, reference: list[np.ndarray], n: int) -> None:
    """The decoded picture is frame n: PSNR to n clearly above PSNR to n-1 and n+1."""
    own = psnr(decoded, reference[n])
    neighbours = [psnr(decoded, reference[k]) for k in (n - 1, n + 1) if 0 <= k < len(reference)]
    assert own > 32 and all(own > other + 5 for other in neighbours), (n, own, neighbours)


@pytest.mark.parametrize(
    ("fixture", "path", "start", "end"),
    [("hamilton", HAMILTON, 100, 126), ("hamilton", HAMILTON, 0, 20), ("facenet", FACENET, 40, 60)],
)
def test_clip_is_frame_exact(request, api_client, fixture, path, start, end):
    media_file = request.getfixturevalue(fixture)
    response, data = fetch(api_client, f"/api/v1/file/{media_file.file_uuid}/clip?start_frame={start}&end_frame={end}")
    assert response.status_code == 200
    assert response["Content-Type"] == "video/mp2t"
    assert response["X-Momentry-Frame-Count"] == str(end - start + 1)
    assert data[0] == 0x47  # MPEG-TS sync byte
    frames, kinds = decode(data)
    assert kinds.count("video") == 1 and kinds.count("audio") == 1
    assert len(frames) == end - start + 1
    reference = reference_frames(path)
    assert_is_frame(frames[0], reference, start)
    assert_is_frame(frames[-1], reference, end)


def test_time_form_audio_off_and_first_frame(api_client, hamilton):
    index = frame_index_for(hamilton)
    response, data = fetch(api_client, f"/api/v1/file/{hamilton.file_uuid}/clip?start_time=3.4&end_time=3.9&audio=off")
    assert response.status_code == 200
    start = index.frame_at_seconds(3.4)
    # end time is exclusive: frames starting before 3.9 s
    expected = sum(1 for k in range(len(index)) if index.seconds_of(k) < 3.9) - start
    frames, kinds = decode(data)
    assert kinds == ["video"]
    assert len(frames) == expected == int(response["X-Momentry-Frame-Count"])
    assert_is_frame(frames[0], reference_frames(HAMILTON), start)


def test_fps_override_converts_frames_to_time(api_client, hamilton):
    index = frame_index_for(hamilton)
    response, data = fetch(api_client, f"/api/v1/file/{hamilton.file_uuid}/clip?start_frame=40&end_frame=44&fps=10"
                                       "&audio=off")
    assert response.status_code == 200
    assert int(response["X-Momentry-Start-Frame"]) == index.frame_at_seconds(4.0)
    assert int(response["X-Momentry-End-Frame"]) == index.frame_at_seconds(4.4)
    frames, _ = decode(data)
    assert len(frames) == int(response["X-Momentry-Frame-Count"])


def test_debug_draws_clip_panel(api_client, hamilton):
    base = f"/api/v1/file/{hamilton.file_uuid}/clip?start_frame=100&end_frame=104&audio=off"
    _, plain = fetch(api_client, base)
    _, debug = fetch(api_client, base + "&mode=debug")
    plain_frames, debug_frames = decode(plain)[0], decode(debug)[0]
    assert len(plain_frames) == len(debug_frames) == 5
    corner = (slice(330, 360), slice(0, 200))
    rest = (slice(0, 240), slice(0, 640))
    # the panel changes the bottom-left corner, the rest of the picture is the same frame
    assert psnr(plain_frames[0][corner], debug_frames[0][corner]) < 20
    assert psnr(plain_frames[0][rest], debug_frames[0][rest]) > 40


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("", "start_frame"),
        ("start_frame=10", "end_frame"),
        ("end_time=3", "start_time"),
        ("start_frame=20&end_frame=10", "end_frame"),
        ("start_frame=10&end_frame=275", "end_frame"),
        ("start_frame=-1&end_frame=10", "start_frame"),
        ("start_frame=a&end_frame=10", "start_frame"),
        ("start_time=2&end_time=1", "end_time"),
        ("start_time=1&end_time=99", "end_time"),
        ("start_time=99&end_time=100", "start_time"),
        ("start_time=nan&end_time=1", "start_time"),
        ("start_frame=0&end_frame=10&mode=fancy", "mode"),
        ("start_frame=0&end_frame=10&audio=maybe", "audio"),
        ("start_frame=0&end_frame=10&fps=0", "fps"),
        ("start_frame=0&end_frame=100&fps=10", "end_frame"),  # 10 s at 10 fps: past the 9.2 s clip
    ],
)
def test_bad_parameters_are_400(api_client, hamilton, query, param):
    response = api_client.get(f"/api/v1/file/{hamilton.file_uuid}/clip?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BAD_REQUEST" and error["details"]["parameter"] == param


def test_span_beyond_the_maximum_is_400(api_client, hamilton, settings):
    settings.MOMENTRY_MAX_CLIP_SECONDS = 2
    response = api_client.get(f"/api/v1/file/{hamilton.file_uuid}/clip?start_frame=0&end_frame=90")
    assert response.status_code == 400 and response.json()["error"]["details"]["max_seconds"] == 2
    response = api_client.head(f"/api/v1/file/{hamilton.file_uuid}/clip?start_frame=0&end_frame=30")
    assert response.status_code == 200 and response["Content-Type"] == "video/mp2t"


def test_unknown_file_is_404(api_client, db):
    response = api_client.get("/api/v1/file/" + "f" * 32 + "/clip?start_frame=0&end_frame=1")
    assert response.status_code == 404


def test_clip_streams_while_encoding(api_client, facenet):
    """The first bytes arrive while FFmpeg is still encoding (1080p: the whole clip takes seconds)."""
    from tests.test_ffmpeg_process import _children_named

    response = api_client.get(f"/api/v1/file/{facenet.file_uuid}/clip?start_frame=0&end_frame=104")
    try:
        first = next(iter(response.streaming_content))
        assert first[0] == 0x47
        assert len(_children_named("ffmpeg")) == 1  # still running: the body is not buffered first
    finally:
        close_response(response)
    assert _children_named("ffmpeg") == []


def test_asgi_clip_streams_and_close_kills_ffmpeg(facenet, plain_user):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    from tests.test_ffmpeg_process import _children_named

    client = AsyncClient()
    client.force_login(plain_user)

    async def first_chunk():
        response = await client.get(f"/api/v1/file/{facenet.file_uuid}/clip?start_frame=0&end_frame=104")
        iterator = aiter(response.streaming_content)
        chunk = await anext(iterator)
        running = len(_children_named("ffmpeg"))
        await iterator.aclose()
        close_response(response)
        return response, chunk, running

    response, chunk, running = async_to_sync(first_chunk)()
    assert response.status_code == 200 and response.is_async
    assert chunk[0] == 0x47 and running == 1
    assert _children_named("ffmpeg") == []


def test_clip_etag_and_304_without_encoding(api_client, hamilton):
    from tests.test_ffmpeg_process import _children_named

    base = f"/api/v1/file/{hamilton.file_uuid}/clip?start_frame=10&end_frame=14"
    head = api_client.head(base)
    etag = head["ETag"]
    assert head["Cache-Control"] == "private, max-age=86400" and etag.startswith('W/"')
    response = api_client.get(base, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304 and response["ETag"] == etag and not response.content
    assert _children_named("ffmpeg") == []
    other = api_client.head(base + "&audio=off")["ETag"]
    assert other != etag
