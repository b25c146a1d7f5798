"""GET …/thumbnail?frame=N[&x&y&w&h]: exactly frame N (against a sequential decode), crops, errors, caching."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from PIL import Image

from media_api.ffmpeg import images
from tests.conftest import FACENET, HAMILTON


def reference_frames(path, wanted) -> dict[int, np.ndarray]:
    """Frames decoded sequentially from the start (the ground truth), as RGB, for ``wanted`` and ±1."""
    keep = {k for n in wanted for k in (n - 1, n, n + 1)}
    with av.open(str(path)) as container:
        return {n: images.to_rgb(f).astype(np.float32)
                for n, f in enumerate(container.decode(video=0)) if n in keep}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def jpeg_pixels(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return np.asarray(image.convert("RGB")).astype(np.float32)


def url(media_file, query: str) -> str:
    return f"/api/v1/file/{media_file.file_uuid}/thumbnail?{query}"


def assert_error(response, status: int, code: str, parameter: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code
    if parameter is not None:
        assert body["error"]["details"]["parameter"] == parameter
    return body


# Keyframes, the frames around them, the first and the last frame, and frames deep in a GOP.
HAMILTON_FRAMES = [0, 1, 30, 59, 60, 61, 119, 120, 137, 162, 163, 210, 211, 250, 270, 271, 274]
FACENET_FRAMES = [0, 1, 2, 3, 37, 52, 78, 103, 104]


@pytest.mark.parametrize(("fixture", "path", "frames"),
                         [("hamilton", HAMILTON, HAMILTON_FRAMES), ("facenet", FACENET, FACENET_FRAMES)])
def test_thumbnail_is_exactly_frame_n(request, api_client, fixture, path, frames):
    media_file = request.getfixturevalue(fixture)
    reference = reference_frames(path, frames)
    for n in frames:
        response = api_client.get(url(media_file, f"frame={n}"))
        assert response.status_code == 200, (n, response.content[:200])
        assert response["Content-Type"] == "image/jpeg"
        picture = jpeg_pixels(response.content)
        assert picture.shape == (media_file.height, media_file.width, 3)
        own = psnr(picture, reference[n])
        assert own > 35, (n, own)
        for k in (n - 1, n + 1):
            if k in reference:
                other = psnr(picture, reference[k])
                # Closer to N than to its neighbours; clearly so when the neighbour differs from N
                # by more than JPEG noise (a few frames of a still shot are nearly identical).
                distinct = psnr(reference[n], reference[k]) < own - 3
                assert own > other + (3 if distinct else 0), (n, k, own, other)


def test_crop_geometry(api_client, facenet):
    reference = reference_frames(FACENET, [52])
    response = api_client.get(url(facenet, "frame=52&x=301&y=97&w=160&h=121"))
    assert response.status_code == 200
    picture = jpeg_pixels(response.content)
    assert picture.shape == (121, 160, 3)
    expected = reference[52][97:97 + 121, 301:301 + 160]
    shifted = reference[52][97 + 4:97 + 4 + 121, 301 + 4:301 + 4 + 160]
    assert psnr(picture, expected) > 35
    assert psnr(picture, expected) > psnr(picture, shifted) + 5

    # The whole frame as a crop, and a 1x1 crop in the bottom-right corner.
    full = api_client.get(url(facenet, "frame=52&x=0&y=0&w=1920&h=1080"))
    assert jpeg_pixels(full.content).shape == (1080, 1920, 3)
    corner = api_client.get(url(facenet, "frame=52&x=1919&y=1079&w=1&h=1"))
    assert jpeg_pixels(corner.content).shape == (1, 1, 3)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("", "frame"),
        ("frame=", "frame"),
        ("frame=-1", "frame"),
        ("frame=1.5", "frame"),
        ("frame=abc", "frame"),
        ("frame=10&x=0&y=0&w=10", "h"),
        ("frame=10&x=0", "y"),
        ("frame=10&w=5&h=5", "x"),
        ("frame=10&x=-1&y=0&w=10&h=10", "x"),
        ("frame=10&x=0&y=0&w=0&h=10", "w"),
        ("frame=10&x=0&y=0&w=10&h=0", "h"),
        ("frame=10&x=0&y=0&w=ten&h=10", "w"),
        ("frame=10&x=600&y=0&w=41&h=10", "w"),
        ("frame=10&x=640&y=0&w=1&h=10", "x"),
        ("frame=10&x=0&y=300&w=10&h=61", "h"),
        ("frame=10&x=0&y=360&w=10&h=1", "y"),
    ],
)
def test_bad_parameters_are_400(api_client, hamilton, query, parameter):
    body = assert_error(api_client.get(url(hamilton, query)), 400, "BAD_REQUEST", parameter)
    if parameter in {"x", "y", "w", "h"} and "=-" not in query and "ten" not in query and "w=0" not in query \
            and "h=0" not in query and query.count("=") == 5:
        assert body["error"]["details"]["frame_width"] == 640
        assert body["error"]["details"]["frame_height"] == 360


@pytest.mark.parametrize("frame", [275, 276, 10**9])
def test_frame_past_the_end_is_416(api_client, hamilton, frame):
    body = assert_error(api_client.get(url(hamilton, f"frame={frame}")), 416, "FRAME_OUT_OF_RANGE", "frame")
    assert body["error"]["details"]["total_frames"] == 275


def test_unknown_file_and_no_credentials(api_client, client, hamilton):
    assert_error(api_client.get("/api/v1/file/" + "0" * 32 + "/thumbnail?frame=1"), 404, "NOT_FOUND")
    response = client.get(url(hamilton, "frame=1"))
    assert_error(response, 401, "UNAUTHORIZED")
    assert "WWW-Authenticate" in response


def test_cached_with_etag_and_304(api_client, hamilton, settings):
    first = api_client.get(url(hamilton, "frame=100&x=10&y=10&w=100&h=80"))
    assert first.status_code == 200
    etag = first["ETag"]
    assert etag.startswith('"') and first["Cache-Control"] == f"private, max-age={settings.MOMENTRY_CACHE_MAX_AGE}"
    cached = list((settings.CACHE_DIR / "images").rglob("*.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == first.content

    again = api_client.get(url(hamilton, "frame=100&x=10&y=10&w=100&h=80"))
    assert again.content == first.content and again["ETag"] == etag
    not_modified = api_client.get(url(hamilton, "frame=100&x=10&y=10&w=100&h=80"), HTTP_IF_NONE_MATCH=etag)
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified["ETag"] == etag
    # Another frame or crop is another image with another validator.
    other = api_client.get(url(hamilton, "frame=101&x=10&y=10&w=100&h=80"), HTTP_IF_NONE_MATCH=etag)
    assert other.status_code == 200 and other["ETag"] != etag
    assert len(list((settings.CACHE_DIR / "images").rglob("*.jpg"))) == 2


def test_cache_hit_does_not_decode(api_client, hamilton, monkeypatch):
    """A cached image is served from disk: the frame reader is not even opened."""
    assert api_client.get(url(hamilton, "frame=200")).status_code == 200
    from media_api.ffmpeg import frames

    def refuse(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(frames.FrameReader, "__init__", refuse)
    assert api_client.get(url(hamilton, "frame=200")).status_code == 200


def test_missing_video_file_is_a_json_source_missing(api_client, hamilton, tmp_path):
    """The registered file is gone from disk: the 404 SOURCE_MISSING of docs/storage.md, not a media error."""
    hamilton.path = str(tmp_path / "gone.mp4")
    hamilton.save(update_fields=["path"])
    assert_error(api_client.get(url(hamilton, "frame=5")), 404, "SOURCE_MISSING")


def test_saturated_pool_is_503(api_client, hamilton, settings):
    from media_api.ffmpeg.process import media_job_slot

    settings.MOMENTRY_MAX_FFMPEG_JOBS = 1
    settings.MOMENTRY_FFMPEG_WAIT_SECONDS = 0.2
    with media_job_slot():
        response = api_client.get(url(hamilton, "frame=5"))
    body = assert_error(response, 503, "BUSY")
    assert response["Retry-After"] == "1" and body["error"]["details"]["retry_after"] == 1
    assert api_client.get(url(hamilton, "frame=5")).status_code == 200
