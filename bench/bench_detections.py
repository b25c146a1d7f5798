"""Bulk detections on PostgreSQL: the NDJSON stream and keyset pages of a file with 5 million boxes.

    .venv/bin/python bench/bench_detections.py [--detections 5000000] [--minutes 120] [--reuse] \\
        [--database postgresql://postgres@127.0.0.1:5432/momentry_bench_detections]

Data: a 2-hour film (the looped Hamilton clip, registered for real: 215,000-odd frames and their
frame index) holding ``--detections`` boxes in dense traces of 2-17 s (a box on every frame, as the
face pipeline makes them), about 23 faces a frame; written with COPY, then ``VACUUM ANALYZE``.
``--reuse`` keeps the data of an earlier run when the counts match; after populating, the script
starts again with it, so that the measuring process never held the data.

Measured in the same run, over Django's test client with an API key (the whole view, in process):

* ``GET …/detections`` with ``Accept: application/x-ndjson``, the whole file: rows/s (goal
  ≥ 200,000) and the growth of the process's resident memory while streaming, sampled every
  chunk (goal ≤ 30 MB), and the time to the first chunk;
* the floor: the same rows read by a bare psycopg cursor (no Django, no text), rows per CPU-second;
* the naive way: Django's row iterator, a dict per row (as a DRF serializer builds) and ``json.dumps``
  per line, on the first ``--naive-rows`` rows, rows per CPU-second;
* the same stream over real HTTP from gunicorn (deploy config, one sync worker, warmed up), its
  worker's resident memory sampled every 0.2 s;
* the pages (``page_size=10000``) following the ``next`` links: rows/s, and the first vs the
  last page's time (keyset pages do not slow down with depth).

Numbers are noisy on a shared 2-core machine (PostgreSQL runs on it too): read the ratios.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")
PAGE = 10_000


def ensure_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def rss_mb() -> float:
    """Resident memory of this process now (not the peak), in MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def populate(media_file, total: int, rng) -> int:
    """Dense traces with a box on every frame until ``total`` boxes, by COPY; returns the count."""
    from django.db import connection

    from media_api.models import Detection, Trace

    Detection.objects.filter(file=media_file).delete()
    Trace.objects.filter(file=media_file).delete()
    frames, traces, written = media_file.total_frames, [], 0
    while written < total:
        length = min(int(rng.integers(60, 500)), total - written)
        start = int(rng.integers(0, frames - length))
        traces.append(Trace(file=media_file, trace_id=len(traces) + 1, face_count=length, start_frame=start,
                            end_frame=start + length - 1, avg_confidence=0.8))
        written += length
    Trace.objects.bulk_create(traces, batch_size=5000)
    pk_of = dict(Trace.objects.filter(file=media_file).values_list("trace_id", "pk"))
    with connection.cursor() as cursor:
        with cursor.copy("COPY media_api_detection (file_id, trace_id, frame_number, x, y, width, height, "
                         "confidence, label, origin) FROM STDIN") as copy:
            for trace in traces:
                pk, buffer = pk_of[trace.trace_id], io.StringIO()
                for frame in range(trace.start_frame, trace.end_frame + 1):
                    origin = 0 if frame % 6 == 0 else 1
                    buffer.write(f"{media_file.pk}\t{pk}\t{frame}\t{100 + frame % 400}\t{80 + frame % 200}\t90\t110\t"
                                 f"{0.5 + (frame % 50) / 100}\tface\t{origin}\n")
                copy.write(buffer.getvalue())
    connection.connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE media_api_detection")
        cursor.execute("VACUUM ANALYZE media_api_trace")
    return written


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) a PostgreSQL backend has used (it runs on this machine)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stream(client, url: str, key: str) -> dict[str, float]:
    """The whole NDJSON stream: rows, seconds, MB, time to first chunk, memory growth (sampled per chunk),
    CPU seconds of this process and of the PostgreSQL backend serving it."""
    import gc

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    gc.collect()
    base = rss_mb()
    cpu, db_cpu = time.process_time(), backend_cpu(backend)
    started = time.perf_counter()
    response = client.get(url, HTTP_X_API_KEY=key, HTTP_ACCEPT="application/x-ndjson")
    assert response.status_code == 200, response.content[:300]
    rows = size = 0
    first = None
    peak = base
    for chunk in response.streaming_content:
        if first is None:
            first = time.perf_counter() - started
        rows += chunk.count(b"\n")
        size += len(chunk)
        peak = max(peak, rss_mb())
    seconds = time.perf_counter() - started
    cpu, db_cpu = time.process_time() - cpu, backend_cpu(backend) - db_cpu
    response.close()
    return {"rows": rows, "seconds": seconds, "mb": size / 2**20, "first": first or seconds, "growth": peak - base,
            "cpu": cpu, "db_cpu": db_cpu}


