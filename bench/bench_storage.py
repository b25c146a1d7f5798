"""Object storage: a cold deep-frame thumbnail and a 10 s clip from S3 against the same file on a local disk.

    .venv/bin/python bench/bench_storage.py [--minutes 10] [--frames 4] [--runs 5]

Makes a long video by looping the Hamilton clip (bench/out/), registers it from the local disk in a throw-away
data directory (SQLite), puts the same bytes into a bucket on moto's S3 server (loopback), and registers a twin
row whose path is ``s3://bucket/key`` (same frame index). Between FFmpeg and the S3 server sits a counting TCP
proxy, so every byte the FFmpeg layer reads from the store is counted. In the same run, interleaved:

* cold deep-frame thumbnail (image cache emptied before each; with this host's cache of the object's
  opening reads, as after its first open, and — the before — through FFmpeg's http protocol, and once on a
  host that has not opened it yet; the last frame of a GOP near the end, the
  worst case: a whole GOP decoded) through ``frame_thumbnail``: S3 / local (goal <= 2x) and bytes read per
  thumbnail against the file size;
* a frame-exact 10 s clip (``/clip``'s re-encode, read to the end) from a deep start: S3 / local (goal <= 2x).

moto's server is a Python process on the same two cores: a real store (MinIO, S3) answers faster and on
other machines, so the ratio here is pessimistic for CPU and optimistic for network latency (loopback).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")

from bench.media import make_long_video  # noqa: E402


class CountingProxy:
    """A TCP proxy on loopback that counts the bytes the store sends back and the requests sent to it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.bytes_down = 0
        self.requests = 0
        self.connections = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.bytes_down, self.requests, self.connections = 0, 0, 0

    def _accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            with self._lock:
                self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for sock in (client, upstream):  # forward each write at once (Nagle + delayed ACK would add 40 ms)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, down: bool) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    if down:
                        self.bytes_down += len(data)
                    else:
                        self.requests += data.count(b"GET ") + data.count(b"HEAD ")
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def start_moto() -> tuple[subprocess.Popen, int]:
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    binary = shutil.which("moto_server") or str(ROOT / ".venv" / "bin" / "moto_server")
    proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("moto_server did not start")


def cold_thumbnail(media_file, n: int) -> float:
    from django.conf import settings

    from media_api.services.thumbnails import frame_thumbnail

    shutil.rmtree(Path(settings.CACHE_DIR) / "images", ignore_errors=True)
    started = time.perf_counter()
    data = frame_thumbnail(media_file, n, None)
    elapsed = time.perf_counter() - started
    assert data[:2] == b"\xff\xd8"
    return elapsed


def http_thumbnail(media_file, n: int) -> float:
    """The cold thumbnail with frames read through FFmpeg's http protocol (no opening cache): the before."""
    from media_api.ffmpeg import source

    source.OPENING_CACHE = False
    try:
        return cold_thumbnail(media_file, n)
    finally:
        source.OPENING_CACHE = True


def first_open_thumbnail(media_file, n: int) -> float:
    """The cold thumbnail on a host that has not opened the object yet (its opening bytes are fetched)."""
    from django.conf import settings

    shutil.rmtree(Path(settings.CACHE_DIR) / "objects", ignore_errors=True)
    return cold_thumbnail(media_file, n)


def clip(media_file, start: int, frames: int) -> tuple[float, int]:
    from media_api.ffmpeg.encode import Span
    from media_api.services.streaming import StreamOptions, clip_stream

    started = time.perf_counter()
    stream = clip_stream(media_file, Span(start, start + frames - 1), StreamOptions(debug=False, audio=True))
    size = 0
    try:
        for chunk in stream:
            size += len(chunk)
    finally:
        stream.close()
    return time.perf_counter() - started, size


