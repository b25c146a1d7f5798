"""The trace highlight video: rendered once into the cache, served with ranges so a player can seek.

Real FFmpeg renders on the Hamilton clip; "rendered once" is observed through the ffmpeg layer's
own ``ffmpeg start`` log line, and "seekable" through the file's boxes (a global ``sidx`` before
the first fragment) and byte-identical range answers.
"""

from __future__ import annotations

import io
import logging
import struct

import av
import pytest

from identities.models import Identity
from media_api.services.detections_import import import_detections
from tests.test_ffmpeg_process import close_response

URL = "/api/v1/file/{uuid}/trace/1/video?padding=0.3&audio=off"


@pytest.fixture(autouse=True)
def _own_cache(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.CACHE_DIR = tmp_path / "cache"


@pytest.fixture
def traced(hamilton):
    rows = [{"trace_id": 1, "frame_number": f, "x": 100 + f, "y": 120, "width": 80, "height": 80, "confidence": 0.9,
             "identity": "Eliza"} for f in (60, 70, 80)]
    import_detections(hamilton, rows)
    return hamilton


def body(response) -> bytes:
    try:
        return b"".join(response.streaming_content) if response.streaming else response.content
    finally:
        close_response(response)


def ffmpeg_starts(caplog) -> int:
    return sum("ffmpeg start" in record.getMessage() for record in caplog.records)


def top_level_boxes(data: bytes) -> list[str]:
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        boxes.append(kind.decode())
        offset += size
    return boxes


def test_rendered_once_then_served_from_the_cache(api_client, traced, caplog):
    caplog.set_level(logging.DEBUG, logger="media_api.ffmpeg")
    url = URL.format(uuid=traced.file_uuid)
    first = api_client.get(url)
    assert first.status_code == 200
    data = body(first)
    assert ffmpeg_starts(caplog) == 1
    assert first["Accept-Ranges"] == "bytes" and int(first["Content-Length"]) == len(data)
    assert first["X-Momentry-Start-Frame"] == "51" and first["Cache-Control"].startswith("private, max-age=")

    second = api_client.get(url)
    assert body(second) == data
    assert second["ETag"] == first["ETag"]
    assert ffmpeg_starts(caplog) == 1  # no second encode
    with av.open(io.BytesIO(data), format="mp4") as container:
        frames = sum(1 for _ in container.decode(video=0))
    start, end = int(first["X-Momentry-Start-Frame"]), int(first["X-Momentry-End-Frame"])
    assert (start, end) == (51, 88)  # frames 60..80 widened by 0.3 s (about 9 frames at 29.97 fps)
    assert frames == end - start + 1


def test_ranges_seek_into_the_same_bytes(api_client, traced):
    url = URL.format(uuid=traced.file_uuid)
    data = body(api_client.get(url))
    middle = api_client.get(url, HTTP_RANGE="bytes=2000-5999")
    assert middle.status_code == 206
    assert middle["Content-Range"] == f"bytes 2000-5999/{len(data)}"
    assert body(middle) == data[2000:6000]
    tail = api_client.get(url, HTTP_RANGE="bytes=-100")
    assert body(tail) == data[-100:]
    beyond = api_client.get(url, HTTP_RANGE=f"bytes={len(data)}-")
    assert beyond.status_code == 416 and beyond.json()["error"]["code"] == "RANGE_NOT_SATISFIABLE"
    assert beyond["Content-Range"] == f"bytes */{len(data)}"
    cached = api_client.get(url, HTTP_IF_NONE_MATCH=middle["ETag"])
    assert cached.status_code == 304
    head = api_client.head(url)
    assert head.status_code == 200 and int(head["Content-Length"]) == len(data)


def test_the_file_indexes_its_fragments_up_front(api_client, traced):
    """A global sidx before the first fragment: a player knows every fragment's offset at once."""
    boxes = top_level_boxes(body(api_client.get(URL.format(uuid=traced.file_uuid))))
    assert boxes[:3] == ["ftyp", "moov", "sidx"], boxes[:6]
    assert boxes.count("moof") >= 1


def test_a_renamed_person_or_changed_trace_renders_again(api_client, traced, caplog):
    caplog.set_level(logging.DEBUG, logger="media_api.ffmpeg")
    url = URL.format(uuid=traced.file_uuid)
    before = api_client.get(url)
    body(before)
    Identity.objects.filter(name="Eliza").update(name="Eliza Hamilton")
    renamed = api_client.get(url)
    body(renamed)
    assert renamed["ETag"] != before["ETag"]
    import_detections(traced, [{"trace_id": 1, "frame_number": 90, "x": 200, "y": 120, "width": 80, "height": 80,
                                "confidence": 0.9}])
    longer = api_client.get(url)
    body(longer)
    assert longer["X-Momentry-End-Frame"] == "98"
    assert ffmpeg_starts(caplog) == 3


def test_debug_and_audio_variants_are_cached_apart(api_client, traced):
    url = URL.format(uuid=traced.file_uuid)
    plain = api_client.get(url)
    body(plain)
    debug = api_client.get(url + "&mode=debug")
    body(debug)
    with_audio = api_client.get(url.replace("&audio=off", ""))
    body(with_audio)
    assert len({plain["ETag"], debug["ETag"], with_audio["ETag"]}) == 3