def over_gunicorn(database: str, path: str, key: str) -> dict[str, float]:
    """The stream over real HTTP: gunicorn with the deploy config (one sync worker), its RSS sampled every 0.2 s."""
    import http.client
    import socket
    import subprocess
    import threading

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
                               "momentry.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--timeout", "900"],
                              cwd=ROOT, env={**os.environ, "DATABASE_URL": database},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def get(query: str, accept: str) -> tuple[int, float]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
            started = time.perf_counter()
            conn.request("GET", path + query, headers={"X-API-Key": key, "Accept": accept})
            response, lines = conn.getresponse(), 0
            assert response.status == 200, response.read()[:300]
            while chunk := response.read(1 << 20):
                lines += chunk.count(b"\n")
            conn.close()
            return lines, time.perf_counter() - started

        for _ in range(100):
            try:
                get("?page_size=10000", "application/json")  # warm the worker: imports, frame index
                break
            except OSError:
                time.sleep(0.2)
        get("?end_frame=2000", "application/x-ndjson")
        worker = int(subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()[0])

        def rss() -> float:
            with open(f"/proc/{worker}/statm") as statm:
                return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

        base, samples, done = rss(), [], threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                samples.append(rss())
        watcher = threading.Thread(target=sample)
        watcher.start()
        rows, seconds = get("", "application/x-ndjson")
        done.set()
        watcher.join()
        return {"rows": rows, "seconds": seconds, "base": base, "growth": max(samples, default=base) - base}
    finally:
        server.terminate()
        server.wait(30)


def floor(url: str, file_pk: int) -> tuple[int, float]:
    """The same rows, in the same order, through a bare psycopg server-side cursor (the database's share)."""
    import psycopg

    started = time.process_time()
    rows = 0
    with psycopg.connect(url) as conn, conn.transaction():
        with conn.cursor(name="floor") as cursor:
            cursor.itersize = 2000
            cursor.execute("SELECT id, frame_number, trace_id, x, y, width, height, confidence, label, origin "
                           "FROM media_api_detection WHERE file_id = %s ORDER BY frame_number, id", [file_pk])
            for _ in cursor:
                rows += 1
    return rows, time.process_time() - started