def span_decode(media_file, first: int, last: int) -> float:
    from media_api.ffmpeg.frames import FrameReader
    from media_api.services.files import frame_index_for

    started = time.perf_counter()
    with FrameReader(media_file.path, frame_index_for(media_file)) as reader:
        count = sum(1 for _ in reader.iter_range(first, last))
    assert count == last - first + 1
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10, help="length of the looped 360p video")
    parser.add_argument("--hd-minutes", type=float, default=3, help="length of the looped 1080p video (0: none)")
    parser.add_argument("--frames", type=int, default=4, help="deep frames measured per video")
    parser.add_argument("--runs", type=int, default=5, help="runs per frame and side (median)")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    os.environ["MOMENTRY_DATA_DIR"] = str(data_dir)
    os.environ.pop("DATABASE_URL", None)
    moto, moto_port = start_moto()
    proxy = CountingProxy(moto_port)
    os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "MOMENTRY_STORAGE_URL": "s3://bench-media/media"})
    try:
        run(args, moto_port, proxy)
    finally:
        moto.kill()
        moto.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def make_hd_video(ffmpeg: str, minutes: float) -> Path:
    """The 1080p facenet clip looped with stream copy (one keyframe per 4.2 s loop: long GOPs, like films)."""
    from bench.media import OUT

    source = ROOT / "demo" / "media" / "facenet_pytorch_video.mp4"
    loops = max(1, round(minutes * 60 / 4.2))
    target = OUT / f"facenet_x{loops}.mp4"
    if not target.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(loops - 1),
                        "-i", str(source), "-map", "0:v", "-c", "copy", str(target)], check=True)
    return target


def twins(video: Path, key: str):  # noqa: ANN201 - (local MediaFile, S3 MediaFile)
    """The video registered from the disk, and a twin row reading the same bytes from the bucket."""
    from media_api.models import FrameIndex, MediaFile
    from media_api.services.files import register_file
    from media_api.storage.config import s3_client

    local = register_file(video).file
    s3_client().upload_file(str(video), "bench-media", key)
    remote = MediaFile.objects.get(pk=local.pk)
    remote.pk, remote.file_uuid = None, local.file_uuid[::-1]
    remote.storage, remote.path = "s3", f"s3://bench-media/{key}"
    remote.save()
    row = FrameIndex.objects.get(file=local)
    row.pk, row.file = None, remote
    row.save()
    return local, remote


