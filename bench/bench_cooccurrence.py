"""Co-occurrence on PostgreSQL with 5 million detections (goal: p50 ≤ 20 ms).

    .venv/bin/python bench/bench_cooccurrence.py [--detections 5000000] \\
        [--database postgresql://postgres@127.0.0.1:5432/momentry_bench_cooc]

Data: a 20-minute film (the looped Hamilton clip, registered for real, 36 000 frames) with
~15 faces per frame on average — 100 identities in traces of 2–20 s with a box on every frame,
the two leads bound to a tenth of the traces each — plus other files filling the detection
table up to ``--detections``. ``VACUUM ANALYZE`` afterwards, as autovacuum would.

Measured in the same run, p50 of 30 runs each:

* the query (:func:`identities.cooccurrence.first_cooccurrence`) for the two leads and for
  pairs of minor characters;
* the baseline: the first version of the query, which intersected *all* detections of
  both identities in the file instead of only those inside overlapping trace spans;
* the whole route over Django's test client with an API key, representative faces stored.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")

NAIVE_SQL = (
    "WITH a AS (SELECT d.frame_number AS frame, MIN(t.trace_id) AS trace_id FROM media_api_trace t "
    "JOIN media_api_detection d ON d.trace_id = t.id WHERE t.identity_id = %s AND t.file_id = %s "
    "GROUP BY d.frame_number), "
    "b AS (SELECT d.frame_number AS frame, MIN(t.trace_id) AS trace_id FROM media_api_trace t "
    "JOIN media_api_detection d ON d.trace_id = t.id WHERE t.identity_id = %s AND t.file_id = %s "
    "GROUP BY d.frame_number) "
    "SELECT a.frame, a.trace_id, b.trace_id, COUNT(*) OVER () FROM a JOIN b ON a.frame = b.frame "
    "ORDER BY a.frame LIMIT 1"
)


def ensure_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def populate(media_file, identities, others, total_detections: int, rng) -> dict[str, int]:
    """Traces and detections, written with COPY; returns counts."""
    from django.db import connection

    from media_api.models import Detection, Trace

    Detection.objects.all().delete()
    Trace.objects.all().delete()
    frames = media_file.total_frames
    weights = [0.1, 0.1] + [0.8 / (len(identities) - 2)] * (len(identities) - 2)
    traces: list = []

    def add_traces(file, count: int, frames_in_file: int, bind: bool) -> None:
        for trace_id in range(1, count + 1):
            length = int(rng.integers(50, 500))
            start = int(rng.integers(0, frames_in_file - length))
            identity = identities[int(rng.choice(len(identities), p=weights))] if bind else None
            traces.append(Trace(file=file, trace_id=trace_id, identity=identity, face_count=length,
                                start_frame=start, end_frame=start + length - 1, avg_confidence=0.8))

    main_detections = frames * 15
    add_traces(media_file, main_detections // 275, frames, True)
    rest = max(0, total_detections - main_detections)
    for other in others:
        add_traces(other, rest // len(others) // 275, 200_000, False)
    Trace.objects.bulk_create(traces, batch_size=5000)
    pk_of = dict(((f, t), pk) for pk, f, t in Trace.objects.values_list("pk", "file_id", "trace_id"))
    written = 0
    with connection.cursor() as cursor:
        with cursor.copy("COPY media_api_detection (file_id, trace_id, frame_number, x, y, width, height, "
                         "confidence, label) FROM STDIN") as copy:
            for trace in traces:
                pk = pk_of[(trace.file_id, trace.trace_id)]
                buffer = io.StringIO()
                for frame in range(trace.start_frame, trace.end_frame + 1):
                    buffer.write(f"{trace.file_id}\t{pk}\t{frame}\t100\t80\t90\t110\t0.8\tface\n")
                copy.write(buffer.getvalue())
                written += trace.face_count
        connection.connection.autocommit = True
        cursor.execute("VACUUM ANALYZE media_api_detection")
        cursor.execute("VACUUM ANALYZE media_api_trace")
    return {"traces": len(traces), "detections": written}


def p50(fn, runs: int = 30) -> float:
    fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--detections", type=int, default=5_000_000)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/momentry_bench_cooc")
    parser.add_argument("--minutes", type=float, default=20)
    args = parser.parse_args()
    ensure_database(args.database)
    os.environ["DATABASE_URL"] = args.database

    import django
    import numpy as np

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from bench.media import make_long_video
    from identities.cooccurrence import first_cooccurrence
    from identities.models import Identity
    from media_api.models import MediaFile, Trace
    from media_api.services.files import register_file
    from momentry.services import create_api_key

    call_command("migrate", verbosity=0)
    from django.conf import settings

    media_file = register_file(make_long_video(settings.FFMPEG_BINARY, args.minutes)).file
    MediaFile.objects.exclude(pk=media_file.pk).delete()
    others = [MediaFile.objects.create(file_uuid=f"{i:032x}", path="/nonexistent", name=f"other {i}", size=0,
                                       container="mp4", video_codec="h264", width=640, height=360, fps_num=25,
                                       fps_den=1, fps=25.0, total_frames=200_000, duration=8000.0)
              for i in range(1, 10)]
    Identity.objects.all().delete()
    identities = Identity.objects.bulk_create([Identity(name=f"Person {i}") for i in range(100)])
    started = time.perf_counter()
    counts = populate(media_file, identities, others, args.detections, np.random.default_rng(7))
    print(f"populated {counts} in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    lead_a, lead_b = identities[0], identities[1]
    minor = [(identities[i], identities[i + 1]) for i in range(10, 20, 2)]

    def ours(a, b):
        return lambda: first_cooccurrence(media_file.pk, a.pk, b.pk)

    def naive(a, b):
        def run():
            with connection.cursor() as cursor:
                cursor.execute(NAIVE_SQL, [a.pk, media_file.pk, b.pk, media_file.pk])
                return cursor.fetchone()
        return run

    leads = first_cooccurrence(media_file.pk, lead_a.pk, lead_b.pk)
    assert naive(lead_a, lead_b)()[0] == leads.frame_number and naive(lead_a, lead_b)()[3] == leads.total_frames
    lead_detections = Trace.objects.filter(file=media_file, identity__in=[lead_a, lead_b]).values_list(
        "face_count", flat=True)
    rows = [("two leads", p50(ours(lead_a, lead_b)), p50(naive(lead_a, lead_b)), leads.total_frames,
             sum(lead_detections))]
    for a, b in minor[:3]:
        found = first_cooccurrence(media_file.pk, a.pk, b.pk)
        detections = sum(Trace.objects.filter(file=media_file, identity__in=[a, b]).values_list("face_count",
                                                                                             flat=True))
        rows.append((f"{a.name} / {b.name}", p50(ours(a, b)), p50(naive(a, b)),
                     found.total_frames if found else 0, detections))

    # The whole route, faces stored (as after prewarm).
    user, _ = get_user_model().objects.get_or_create(username="bench-cooc")
    key = create_api_key(user, name="bench").key
    client = Client()
    url = f"/api/v1/file/{media_file.file_uuid}/identities/{lead_a.identity_uuid}/co-occur-with/{lead_b.identity_uuid}"
    assert client.get(url, HTTP_X_API_KEY=key).status_code == 200
    route = p50(lambda: client.get(url, HTTP_X_API_KEY=key))

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, PostgreSQL "
          f"{connection.pg_version // 10000}, date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"data: {counts['detections']:,} detections in {counts['traces']:,} traces; the film: "
          f"{media_file.total_frames:,} frames, {Trace.objects.filter(file=media_file).count():,} traces")
    print("| pair | detections of the pair | shared frames | query p50 | naive baseline p50 | baseline / ours |")
    print("|---|---|---|---|---|---|")
    for name, mine, base, shared, detections in rows:
        print(f"| {name} | {detections:,} | {shared:,} | {mine * 1000:.1f} ms | {base * 1000:.1f} ms "
              f"| {base / mine:.1f}× |")
    print(f"whole route (test client, API key, faces stored): p50 {route * 1000:.1f} ms")


if __name__ == "__main__":
    main()
