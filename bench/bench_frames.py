"""Frame core: thumbnails at deep frames, warm thumbnails over HTTP, representative face, prewarm.

    .venv/bin/python bench/bench_frames.py [--minutes 20] [--frames 4] [--seed-runs 1]

Makes a ~20-minute video by looping the Hamilton clip with stream copy (bench/out/), registers
it in a throw-away data directory (SQLite) and measures, in the same run:

* cold frame thumbnail at deep frames (our route's service: seek + decode + JPEG + cache write)
  against the seed's ``ffmpeg -vf select=eq(n\\,N)`` (goal: ≥ 50× faster) and against the floor,
  a bare PyAV seek-and-decode of the same frame (goal: ≤ 1.5× of it);
* warm thumbnail over real HTTP (gunicorn, 2 sync workers, on a socket, X-API-Key): p50 ≤ 10 ms
  (Django's ``runserver`` is not a measure of this: it answers headers and body in two writes
  and Nagle + delayed ACK add 40 ms to every keep-alive response);
* representative face cold (top 10 + one decode pass + blurdetect) against one cold frame (≤ 3×);
* prewarm throughput in traces/s with 1 and 2 workers.

Co-occurrence at 5 million detections is ``bench/bench_cooccurrence.py`` (PostgreSQL).
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")

from bench.media import make_long_video  # noqa: E402


def seed_select(ffmpeg: str, path: Path, n: int) -> float:
    """The seed's way: decode from frame 0 and keep frame N (select=eq(n,N)) as one JPEG."""
    started = time.perf_counter()
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-i", str(path), "-vf", f"select=eq(n\\,{n})",
                    "-frames:v", "1", "-f", "image2pipe", "-vcodec", "mjpeg", "-"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def pyav_floor(path: Path, index, n: int) -> float:
    """The floor: open, seek to the keyframe before N, decode until frame N's pts. Nothing else."""
    import av

    started = time.perf_counter()
    target = index.pts_of(n)
    keyframe = index.keyframe_at_or_before(n) or 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        container.seek(index.pts_of(keyframe) if keyframe else min(index.pts_of(0), 0), stream=stream)
        for frame in container.decode(stream):
            if frame.pts == target:
                break
    return time.perf_counter() - started