def measure(local, remote, args: argparse.Namespace, moto_port: int, proxy: CountingProxy) -> tuple[list, dict]:
    from media_api.services.files import frame_index_for

    index = frame_index_for(local)
    keyframes = [int(k) for k in index.keyframes]
    step = max(1, len(keyframes) // (4 * args.frames))
    deep = [keyframes[-1 - i * step] - 1 for i in range(args.frames)]  # last frame of a GOP: a whole GOP decoded
    label = f"{local.width}x{local.height}, {local.duration / 60:.1f} min, {local.size / 1e6:.0f} MB"
    rows, ratios, read, http_ratios, first_opens = [], [], [], [], []
    for n in deep:
        local_times, remote_times, http_times = [], [], []
        for _ in range(args.runs):  # interleaved, so load on the machine hits all sides alike
            local_times.append(cold_thumbnail(local, n))
            remote_times.append(cold_thumbnail(remote, n))
            http_times.append(http_thumbnail(remote, n))
        through_proxy(proxy)
        proxy.reset()
        cold_thumbnail(remote, n)
        read.append((proxy.bytes_down, proxy.requests, proxy.connections))
        proxy.reset()
        http_thumbnail(remote, n)
        http_read = (proxy.bytes_down, proxy.requests, proxy.connections)
        direct(moto_port)
        first_opens.append(first_open_thumbnail(remote, n))
        lt, rt, ht = (statistics.median(t) for t in (local_times, remote_times, http_times))
        ratios.append(rt / lt)
        http_ratios.append(ht / lt)
        rows.append(f"| {label} | thumbnail, frame {n} | {lt * 1000:.0f} ms | {rt * 1000:.0f} ms | {rt / lt:.2f}x | "
                    f"{read[-1][0] / 1e6:.2f} MB, {read[-1][1]} requests, {read[-1][2]} connections |")
        rows.append(f"| {label} | the same through FFmpeg's http (before the opening cache) | | {ht * 1000:.0f} ms | "
                    f"{ht / lt:.2f}x | {http_read[0] / 1e6:.2f} MB, {http_read[1]} requests, {http_read[2]} "
                    f"connections |")
    start = deep[-1] - 40  # a deep start, not on a keyframe
    frames = round(10 * local.fps)
    local_clip, remote_clip = [], []
    for _ in range(max(3, args.runs // 2)):
        local_clip.append(clip(local, start, frames)[0])
        remote_clip.append(clip(remote, start, frames)[0])
    through_proxy(proxy)
    proxy.reset()
    clip(remote, start, frames)
    clip_read = (proxy.bytes_down, proxy.requests)
    direct(moto_port)
    lc, rc = statistics.median(local_clip), statistics.median(remote_clip)
    rows.append(f"| {label} | 10 s clip from frame {start} | {lc * 1000:.0f} ms | {rc * 1000:.0f} ms | "
                f"{rc / lc:.2f}x | {clip_read[0] / 1e6:.2f} MB, {clip_read[1]} requests |")
    # What a face-analysis chunk reads: one span decoded in order (FrameReader.iter_range), 30 s deep in the file.
    first = keyframes[len(keyframes) // 2] + 3
    last = min(first + round(30 * local.fps), local.total_frames - 1)
    lspan = span_decode(local, first, last)
    through_proxy(proxy)
    proxy.reset()
    rspan = span_decode(remote, first, last)
    span_read = (proxy.bytes_down, proxy.requests)
    direct(moto_port)
    share = (last - first + 1) / local.total_frames
    rows.append(f"| {label} | decode frames {first}-{last} (30 s, an analysis chunk) | {lspan * 1000:.0f} ms | "
                f"{rspan * 1000:.0f} ms | {rspan / lspan:.2f}x | {span_read[0] / 1e6:.2f} MB, {span_read[1]} requests "
                f"(the span is {share * local.size / 1e6:.2f} MB of the file) |")
    rows.append(f"| {label} | one 256 KiB ranged GET on a new connection (the store's cost per request) | | "
                f"{request_cost(remote) * 1000:.1f} ms | | |")
    rows.append(f"| {label} | cold thumbnail, first open on this host (opening bytes not cached yet), median | | "
                f"{statistics.median(first_opens) * 1000:.0f} ms | | |")
    summary = {"label": label, "thumb_ratio": statistics.median(ratios),
               "http_ratio": statistics.median(http_ratios), "clip_ratio": rc / lc,
               "bytes": statistics.median(b for b, _, _ in read), "size": local.size}
    return rows, summary


def request_cost(remote, runs: int = 15) -> float:
    """Median seconds of one 256 KiB ranged GET of the object on a new connection (what each of FFmpeg's seeks
    costs: its http protocol opens a new connection per seek) — the store's share of a cold thumbnail."""
    import urllib.request

    from media_api.ffmpeg.source import resolve

    size = remote.size
    times = []
    for i in range(runs):
        start = (i * 7919 * 4096) % max(1, size - 262144)
        request = urllib.request.Request(resolve(remote.path), headers={"Range": f"bytes={start}-{start + 262143}"})
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def through_proxy(proxy: CountingProxy) -> None:
    """Presigned URLs made from now on point at the counting proxy (boto3 clients are cached per endpoint)."""
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.port}"


def direct(moto_port: int) -> None:
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{moto_port}"


def run(args: argparse.Namespace, moto_port: int, proxy: CountingProxy) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from media_api.storage.config import s3_client

    call_command("migrate", verbosity=0)
    s3_client().create_bucket(Bucket="bench-media")
    videos = [make_long_video(settings.FFMPEG_BINARY, args.minutes)]
    if args.hd_minutes > 0:
        videos.append(make_hd_video(settings.FFMPEG_BINARY, args.hd_minutes))
    rows, summaries = [], []
    for number, video in enumerate(videos):
        local, remote = twins(video, f"media/{number}/{video.name}")
        more, summary = measure(local, remote, args, moto_port, proxy)
        rows += more
        summaries.append(summary)

    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print("| video | measure | local | S3 (moto, loopback) | S3 / local | read from the store |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    for s in summaries:
        print(f"\n{s['label']}: cold thumbnail median {s['thumb_ratio']:.2f}x local (goal <= 2x; "
              f"{s['http_ratio']:.2f}x through FFmpeg's http), "
              f"{s['bytes'] / 1e6:.2f} MB read per thumbnail ({100 * s['bytes'] / s['size']:.1f} % of the file); "
              f"10 s clip {s['clip_ratio']:.2f}x (goal <= 2x)")


if __name__ == "__main__":
    main()