def naive(file_pk: int, limit: int) -> tuple[int, float]:
    """A dict per row and json.dumps per line (what a serializer-per-row stream costs), ``limit`` rows."""
    from django.db import transaction

    from media_api import selectors
    from media_api.models import MediaFile
    from media_api.services.files import frame_index_for

    index = frame_index_for(MediaFile.objects.get(pk=file_pk))
    trace_ids = selectors.trace_ids_by_pk(file_pk)
    started = time.process_time()
    rows = 0
    with transaction.atomic():
        for _pk, frame, trace, x, y, w, h, conf, label, origin in \
                selectors.file_detections(file_pk)[:limit].iterator(chunk_size=2000):
            item = {"frame_number": frame, "timestamp_secs": round(index.seconds_of(frame), 6),
                    "trace_id": trace_ids[trace], "bbox": {"x": x, "y": y, "width": w, "height": h},
                    "confidence": conf, "label": label, "origin": ("detected", "tracked")[origin]}
            json.dumps(item)
            rows += 1
    return rows, time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--detections", type=int, default=5_000_000)
    parser.add_argument("--minutes", type=float, default=120)
    parser.add_argument("--naive-rows", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3, help="streams of the whole file (the median is reported)")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/momentry_bench_detections")
    args = parser.parse_args()
    ensure_database(args.database)
    os.environ["DATABASE_URL"] = args.database

    import django
    import numpy as np

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from bench.media import make_long_video
    from media_api.models import Detection, MediaFile
    from media_api.services.files import register_file
    from momentry.services import create_api_key

    call_command("migrate", verbosity=0)
    media_file = register_file(make_long_video(settings.FFMPEG_BINARY, args.minutes)).file
    MediaFile.objects.exclude(pk=media_file.pk).delete()
    have = Detection.objects.filter(file=media_file).count() if args.reuse else -1
    if have != args.detections:
        started = time.perf_counter()
        populate(media_file, args.detections, np.random.default_rng(22))
        print(f"populated {args.detections:,} boxes in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        # Measure in a fresh process: memory freed by populating would hide the stream's growth.
        os.execv(sys.executable, [sys.executable, __file__, *sys.argv[1:], "--reuse"])
    count = Detection.objects.filter(file=media_file).count()
    traces = media_file.traces.count()

    user, _ = get_user_model().objects.get_or_create(username="bench-detections")
    key = create_api_key(user, name="bench").key
    client = Client()
    url = f"/api/v1/file/{media_file.file_uuid}/detections"
    client.get(url + "?page_size=10", HTTP_X_API_KEY=key)  # warm: imports, frame index cache, key

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN SELECT id, frame_number, trace_id FROM media_api_detection WHERE file_id = %s "
                       "ORDER BY frame_number, id", [media_file.pk])
        plan = [row[0].strip() for row in cursor.fetchall()]
    streams = [stream(client, url, key) for _ in range(args.runs)]
    assert all(s["rows"] == count for s in streams), (streams, count)
    median = sorted(streams, key=lambda s: s["seconds"])[len(streams) // 2]
    floor_rows, floor_seconds = floor(args.database, media_file.pk)
    naive_rows, naive_seconds = naive(media_file.pk, args.naive_rows)
    live = over_gunicorn(args.database, url, key)
    assert live["rows"] == count, live

    # Pages following the next links (page_size 10,000), timing each.
    page_times, link, paged = [], f"{url}?page_size={PAGE}", 0
    started, cpu = time.perf_counter(), time.process_time()
    while link:
        began = time.perf_counter()
        body = client.get(link, HTTP_X_API_KEY=key).json()
        page_times.append(time.perf_counter() - began)
        paged += body["count"]
        link = body["next"]
    paged_seconds, paged_cpu = time.perf_counter() - started, time.process_time() - cpu
    assert paged == count

    rate = median["rows"] / median["seconds"]
    growths = ", ".join(f"{s['growth']:.1f}" for s in streams)
    pipelined = median["rows"] / max(median["cpu"], median["db_cpu"])
    rates = ", ".join(f"{s['rows'] / s['seconds']:,.0f}" for s in streams)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}, PostgreSQL {connection.pg_version // 10000}, "
          f"Python {platform.python_version()}, date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"data: {count:,} detections in {traces:,} traces of one {media_file.total_frames:,}-frame film "
          f"({media_file.duration / 60:.0f} min)")
    print(f"plan of the stream's query: {' / '.join(plan)}")
    print()
    print("| measure | rows/s | notes |")
    print("|---|---|---|")
    print(f"| NDJSON stream of the whole file (median of {args.runs}) | {rate:,.0f} | {median['seconds']:.1f} s, "
          f"{median['mb']:.0f} MB of text, first chunk after {median['first'] * 1000:.0f} ms, memory growth "
          f"{median['growth']:.1f} MB (runs: {growths} MB; {rates} rows/s) |")
    print(f"| the same stream per CPU-second: web process / PostgreSQL backend | "
          f"{median['rows'] / median['cpu']:,.0f} / {median['rows'] / median['db_cpu']:,.0f} | "
          f"{median['cpu']:.1f} s / {median['db_cpu']:.1f} s of CPU: on two free cores (one each, the two "
          f"run in a pipeline) the stream would run at about {pipelined:,.0f} rows/s |")
    per_cpu = median["rows"] / median["cpu"]
    print(f"| floor, per CPU-second of the client: bare psycopg server-side cursor, same rows and order, no text "
          f"| {floor_rows / floor_seconds:,.0f} | the whole stream costs {(floor_rows / floor_seconds) / per_cpu:.1f}"
          f"x the CPU of merely reading the rows |")
    print(f"| naive, per CPU-second: Django iterator, dict + json.dumps per row (first {naive_rows:,} rows) | "
          f"{naive_rows / naive_seconds:,.0f} | the stream costs {(naive_rows / naive_seconds) / per_cpu:.2f}x its "
          f"CPU ({per_cpu / (naive_rows / naive_seconds):.1f}x less) |")
    print(f"| real HTTP: gunicorn (deploy config, 1 sync worker) streaming the file to http.client | "
          f"{live['rows'] / live['seconds']:,.0f} | {live['rows']:,} rows in {live['seconds']:.1f} s; worker RSS "
          f"{live['base']:.0f} MB after warm-up, growth {live['growth']:.1f} MB |")
    print(f"| pages of {PAGE:,} following next ({len(page_times)} pages) | {paged / paged_seconds:,.0f} | "
          f"page p50 {statistics.median(page_times) * 1000:.0f} ms, first {page_times[0] * 1000:.0f} ms, "
          f"last full page {page_times[-2] * 1000:.0f} ms; {paged / paged_cpu:,.0f} rows per CPU-second of the "
          f"web process |")


if __name__ == "__main__":
    main()
