"""Overlay videos (trace highlight, bbox): box pixels where the detections say, on the right frames.

Rendered by the real ASS + libass path on the Hamilton clip (29.97 fps, first pts 0.852 s) and
checked by decoding the output with PyAV: a box edge must be drawn on exactly the frames that
have a (real or interpolated) detection — never on a neighbour frame.
"""

from __future__ import annotations

import io
import subprocess

import av
import numpy as np
import pytest
from django.conf import settings as django_settings

from media_api.ffmpeg import overlays
from media_api.ffmpeg.encode import Span, reencode_args, relative_times
from media_api.ffmpeg.process import run_ffmpeg
from media_api.services.detections_import import import_detections
from media_api.services.files import frame_index_for
from tests.conftest import HAMILTON
from tests.test_ffmpeg_process import _children_named, close_response

NAME = "Zoë {\\b1}O'Brien: [x], \\N;"
BOX = 80


@pytest.fixture(autouse=True)
def _own_locks(settings, tmp_path):
    settings.DATA_DIR = tmp_path


@pytest.fixture
def with_detections(hamilton):
    """Trace 1 (bound to a name full of ASS/filter syntax): frames 100, 110, 120, moving right.
    Trace 2: one detection on frame 150 only. Trace 3: frames 100-120 at a fixed place."""
    rows = [
        {"trace_id": 1, "frame_number": f, "x": x, "y": 120, "width": BOX, "height": BOX, "confidence": 0.9,
         "identity": NAME}
        for f, x in ((100, 100), (110, 200), (120, 300))
    ]
    rows.append({"trace_id": 2, "frame_number": 150, "x": 400, "y": 200, "width": BOX, "height": BOX,
                 "confidence": 0.8})
    rows += [{"trace_id": 3, "frame_number": f, "x": 500, "y": 40, "width": 100, "height": 100, "confidence": 0.7}
             for f in range(100, 121, 5)]
    import_detections(hamilton, rows)
    return hamilton


def fetch_frames(client, url: str) -> tuple[object, list[np.ndarray]]:
    response = client.get(url)
    try:
        assert response.status_code == 200, response.content[:300]
        data = b"".join(response.streaming_content)
    finally:
        close_response(response)
    with av.open(io.BytesIO(data), format="mp4") as container:
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
    return response, frames


def yellow(pixels: np.ndarray) -> np.ndarray:
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return (r > 150) & (g > 150) & (b < 110)


def edge_fraction(frame: np.ndarray, x: int, y: int, column_offset: int, test=yellow) -> float:
    """Share of the box's left edge column (``x + column_offset``) that has the overlay colour."""
    column = frame[y + 8 : y + BOX - 8, x + column_offset]
    return float(test(column).mean())


def test_trace_video_boxes_interpolated_on_the_right_frames(api_client, with_detections):
    response, frames = fetch_frames(api_client, f"/api/v1/file/{with_detections.file_uuid}/trace/1/video?padding=0.2"
                                                "&audio=off")
    start, end = int(response["X-Momentry-Start-Frame"]), int(response["X-Momentry-End-Frame"])
    index = frame_index_for(with_detections)
    assert start == index.frame_at_seconds(index.seconds_of(100) - 0.2) and end > 120
    assert len(frames) == end - start + 1

    def at(frame_number: int) -> np.ndarray:
        return frames[frame_number - start]

    # No box before the trace starts or after it ends (padding frames), a box on its first/last frame.
    assert edge_fraction(at(99), 100, 120, 1) < 0.2
    assert edge_fraction(at(100), 100, 120, 1) > 0.8
    assert edge_fraction(at(120), 300, 120, 1) > 0.8
    assert edge_fraction(at(121), 300, 120, 1) < 0.2
    # Interpolated: halfway between x=100 (frame 100) and x=200 (frame 110) on frame 105.
    assert edge_fraction(at(105), 150, 120, 0) > 0.8
    assert edge_fraction(at(105), 100, 120, 1) < 0.2
    for f in range(100, 121):
        x = 100 + (f - 100) * 10
        assert edge_fraction(at(f), x, 120, 0) > 0.8, f
    # Thicker on real detections: 4 px on frame 110, 2 px on interpolated frame 109.
    assert edge_fraction(at(110), 200, 120, 3) > 0.8
    assert edge_fraction(at(109), 190, 120, 3) < 0.2
    # The label (identity name) is drawn above the box; trace 3 is not drawn in normal mode.
    label_area = at(110)[120 - 14 : 120 - 3, 200 : 260]
    assert yellow(label_area).mean() > 0.05
    assert edge_fraction(at(110), 500, 40, 0, test=lambda p: (np.abs(p - 176) < 30).all(axis=-1)) < 0.2