def ours_cold(media_file, n: int) -> float:
    from django.conf import settings

    from media_api.services.thumbnails import frame_thumbnail

    shutil.rmtree(Path(settings.CACHE_DIR) / "images", ignore_errors=True)
    started = time.perf_counter()
    data = frame_thumbnail(media_file, n, None)
    elapsed = time.perf_counter() - started
    assert data[:2] == b"\xff\xd8"
    return elapsed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def warm_http(media_file, key: str, n: int, requests: int) -> list[float]:
    port = free_port()
    gunicorn = Path(sys.executable).parent / "gunicorn"
    server = subprocess.Popen([str(gunicorn), "momentry.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        path = f"/api/v1/file/{media_file.file_uuid}/thumbnail?frame={n}"
        times = []
        for i in range(requests + 5):
            started = time.perf_counter()
            connection.request("GET", path, headers={"X-API-Key": key})
            response = connection.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
            assert response.status == 200 and body[:2] == b"\xff\xd8", (response.status, body[:200])
            if i >= 5:  # the first requests render and warm the process
                times.append(elapsed)
        return times
    finally:
        server.terminate()
        server.wait(10)


def make_traces(media_file, count: int, seconds: float = 3.0, step: int = 3) -> None:
    """``count`` traces of ``seconds`` each, a detection every ``step`` frames, spread over the video."""
    from media_api.services.detections_import import import_detections

    length = int(seconds * media_file.fps)
    rows = []
    spacing = (media_file.total_frames - length - 1) // count
    for trace_id in range(1, count + 1):
        first = trace_id * spacing
        for k in range(0, length, step):
            rows.append({"trace_id": trace_id, "frame_number": first + k, "x": 200 + (k % 40), "y": 40 + (k % 17),
                         "width": 90 + (k % 30), "height": 100 + (k % 25), "confidence": 0.6 + (k % 7) / 20})
    import_detections(media_file, rows, replace=True)


def rep_cold(media_file, trace_id: int) -> float:
    from media_api.models import Trace
    from media_api.services.representative import representative_for

    Trace.objects.filter(file=media_file).update(rep_version=None)
    trace = Trace.objects.get(file=media_file, trace_id=trace_id)
    started = time.perf_counter()
    representative_for(media_file, trace)
    return time.perf_counter() - started


def prewarm_rate(workers: int) -> tuple[float, int]:
    from django.conf import settings
    from django.core.management import call_command

    from media_api.models import Trace

    Trace.objects.update(rep_version=None)
    shutil.rmtree(Path(settings.CACHE_DIR) / "images", ignore_errors=True)
    started = time.perf_counter()
    call_command("prewarm_thumbnails", workers=workers, verbosity=0, stdout=open(os.devnull, "w"))
    elapsed = time.perf_counter() - started
    count = Trace.objects.filter(rep_version__isnull=False).count()
    return count / elapsed, count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--frames", type=int, default=4, help="deep frames measured")
    parser.add_argument("--seed-runs", type=int, default=1, help="select=eq runs per frame (slow)")
    parser.add_argument("--traces", type=int, default=200, help="traces for the prewarm measure")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-frames-"))  # a throw-away SQLite database and cache
    os.environ["MOMENTRY_DATA_DIR"] = str(data_dir)
    os.environ.pop("DATABASE_URL", None)

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from media_api.services.files import frame_index_for, register_file
    from momentry.services import create_api_key

    call_command("migrate", verbosity=0)
    ffmpeg = settings.FFMPEG_BINARY
    video = make_long_video(ffmpeg, args.minutes)
    media_file = register_file(video).file
    index = frame_index_for(media_file)
    total = media_file.total_frames
    keyframes = [int(k) for k in index.keyframes]
    # Deep frames, each the last frame of its GOP (the worst case: a whole GOP to decode).
    deep = [keyframes[-1 - i * 37] - 1 for i in range(args.frames)]
    print(f"video: {video.name}, {total} frames, {media_file.duration / 60:.1f} min, "
          f"{media_file.width}x{media_file.height}, {len(keyframes)} keyframes", file=sys.stderr)

    rows = []
    seed_times, ours_times, floor_times = [], [], []
    for n in deep:
        floor = statistics.median(pyav_floor(video, index, n) for _ in range(5))
        ours = statistics.median(ours_cold(media_file, n) for _ in range(5))
        seed = statistics.median(seed_select(ffmpeg, video, n) for _ in range(args.seed_runs))
        seed_times.append(seed)
        ours_times.append(ours)
        floor_times.append(floor)
        rows.append((n, seed, ours, floor))
        print(f"frame {n}: seed {seed:.2f} s, ours {ours * 1000:.0f} ms, floor {floor * 1000:.0f} ms",
              file=sys.stderr)

    user, _ = get_user_model().objects.get_or_create(username="bench-frames")
    key = create_api_key(user, name="bench").key
    warm = warm_http(media_file, key, deep[0], requests=200)

    make_traces(media_file, args.traces)
    one_frame = statistics.median(ours_times)
    reps = [rep_cold(media_file, t) for t in range(1, 22, 2)]
    rates = {w: prewarm_rate(w) for w in (1, 2)}

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, "
          f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"video: {total} frames ({media_file.duration / 60:.1f} min) {media_file.width}x{media_file.height}, "
          f"GOP ≤ {max(b - a for a, b in zip(keyframes, keyframes[1:], strict=False))} frames")
    print("| frame | seed select=eq(n,N) | ours, cold | PyAV floor | seed / ours | ours / floor |")
    print("|---|---|---|---|---|---|")
    for n, seed, ours, floor in rows:
        print(f"| {n} | {seed:.2f} s | {ours * 1000:.0f} ms | {floor * 1000:.0f} ms | {seed / ours:.0f}× "
              f"| {ours / floor:.2f} |")
    print(f"| median | {statistics.median(seed_times):.2f} s | {one_frame * 1000:.0f} ms "
          f"| {statistics.median(floor_times) * 1000:.0f} ms "
          f"| {statistics.median(seed_times) / one_frame:.0f}× | {one_frame / statistics.median(floor_times):.2f} |")
    print(f"warm thumbnail over HTTP (gunicorn, {len(warm)} requests): p50 {statistics.median(warm) * 1000:.1f} ms, "
          f"p90 {sorted(warm)[int(len(warm) * 0.9)] * 1000:.1f} ms")
    print(f"representative face cold (3 s traces, 30 detections, 11 traces): median "
          f"{statistics.median(reps) * 1000:.0f} ms = {statistics.median(reps) / one_frame:.2f}× one cold frame")
    for workers, (rate, count) in rates.items():
        print(f"prewarm, {workers} worker(s): {count} traces at {rate:.1f} traces/s")
    print(f"prewarm speed-up with 2 workers: {rates[2][0] / rates[1][0]:.2f}×")
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
