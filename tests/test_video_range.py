"""GET/HEAD /api/v1/file/{uuid}/video: byte ranges, validators, hand-off, flat memory (real files)."""

from __future__ import annotations

import gc
import os
import subprocess

import pytest
from django.conf import settings as django_settings
from django.utils.http import http_date

from media_api.models import MediaFile
from tests.conftest import HAMILTON
from tests.test_ffmpeg_process import close_response

SIZE = HAMILTON.stat().st_size
DATA = HAMILTON.read_bytes()


@pytest.fixture(autouse=True)
def _own_locks(settings, tmp_path):
    settings.DATA_DIR = tmp_path


def url(media_file: MediaFile) -> str:
    return f"/api/v1/file/{media_file.file_uuid}/video"


def body(response) -> bytes:
    try:
        return b"".join(response.streaming_content) if response.streaming else response.content
    finally:
        close_response(response)


def test_full_get_has_length_type_and_validators(api_client, hamilton):
    r = api_client.get(url(hamilton))
    assert r.status_code == 200
    assert r["Content-Type"] == "video/mp4"
    assert r["Content-Length"] == str(SIZE)
    assert r["Accept-Ranges"] == "bytes"
    assert r["ETag"].startswith('"') and r["Last-Modified"]
    assert body(r) == DATA


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, SIZE - 1),
        ("bytes=-500", SIZE - 500, SIZE - 1),
        ("bytes=100-99999999", 100, SIZE - 1),  # end clamped to the file
        (f"bytes=-{SIZE + 10}", 0, SIZE - 1),  # suffix longer than the file = whole file
        (f"bytes={SIZE - 1}-{SIZE - 1}", SIZE - 1, SIZE - 1),
        ("bytes=300000-300000", 300000, 300000),
    ],
)
def test_satisfiable_ranges(api_client, hamilton, header, first, last):
    r = api_client.get(url(hamilton), HTTP_RANGE=header)
    assert r.status_code == 206
    assert r["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert r["Content-Length"] == str(last - first + 1)
    assert body(r) == DATA[first : last + 1]


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 10}", "bytes=-0"])
def test_unsatisfiable_range_is_416_with_star_content_range(api_client, hamilton, header):
    r = api_client.get(url(hamilton), HTTP_RANGE=header)
    assert r.status_code == 416
    assert r["Content-Range"] == f"bytes */{SIZE}"
    assert r.json()["error"]["code"] == "RANGE_NOT_SATISFIABLE"


@pytest.mark.parametrize("header", ["bytes=abc", "bytes=0-1,5-9", "items=0-10", "bytes=50-10"])
def test_malformed_or_multi_range_is_ignored(api_client, hamilton, header):
    r = api_client.get(url(hamilton), HTTP_RANGE=header)
    assert r.status_code == 200
    assert r["Content-Length"] == str(SIZE)
    assert body(r) == DATA


def test_head_has_headers_and_no_body(api_client, hamilton):
    r = api_client.head(url(hamilton))
    assert r.status_code == 200
    assert r["Content-Length"] == str(SIZE)
    assert r["Accept-Ranges"] == "bytes" and "ETag" in r
    assert body(r) == b""
    r = api_client.head(url(hamilton), HTTP_RANGE="bytes=10-19")
    assert r.status_code == 206 and r["Content-Range"] == f"bytes 10-19/{SIZE}" and r["Content-Length"] == "10"
    assert body(r) == b""


def test_if_none_match_and_if_modified_since(api_client, hamilton):
    etag = api_client.head(url(hamilton))["ETag"]
    r = api_client.get(url(hamilton), HTTP_IF_NONE_MATCH=etag)
    assert r.status_code == 304 and r["ETag"] == etag and body(r) == b""
    assert api_client.get(url(hamilton), HTTP_IF_NONE_MATCH=f'"other", W/{etag}').status_code == 304
    assert api_client.get(url(hamilton), HTTP_IF_NONE_MATCH="*").status_code == 304
    r = api_client.get(url(hamilton), HTTP_IF_NONE_MATCH='"stale"')
    assert r.status_code == 200 and body(r) == DATA
    future = http_date(HAMILTON.stat().st_mtime + 3600)
    assert api_client.get(url(hamilton), HTTP_IF_MODIFIED_SINCE=future).status_code == 304
    past = http_date(HAMILTON.stat().st_mtime - 3600)
    r = api_client.get(url(hamilton), HTTP_IF_MODIFIED_SINCE=past)
    assert r.status_code == 200
    body(r)