def test_trace_video_debug_adds_other_detections_and_panel(api_client, with_detections):
    response, frames = fetch_frames(api_client, f"/api/v1/file/{with_detections.file_uuid}/trace/1/video?padding=0"
                                                "&audio=off&mode=debug")
    start = int(response["X-Momentry-Start-Frame"])
    assert start == 100 and len(frames) == 21
    grey = lambda p: (np.abs(p - 176) < 35).all(axis=-1)  # noqa: E731
    frame = frames[110 - start]
    assert edge_fraction(frame, 500, 40, 0, test=grey) > 0.7  # trace 3, thin grey
    assert edge_fraction(frame, 200, 120, 1) > 0.8  # trace 1 still highlighted
    assert (frame[-25:, :150].mean(axis=-1) > 200).mean() > 0.03  # white panel text, bottom-left


def test_bbox_video_single_detection_only_on_its_frame(api_client, with_detections):
    response, frames = fetch_frames(api_client, f"/api/v1/file/{with_detections.file_uuid}/video/bbox"
                                                "?start_frame=145&end_frame=155&audio=off")
    assert response["X-Momentry-Start-Frame"] == "145" and len(frames) == 11
    colour = overlays.colour_for(2)  # &HBBGGRR&
    b, g, r = (int(colour[2 + i : 4 + i], 16) for i in (0, 2, 4))

    def painted(p):
        return (np.abs(p - np.array([r, g, b])) < 70).all(axis=-1)

    hits = [edge_fraction(frame, 400, 200, 1, test=painted) for frame in frames]
    assert hits[150 - 145] > 0.8
    assert max(hits[:5] + hits[6:]) < 0.2, hits


def test_trace_errors(api_client, with_detections):
    base = f"/api/v1/file/{with_detections.file_uuid}/trace"
    assert api_client.get(f"{base}/99/video").status_code == 404
    assert api_client.get(f"{base}/1/video?padding=-1").json()["error"]["details"]["parameter"] == "padding"
    assert api_client.get(f"{base}/1/video?padding=abc").status_code == 400
    assert api_client.get(f"{base}/1/video?mode=x").status_code == 400
    head = api_client.head(f"{base}/1/video")
    assert head.status_code == 200 and head["Content-Type"] == "video/mp4"
    assert _children_named("ffmpeg") == []


def test_ass_text_neutralises_user_input():
    text = overlays.ass_text(NAME + "\nDialogue: 0,0:00:00.00,9:00:00.00,Label,,0,0,0,,pwned")
    assert "\n" not in text and "{" not in text and "}" not in text
    assert "\\N" not in text and "\\b" not in text  # every backslash is followed by a word joiner
    assert text.startswith("Zoë (")


def test_label_with_filter_and_ass_syntax_renders_from_an_awkward_directory(tmp_path, hamilton):
    """The overlay file path goes through filter-graph escaping; the name through ASS escaping."""
    index = frame_index_for(hamilton)
    span = Span(10, 14)
    awkward = tmp_path / "it's: [a], b;c"
    awkward.mkdir()
    box = overlays.Box(12, 60, 100, 120, 90, 4, "&H00FFFF&", NAME)
    ass = overlays.write_ass(awkward / "o.ass", 640, 360, relative_times(index, span), [box], span.start_frame)
    content = ass.read_text(encoding="utf-8")
    assert "O'Brien" in content and "{\\b1}" not in content
    args = reencode_args(str(HAMILTON), index, span, hamilton.fps_fraction, audio=False, has_audio=True,
                         filters=[overlays.ass_filter(ass)], container="mpegts")
    data = run_ffmpeg(args)
    with av.open(io.BytesIO(data), format="mpegts") as container:
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
    assert len(frames) == 5
    assert yellow(frames[2][110:180, 60:64]).mean() > 0.8
    assert yellow(frames[1][110:180, 60:64]).mean() < 0.2


