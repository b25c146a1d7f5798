"""Streaming benchmarks: clip encode speed and time to first byte, overlay cost, range serving.

    .venv/bin/python bench/bench_streaming.py [--frames 300] [--big-mb 700]

Everything goes through the real routes with Django's test client (authenticated session),
on a 720p source made once in bench/out/ by upscaling the Hamilton clip (29.97 fps), with a
private SQLite database and data directory under bench/out/ (nothing else is touched).

Goals (issue 5): clip ≥ 3× realtime and first byte ≤ 1 s at 720p; overlay video with 10
boxes/frame ≥ 1× realtime and ≤ 1.5× the time of a plain re-encode of the same span
(measured in the same run); range serving of a 700 MB file with flat server memory.
Prints a Markdown section for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
OUT.mkdir(parents=True, exist_ok=True)
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "momentry.settings"
os.environ["MOMENTRY_DATA_DIR"] = str(OUT / "streaming-data")
os.environ["DATABASE_URL"] = f"sqlite:///{OUT / 'streaming-bench.sqlite3'}"
os.environ.setdefault("MOMENTRY_LOG_LEVEL", "WARNING")

SOURCE = ROOT / "demo" / "media" / "face_recognition_short_hamilton_clip.mp4"
SOURCE_720 = OUT / "hamilton_720p.mp4"
BOXES_PER_FRAME = 10


def ffmpeg(*args: str) -> None:
    from django.conf import settings

    subprocess.run([settings.FFMPEG_BINARY, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
                   check=True, timeout=600)


def make_720p() -> Path:
    """~27 s of 1280x720 29.97 fps H.264 + AAC (the clip looped 3 times, upscaled), made once."""
    if not SOURCE_720.exists():
        ffmpeg("-stream_loop", "2", "-i", str(SOURCE), "-vf", "scale=1280:720", "-r", "30000/1001", "-fps_mode", "cfr",
               "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-c:a", "aac", str(SOURCE_720))
    return SOURCE_720


def make_big(source: Path, megabytes: int) -> Path:
    target = OUT / f"big_{megabytes}mb.mp4"
    if not target.exists():
        loops = max(1, int(megabytes * 1024 * 1024 / source.stat().st_size))
        ffmpeg("-stream_loop", str(loops), "-i", str(source), "-c", "copy", str(target))
    return target


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def timed_stream(client, url: str, **headers) -> tuple[float, float, int]:
    """(seconds to the response with its first chunk ready, total seconds, bytes)."""
    start = time.perf_counter()
    response = client.get(url, **headers)
    assert response.status_code in (200, 206), (response.status_code, getattr(response, "content", b"")[:300])
    chunks = iter(response.streaming_content)
    first = next(chunks)
    ttfb = time.perf_counter() - start
    size = len(first) + sum(len(c) for c in chunks)
    response.close()
    return ttfb, time.perf_counter() - start, size


def _ffmpeg_children() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if "ffmpeg" in stat[: stat.rindex(")")] and int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.append(int(entry))
    return found


def over_a_socket(client, big_file, base: str, span: str) -> tuple[float, int, float | None]:
    """A real HTTP server (wsgiref, in this process) and client: throughput, RSS, disconnect."""
    import http.client
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from django.core.wsgi import get_wsgi_application

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        before = peak = rss_kb()
        start = time.perf_counter()
        conn.request("GET", f"/api/v1/file/{big_file.file_uuid}/video", headers={"Cookie": cookie})
        response = conn.getresponse()
        total = 0
        while chunk := response.read(1 << 20):
            total += len(chunk)
            if total % (64 << 20) < (1 << 20):
                peak = max(peak, rss_kb())
        seconds = time.perf_counter() - start
        assert response.status == 200 and total == big_file.size, (response.status, total)
        conn.close()

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", f"{base}/clip?{span}", headers={"Cookie": cookie})
        response = conn.getresponse()
        response.read(65536)
        response.close()
        conn.close()  # the client goes away mid-stream (both hold the socket)
        gone_at = time.perf_counter()
        killed = None
        while time.perf_counter() - gone_at < 10:
            if not _ffmpeg_children():
                killed = time.perf_counter() - gone_at
                break
            time.sleep(0.02)
    finally:
        server.shutdown()
        server.server_close()
    return total / 1e6 / seconds, peak - before, killed


def synthetic_detections(media_file, frames: int) -> list[dict]:
    """BOXES_PER_FRAME moving boxes on every frame of the first ``frames`` frames."""
    rows = []
    for trace in range(BOXES_PER_FRAME):
        for f in range(frames):
            x = 40 + (trace % 5) * 240 + (f * 2) % 120
            y = 60 + (trace // 5) * 320 + (f % 60)
            rows.append({"trace_id": trace + 1, "frame_number": f, "x": x, "y": y, "width": 120, "height": 140,
                         "confidence": 0.9, "identity": f"Person {trace + 1}" if trace % 2 else ""})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=300, help="span length for the encode benchmarks")
    parser.add_argument("--big-mb", type=int, default=700)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.test import APIClient

    from media_api.models import Detection
    from media_api.services.detections_import import import_detections
    from media_api.services.files import register_file

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench-streaming", defaults={"is_staff": True})
    client = APIClient()
    client.force_login(user)

    t0 = time.perf_counter()
    source = make_720p()
    media_file = register_file(source).file
    print(f"720p source ready in {time.perf_counter() - t0:.1f}s: {media_file.width}x{media_file.height} "
          f"{media_file.fps_rational} fps, {media_file.total_frames} frames", file=sys.stderr)
    frames = min(args.frames, media_file.total_frames)
    if not Detection.objects.filter(file=media_file).exists():
        import_detections(media_file, synthetic_detections(media_file, media_file.total_frames))
    span_seconds = frames / media_file.fps
    base = f"/api/v1/file/{media_file.file_uuid}"
    span = f"start_frame=0&end_frame={frames - 1}"

    results = {}
    # Warm-up (page cache, libass font load) on a tiny span.
    timed_stream(client, f"{base}/clip?start_frame=0&end_frame=9")
    timed_stream(client, f"{base}/video/bbox?start_frame=0&end_frame=9")
    from media_api.services import streaming

    def plain() -> tuple[float, float, int]:
        """Baseline: plain re-encode of the same span, same encoder settings, fragmented MP4, no filter."""
        start = time.perf_counter()
        stream = streaming._render_stream(media_file, streaming.encode.Span(0, frames - 1), None, None, audio=True,
                                          container="mp4")
        ttfb = time.perf_counter() - start
        size = sum(len(c) for c in stream)
        return ttfb, time.perf_counter() - start, size

    # Interleaved repeats, median of each (the machine is shared and noisy).
    runs: dict[str, list] = {"clip": [], "bbox": [], "plain": []}
    for _ in range(args.repeats):
        runs["clip"].append(timed_stream(client, f"{base}/clip?{span}"))
        runs["bbox"].append(timed_stream(client, f"{base}/video/bbox?{span}"))
        runs["plain"].append(plain())
    for name, values in runs.items():
        values.sort(key=lambda r: r[1])
        results[name] = values[len(values) // 2]

    # Range serving of a large file.
    big = make_big(source, args.big_mb)
    from media_api.models import MediaFile

    big_file, _ = MediaFile.objects.get_or_create(
        file_uuid="f" * 32,
        defaults=dict(path=str(big), name=big.name, size=big.stat().st_size, container="mp4", video_codec="h264",
                      width=1280, height=720, fps_num=2997, fps_den=100, fps=29.97, total_frames=1, duration=1.0),
    )
    rss_before = rss_kb()
    peak = rss_before
    start = time.perf_counter()
    response = client.get(f"/api/v1/file/{big_file.file_uuid}/video")
    total = 0
    for i, chunk in enumerate(response.streaming_content):
        total += len(chunk)
        if i % 256 == 0:
            peak = max(peak, rss_kb())
    response.close()
    full_seconds = time.perf_counter() - start
    assert total == big.stat().st_size, (total, big.stat().st_size)
    ranges = []
    size = big.stat().st_size
    for k in range(20):
        first = (k * 7919 * 1_000_003) % (size - 2_000_000)
        ttfb, seconds, _ = timed_stream(client, f"/api/v1/file/{big_file.file_uuid}/video",
                                        HTTP_RANGE=f"bytes={first}-{first + 1_048_575}")
        ranges.append(seconds)
        peak = max(peak, rss_kb())

    socket_mbps, socket_rss, killed = over_a_socket(client, big_file, base, span)

    clip_ttfb, clip_total, _ = results["clip"]
    bbox_total = results["bbox"][1]
    plain_total = results["plain"][1]
    ratio = bbox_total / plain_total
    machine = f"{platform.machine()}, {os.cpu_count()} cores (shared)"
    lines = [
        "## Streaming (`bench/bench_streaming.py`)",
        "",
        f"{machine}, {date.today().isoformat()}, FFmpeg = imageio-ffmpeg static build, libx264 veryfast. "
        f"Source: the Hamilton clip upscaled to {media_file.width}x{media_file.height} at "
        f"{media_file.fps_rational} fps; span = {frames} frames ({span_seconds:.1f} s), median of "
        f"{args.repeats} interleaved runs. Requests through "
        "Django's test client (session auth), bodies consumed chunk by chunk.",
        "",
        "| measure | result | goal |",
        "|---|---|---|",
        f"| clip (MPEG-TS, H.264 + AAC), encode speed | {span_seconds / clip_total:.2f}× realtime "
        f"({clip_total:.1f} s) | ≥ 3× {'✔' if span_seconds / clip_total >= 3 else '✘'} |",
        f"| clip, time to first byte | {clip_ttfb * 1000:.0f} ms | ≤ 1 s {'✔' if clip_ttfb <= 1 else '✘'} |",
        f"| plain re-encode of the span (fMP4, baseline) | {frames / plain_total:.0f} fps ({plain_total:.1f} s) | — |",
        f"| bbox overlay, {BOXES_PER_FRAME} boxes + labels per frame | {frames / bbox_total:.0f} fps "
        f"({span_seconds / bbox_total:.2f}× realtime) | ≥ 1× {'✔' if span_seconds / bbox_total >= 1 else '✘'} |",
        f"| overlay / plain time | {ratio:.2f} | ≤ 1.5 {'✔' if ratio <= 1.5 else '✘'} |",
        f"| full GET of a {size / 1e6:.0f} MB file | {size / 1e6 / full_seconds:.0f} MB/s ({full_seconds:.1f} s) | — |",
        f"| 20 random 1 MiB ranges of it | median {sorted(ranges)[10] * 1000:.1f} ms | — |",
        f"| server RSS growth while serving it | {(peak - rss_before) / 1024:.1f} MB (peak {peak / 1024:.0f} MB) "
        "| flat ✔ |" if peak - rss_before < 16 * 1024 else
        f"| server RSS growth while serving it | {(peak - rss_before) / 1024:.1f} MB | flat ✘ |",
        f"| full GET of it over a loopback socket (wsgiref server in-process) | {socket_mbps:.0f} MB/s, "
        f"RSS growth {socket_rss / 1024:.1f} MB | flat {'✔' if socket_rss < 16 * 1024 else '✘'} |",
        f"| client closes the socket after 64 KB of a clip | FFmpeg gone after "
        f"{'%.0f ms' % (killed * 1000) if killed is not None else 'never'} | killed "
        f"{'✔' if killed is not None else '✘'} |",
        "",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
