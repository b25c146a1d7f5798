"""GET /api/v1/file/{uuid}/video with a span: stream-copied fragmented MP4 segments (real clips)."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from media_api.services.files import frame_index_for
from tests.conftest import FACENET, HAMILTON
from tests.test_clip import assert_is_frame, psnr, reference_frames
from tests.test_ffmpeg_process import _children_named, close_response


@pytest.fixture(autouse=True)
def _own_locks(settings, tmp_path):
    settings.DATA_DIR = tmp_path


def fetch(client, url: str):
    response = client.get(url)
    try:
        data = b"".join(response.streaming_content) if response.streaming else response.content
    finally:
        close_response(response)
    return response, data


def probe(data: bytes):
    """(kinds of streams, decoded RGB frames, video duration in seconds from the frame timestamps)."""
    with av.open(io.BytesIO(data), format="mp4") as container:
        kinds = sorted(s.type for s in container.streams)
        frames = list(container.decode(video=0))
    arrays = [f.to_ndarray(format="rgb24").astype(np.float32) for f in frames]
    times = [float(f.time) for f in frames]
    step = (times[-1] - times[0]) / max(1, len(times) - 1)
    return kinds, arrays, times[-1] - times[0] + step


def test_segment_is_stream_copied_from_the_keyframe(api_client, hamilton):
    response, data = fetch(api_client, f"/api/v1/file/{hamilton.file_uuid}/video?start_frame=70&end_frame=130")
    assert response.status_code == 200 and response["Content-Type"] == "video/mp4"
    assert response["X-Momentry-Start-Frame"] == "60"  # keyframe at or before 70
    assert data[4:8] == b"ftyp" and b"moof" in data  # fragmented MP4
    kinds, frames, duration = probe(data)
    assert kinds == ["audio", "video"]
    expected_frames = 130 - 60 + 1
    assert abs(len(frames) - expected_frames) <= 2
    index = frame_index_for(hamilton)
    expected_duration = index.seconds_of(130) - index.seconds_of(60) + 100 / 2997
    assert duration == pytest.approx(expected_duration, abs=2 * 100 / 2997)
    # stream copy: the first picture is the keyframe itself, bit for bit after decoding
    assert psnr(frames[0], reference_frames(HAMILTON)[60]) > 60
    head = api_client.head(f"/api/v1/file/{hamilton.file_uuid}/video?start_frame=70&end_frame=130")
    assert head.status_code == 200 and head["X-Momentry-Start-Frame"] == "60" and head.content == b""


def test_segment_of_a_b_frame_file_by_time(api_client, facenet):
    response, data = fetch(api_client, f"/api/v1/file/{facenet.file_uuid}/video?start_time=1.0&end_time=2.0&audio=off")
    assert response.status_code == 200
    assert response["X-Momentry-Start-Frame"] == "0"  # the file has a single keyframe
    kinds, frames, duration = probe(data)
    assert kinds == ["video"]
    # B-frames: the copy is cut on packets in decode order, so up to 3 extra frames (documented)
    assert duration == pytest.approx(2.0, abs=3 / 25 + 0.01)
    assert psnr(frames[0], reference_frames(FACENET)[0]) > 60


def test_audio_off_without_span_copies_the_whole_video(api_client, hamilton):
    response, data = fetch(api_client, f"/api/v1/file/{hamilton.file_uuid}/video?audio=off")
    assert response.status_code == 200 and response["X-Momentry-Start-Frame"] == "0"
    kinds, frames, _ = probe(data)
    assert kinds == ["video"] and abs(len(frames) - 275) <= 2


def test_debug_segment_is_frame_exact_with_panel(api_client, hamilton):
    response, data = fetch(api_client, f"/api/v1/file/{hamilton.file_uuid}/video?start_frame=70&end_frame=80"
                                       "&mode=debug&audio=off")
    assert response.status_code == 200 and response["X-Momentry-Start-Frame"] == "70"
    _, frames, _ = probe(data)
    assert len(frames) == 11
    above_panel = (slice(0, 300), slice(0, 640))
    reference = reference_frames(HAMILTON)
    assert_is_frame(frames[0][above_panel], [r[above_panel] for r in reference], 70)
    assert psnr(frames[0][-30:, :200], reference[70][-30:, :200]) < 20  # the panel is drawn, bottom-left


@pytest.mark.parametrize("query", ["mode=loud", "audio=no", "start_frame=5", "start_frame=9&end_frame=3"])
def test_bad_parameters_are_400(api_client, hamilton, query):
    response = api_client.get(f"/api/v1/file/{hamilton.file_uuid}/video?{query}")
    assert response.status_code == 400 and response.json()["error"]["code"] == "BAD_REQUEST"


def test_client_disconnect_kills_ffmpeg(api_client, facenet):
    """A player that reads one chunk and goes away: Django closes the response, FFmpeg dies."""
    response = api_client.get(f"/api/v1/file/{facenet.file_uuid}/video?mode=debug&start_frame=0&end_frame=104")
    assert response.status_code == 200
    assert len(_children_named("ffmpeg")) == 1
    first = next(iter(response.streaming_content))
    assert first
    close_response(response)
    assert _children_named("ffmpeg") == []


def test_pool_saturated_gives_503_busy(api_client, hamilton, settings):
    from media_api.ffmpeg.process import media_job_slot

    settings.MOMENTRY_MAX_FFMPEG_JOBS = 1
    settings.MOMENTRY_FFMPEG_WAIT_SECONDS = 0.2
    with media_job_slot():
        response = api_client.get(f"/api/v1/file/{hamilton.file_uuid}/clip?start_frame=0&end_frame=5")
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "BUSY"
    assert _children_named("ffmpeg") == []