def test_font_is_shipped_not_a_system_font():
    fonts = list(overlays.FONTS_DIR.glob("*.ttf"))
    assert fonts and (overlays.FONTS_DIR / "LICENSE-DejaVu.txt").exists()
    assert f"fontsdir={overlays.filter_value(str(overlays.FONTS_DIR))}" in overlays.ass_filter("/tmp/x.ass")
    # the build ffmpeg has the ass filter (libass)
    out = subprocess.run([django_settings.FFMPEG_BINARY, "-hide_banner", "-filters"], capture_output=True, text=True)
    assert " ass " in out.stdout


def test_overlay_queries_do_not_grow_with_detections(api_client, with_detections):
    """One indexed query reads every detection of the span (with trace number and identity name)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    fetch_frames(api_client, f"/api/v1/file/{with_detections.file_uuid}/video/bbox?start_frame=0&end_frame=1")  # warm
    counts = []
    for query in ("video/bbox?start_frame=145&end_frame=146", "video/bbox?start_frame=100&end_frame=150",
                  "trace/1/video?padding=0", "trace/1/video?padding=0&mode=debug"):
        with CaptureQueriesContext(connection) as ctx:
            fetch_frames(api_client, f"/api/v1/file/{with_detections.file_uuid}/{query}&audio=off")
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts  # 0 vs 26 detections: same number of queries
    assert max(counts) <= 8, counts


@pytest.mark.parametrize("box_y,panel_rows", [(40, slice(-25, None)), (265, slice(0, 25))], ids=["top", "bottom"])
def test_debug_panel_never_covers_the_highlighted_person(api_client, hamilton, box_y, panel_rows):
    """The info panel sits bottom-left, or top-left when the person (box or name) is down there."""
    rows = [{"trace_id": 5, "frame_number": f, "x": 12, "y": box_y, "width": BOX, "height": BOX, "confidence": 0.9,
             "identity": "Angelica Schuyler"} for f in range(30, 41, 5)]
    import_detections(hamilton, rows)
    _, frames = fetch_frames(api_client, f"/api/v1/file/{hamilton.file_uuid}/trace/5/video?padding=0&audio=off"
                                         "&mode=debug")
    frame = frames[5]
    label = frame[box_y - 14 : box_y - 3, 14:120]
    assert yellow(label).mean() > 0.05  # the name is drawn and visible
    assert edge_fraction(frame, 12, box_y, 1) > 0.8  # so is the box
    assert (frame[panel_rows, :150].mean(axis=-1) > 200).mean() > 0.03  # the panel is on the other side


def test_bidirectional_controls_are_stripped_from_names():
    evil = "Eve\u202egnp.exe\u202c \u2066x\u2069\u200f"
    text = overlays.ass_text(evil)
    assert not set(text) & overlays.BIDI_CONTROLS
    assert text == "Evegnp.exe x"
    assert overlays.ass_text("Zoë \u2067עברית\u2069") == "Zoë עברית"  # right-to-left text itself stays


def test_stale_overlay_folders_are_cleaned(settings, tmp_path):
    import os
    import subprocess as sp
    import time as _time

    from media_api.services import streaming

    base = settings.CACHE_DIR / "overlays"
    base.mkdir(parents=True)
    dead = sp.Popen(["true"])
    dead.wait()
    live = sp.Popen(["sleep", "30"])
    try:
        for name in (f"ov-{dead.pid}-abc", f"ov-{live.pid}-def", "ov-oldstyle", "ov-newstyle"):
            (base / name).mkdir()
            (base / name / "overlay.ass").write_text("x")
        old = _time.time() - settings.MOMENTRY_FFMPEG_TIMEOUT - 60
        os.utime(base / "ov-oldstyle", (old, old))
        assert streaming.clean_stale_scratch() == 2
        assert sorted(p.name for p in base.iterdir()) == [f"ov-{live.pid}-def", "ov-newstyle"]
    finally:
        live.kill()
        live.wait()
    scratch = streaming._Scratch()
    assert scratch.path.name.startswith(f"ov-{os.getpid()}-")
    assert streaming.clean_stale_scratch() == 1  # the sleeper is gone now; a running process's folder stays
    assert scratch.path.is_dir()
