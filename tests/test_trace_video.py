"""The trace highlight video: rendered once into the cache, served with ranges so a player can seek.

Real FFmpeg renders on the Hamilton clip; "rendered once" is observed through the ffmpeg layer's
own ``ffmpeg start`` log line, and "seekable" through the file's boxes (a global ``sidx`` before
the first fragment) and byte-identical range answers.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import struct
import subprocess
import sys

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


# A render into the clip cache, in a process of its own: a real ffmpeg writes the temporary file
# (slowly: -re reads the test source in real time) until the process group is killed.
RENDERER = """
import subprocess, sys
import django
django.setup()
from django.conf import settings
from media_api.services import image_cache
key = image_cache.ImageKey(sys.argv[1], sys.argv[2], root="clips", suffix=".mp4")
def render(tmp):
    subprocess.run([settings.FFMPEG_BINARY, "-hide_banner", "-loglevel", "error", "-y", "-re", "-f", "lavfi",
                    "-i", "testsrc=size=160x120:rate=10", "-t", "300", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "10", "-movflags", "frag_keyframe+empty_moov", "-f", "mp4", str(tmp)], check=True)
image_cache.get_or_render_file(key, render)
"""


def start_render(file_uuid: str, name: str):
    """A renderer process and, once its ffmpeg has written something, its temporary file."""
    from django.conf import settings

    from tests.servers import process_env, wait_for

    folder = settings.CACHE_DIR / "clips"
    before = set(folder.rglob(".tmp-*"))
    proc = subprocess.Popen([sys.executable, "-c", RENDERER, file_uuid, name], env=process_env(),
                            start_new_session=True)

    def written():
        return [p for p in folder.rglob(".tmp-*") if p not in before and p.exists() and p.stat().st_size > 0]

    wait_for(lambda: proc.poll() is not None or written(), timeout=60)
    assert proc.poll() is None, "the renderer ended early"
    return proc, written()[0]


def kill_render(proc) -> None:
    """Killed mid-way, ffmpeg included, as an OOM kill or a SIGKILLed worker would."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_temporary_files_of_killed_renders_are_removed_live_ones_kept(api_client, traced, settings):
    from django.apps import apps

    from media_api.services import image_cache

    killed, killed_tmp = start_render(traced.file_uuid, "killed-render")
    live, live_tmp = start_render(traced.file_uuid, "live-render")
    try:
        kill_render(killed)
        dead = subprocess.Popen(["true"])
        dead.wait()
        elsewhere = killed_tmp.with_name(f".tmp-{'f' * 8}-{dead.pid}-other-host.mp4")  # another host's: not ours
        elsewhere.write_bytes(b"x")
        assert killed_tmp.exists()

        # The next render (any trace video) removes what the killed one left, and nothing else.
        response = api_client.get(URL.format(uuid=traced.file_uuid))
        assert response.status_code == 200
        body(response)
        assert not killed_tmp.exists()
        assert live_tmp.exists() and live.poll() is None
        assert live_tmp.name.startswith(f".tmp-{image_cache._host_tag()}-{live.pid}-")  # how a writer is told
        assert elsewhere.exists()
        cached = sorted(p.name for p in (settings.CACHE_DIR / "clips").rglob("*.mp4") if not p.name.startswith("."))
        assert len(cached) == 1 and cached[0].startswith("trace1-")

        # At start-up too (the app's ready(), as every web and worker process runs it).
        killed_again, killed_again_tmp = start_render(traced.file_uuid, "killed-again")
        kill_render(killed_again)
        apps.get_app_config("media_api").ready()
        assert not killed_again_tmp.exists()
        assert live_tmp.exists() and live.poll() is None
        grown = live_tmp.stat().st_size
        from tests.servers import wait_for

        wait_for(lambda: live_tmp.stat().st_size > grown, timeout=30)  # still being written

        # And beat's eviction of the image cache, for JPEGs, without waiting for the age limit.
        images = settings.CACHE_DIR / "images" / "v1" / "ab"
        images.mkdir(parents=True)
        dead_jpeg = images / f".tmp-{image_cache._host_tag()}-{dead.pid}-abc.jpg"
        own_jpeg = images / f".tmp-{image_cache._host_tag()}-{os.getpid()}-abc.jpg"
        for path in (dead_jpeg, own_jpeg):
            path.write_bytes(b"j")
        image_cache.evict(10**12)
        assert not dead_jpeg.exists() and own_jpeg.exists() and live_tmp.exists() and elsewhere.exists()
    finally:
        kill_render(live)