def test_if_range(api_client, hamilton):
    head = api_client.head(url(hamilton))
    etag, modified = head["ETag"], head["Last-Modified"]
    r = api_client.get(url(hamilton), HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=etag)
    assert r.status_code == 206 and body(r) == DATA[:10]
    r = api_client.get(url(hamilton), HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=modified)
    assert r.status_code == 206 and body(r) == DATA[:10]
    # A stale validator means "the representation changed": send it all.
    r = api_client.get(url(hamilton), HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"stale-etag"')
    assert r.status_code == 200 and r["Content-Length"] == str(SIZE) and body(r) == DATA
    r = api_client.get(url(hamilton), HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=http_date(0))
    assert r.status_code == 200 and body(r) == DATA


def _open_fds() -> int:
    """Descriptors of this process open on the served video."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == str(HAMILTON.resolve())
        except OSError:
            pass
    return count


def test_file_handle_closed_whether_consumed_or_abandoned(api_client, hamilton):
    # Responses other tests left unread hold the file until the garbage collector closes them, which
    # could happen in the middle of this count: collect them first, so only this test's handles move.
    gc.collect()
    before = _open_fds()
    r = api_client.get(url(hamilton), HTTP_RANGE="bytes=0-600000")
    assert _open_fds() == before + 1
    next(iter(r.streaming_content))  # a client that reads one chunk and goes away
    close_response(r)
    assert _open_fds() == before
    r = api_client.get(url(hamilton))
    b"".join(r.streaming_content)
    close_response(r)
    assert _open_fds() == before


def test_unknown_file_404_and_anonymous_401(client, api_client, hamilton):
    assert api_client.get("/api/v1/file/" + "0" * 32 + "/video").status_code == 404
    r = client.get(url(hamilton))
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"


def test_x_accel_redirect_and_x_sendfile(api_client, hamilton, settings):
    settings.MOMENTRY_SENDFILE = "x-accel-redirect"
    settings.MOMENTRY_SENDFILE_ROOT = str(HAMILTON.parent)
    settings.MOMENTRY_SENDFILE_PREFIX = "/protected-media/"
    r = api_client.get(url(hamilton), HTTP_RANGE="bytes=0-9")
    assert r.status_code == 200 and r.content == b""
    assert r["X-Accel-Redirect"] == "/protected-media/" + HAMILTON.name
    assert r["Content-Type"] == "video/mp4"
    settings.MOMENTRY_SENDFILE = "x-sendfile"
    r = api_client.get(url(hamilton))
    assert r["X-Sendfile"] == str(HAMILTON.resolve()) and r.content == b""
    # A file outside the exported root is served by Django itself.
    settings.MOMENTRY_SENDFILE = "x-accel-redirect"
    settings.MOMENTRY_SENDFILE_ROOT = "/nonexistent-root"
    r = api_client.get(url(hamilton), HTTP_RANGE="bytes=0-9")
    assert r.status_code == 206 and body(r) == DATA[:10]


# --------------------------------------------------------------------------- memory


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """~270 MB real MP4: the Hamilton clip looped 450 times by stream copy."""
    path = tmp_path_factory.mktemp("big") / "big.mp4"
    subprocess.run(
        [django_settings.FFMPEG_BINARY, "-hide_banner", "-loglevel", "error", "-nostdin", "-stream_loop", "450",
         "-i", str(HAMILTON), "-c", "copy", "-y", str(path)],
        check=True, timeout=120,
    )
    yield path
    path.unlink(missing_ok=True)


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_serving_a_large_file_keeps_memory_flat(api_client, hamilton, big_file):
    size = big_file.stat().st_size
    assert size > 200 * 1024 * 1024
    big = MediaFile.objects.create(
        file_uuid="b" * 32, path=str(big_file), name="big.mp4", size=size, container="mp4", video_codec="h264",
        width=640, height=360, fps_num=2997, fps_den=100, fps=29.97, total_frames=1, duration=1.0,
    )
    baseline = _rss_kb()
    peak = baseline
    # A 150 MB range from the middle, then the whole file, consumed chunk by chunk.
    for kwargs, expected in (({"HTTP_RANGE": "bytes=50000000-199999999"}, 150_000_000), ({}, size)):
        r = api_client.get(url(big), **kwargs)
        assert r["Content-Length"] == str(expected)
        received = 0
        for i, chunk in enumerate(r.streaming_content):
            received += len(chunk)
            if i % 64 == 0:
                peak = max(peak, _rss_kb())
        close_response(r)
        assert received == expected
    assert peak - baseline < 8 * 1024, f"RSS grew by {(peak - baseline) / 1024:.1f} MB"


def test_missing_source_file_is_a_json_source_missing(api_client, tmp_path):
    gone = MediaFile.objects.create(
        file_uuid="c" * 32, path=str(tmp_path / "moved-away.mp4"), name="moved-away.mp4", size=10, container="mp4",
        video_codec="h264", width=640, height=360, fps_num=25, fps_den=1, fps=25.0, total_frames=1, duration=0.04,
    )
    response = api_client.get(url(gone))
    assert response.status_code == 404 and response.json()["error"]["code"] == "SOURCE_MISSING"
    assert str(tmp_path) not in response.content.decode()


def test_asgi_serves_the_range_as_a_stream(hamilton, plain_user):
    """Under ASGI the body is an async iterator (Django would otherwise buffer a sync one whole)."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    client = AsyncClient()
    client.force_login(plain_user)

    async def fetch():
        response = await client.get(url(hamilton), headers={"Range": "bytes=1000-"})
        chunks = [chunk async for chunk in response.streaming_content]
        return response, chunks

    response, chunks = async_to_sync(fetch)()
    assert response.status_code == 206 and response.is_async
    assert len(chunks) > 1 and b"".join(chunks) == DATA[1000:]
