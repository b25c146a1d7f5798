"""No unbounded renders: every re-encoding route obeys MOMENTRY_MAX_CLIP_SECONDS, and a request whose
client has gone while it waited for a media job slot never starts FFmpeg."""

from __future__ import annotations

import socket
import time

import pytest

from media_api.ffmpeg.process import acquire_slot
from tests.helpers_rest import load_traces
from tests.servers import gunicorn, wait_for


@pytest.fixture
def short_limit(settings):
    settings.MOMENTRY_MAX_CLIP_SECONDS = 2
    return 2


def _limit_error(response) -> dict:
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "BAD_REQUEST" and error["details"]["max_seconds"] == 2
    assert "MOMENTRY_MAX_CLIP_SECONDS" in error["message"]
    return error


@pytest.mark.django_db
@pytest.mark.parametrize("route", ["video/bbox", "video?mode=debug", "video/bbox?mode=debug"])
def test_whole_file_renders_are_refused_with_a_span_that_fits(api_client, hamilton, short_limit, route):
    base = f"/api/v1/file/{hamilton.file_uuid}/{route}"
    error = _limit_error(api_client.get(base))
    span = error["details"]["suggested_span"]
    assert span["start_frame"] == 0 and 50 <= span["end_frame"] <= 60  # 2 s at 29.97 fps
    sep = "&" if "?" in base else "?"
    fits = f"{base}{sep}start_frame={span['start_frame']}&end_frame={span['end_frame']}"
    assert api_client.head(fits).status_code == 200
    longer = f"{base}{sep}start_frame={span['start_frame']}&end_frame={span['end_frame'] + 1}"
    _limit_error(api_client.get(longer))


@pytest.mark.django_db
def test_trace_video_longer_than_the_limit_needs_a_narrower_span(api_client, hamilton, short_limit):
    load_traces(hamilton, {7: (10, 200, 10)})
    base = f"/api/v1/file/{hamilton.file_uuid}/trace/7/video"
    error = _limit_error(api_client.get(base))
    span = error["details"]["suggested_span"]
    narrowed = api_client.head(f"{base}?start_frame={span['start_frame']}&end_frame={span['end_frame']}")
    assert narrowed.status_code == 200
    assert int(narrowed["X-Momentry-Start-Frame"]) == span["start_frame"]
    assert int(narrowed["X-Momentry-End-Frame"]) == span["end_frame"]
    outside = api_client.get(f"{base}?start_frame=268&end_frame=274")
    assert outside.status_code == 400 and outside.json()["error"]["details"]["parameter"] == "start_frame"


@pytest.mark.django_db
def test_plain_original_and_stream_copy_are_not_limited(api_client, hamilton, short_limit):
    """Serving bytes and stream-copying a segment cost no encoding: the limit is for re-encodes."""
    assert api_client.head(f"/api/v1/file/{hamilton.file_uuid}/video").status_code == 200
    assert api_client.head(f"/api/v1/file/{hamilton.file_uuid}/video?start_frame=0&end_frame=270").status_code == 200


@pytest.mark.django_db
def test_clip_times_are_seconds_whatever_fps_says(api_client, hamilton):
    url = f"/api/v1/file/{hamilton.file_uuid}/clip?start_time=1&end_time=2"
    plain = api_client.head(url)
    with_fps = api_client.head(url + "&fps=10")
    # 1 s .. 2 s of a 29.97 fps clip: frames 29 (on screen at 1 s) .. 59, with or without fps
    # (fps only converts frame numbers)
    for response in (plain, with_fps):
        assert (response["X-Momentry-Start-Frame"], response["X-Momentry-End-Frame"]) == ("29", "59")
    frames = api_client.head(f"/api/v1/file/{hamilton.file_uuid}/clip?start_frame=10&end_frame=19&fps=10")
    assert frames["X-Momentry-Start-Frame"] == "29"  # frame 10 at 10 fps = 1 s


@pytest.mark.django_db(transaction=True)
def test_clients_gone_while_waiting_start_no_ffmpeg(plain_user, hamilton, tmp_path):
    from momentry.services import create_api_key

    key = create_api_key(plain_user).key
    log = tmp_path / "gunicorn.log"
    path = f"/api/v1/file/{hamilton.file_uuid}/clip?start_frame=0&end_frame=60"
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n".encode()
    with gunicorn(workers=2, log_path=log, MOMENTRY_MAX_FFMPEG_JOBS="1", MOMENTRY_FFMPEG_WAIT_SECONDS="20",
                  MOMENTRY_LOG_LEVEL="DEBUG") as url:
        host, port = url.removeprefix("http://").split(":")
        slot = acquire_slot(wait_seconds=5)  # every job slot is taken: requests must wait
        try:
            for _ in range(12):
                with socket.create_connection((host, int(port))) as sock:
                    sock.sendall(request)
                # ... and the client hangs up at once, like a player seeking away
            wait_for(lambda: log.read_text().count("dropped") >= 12, timeout=30)
        finally:
            slot.release()
        # A client that stays gets its clip: the pool still works, and it is the only FFmpeg started.
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        time.sleep(0.5)
        text = log.read_text()
    assert text.count("ffmpeg start") == 1, text[-3000:]
    assert text.count("client disconnected before its media job started") == 12
