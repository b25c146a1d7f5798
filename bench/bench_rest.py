"""REST list routes at scale (goal: < 200 ms server time per page, constant queries).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/momentry_bench_rest \\
        .venv/bin/python bench/bench_rest.py [--traces 100000] [--detections 1000000]

Baseline in the same run: the same pages with 1/100 of the data. A ratio near 1 shows a
page costs the same whatever the data size; the query count must not change. Requests go
through Django's test client with an X-API-Key (the real credential path, scope included).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")


def _populate(media_file, traces: int, detections: int, identities) -> None:
    """``traces`` traces (two thirds bound) and ``detections`` boxes in trace 0."""
    from media_api.models import Detection, Trace

    Trace.objects.filter(file=media_file).delete()
    Trace.objects.bulk_create(
        [Trace(file=media_file, trace_id=i, face_count=i % 50 + 1, start_frame=i % 200, end_frame=i % 200 + 5,
               avg_confidence=0.9, identity=identities[i % len(identities)] if i % 3 else None)
         for i in range(traces)], batch_size=5000)
    if not traces:
        return
    big = Trace.objects.get(file=media_file, trace_id=0)
    frames = media_file.total_frames
    batch = []
    for i in range(detections):
        batch.append(Detection(file=media_file, trace=big, frame_number=i % frames, x=10, y=10, width=50, height=50,
                               confidence=0.8))
        if len(batch) == 20000:
            Detection.objects.bulk_create(batch)
            batch = []
    Detection.objects.bulk_create(batch)
    Trace.objects.filter(pk=big.pk).update(face_count=detections)


def _time(client, url: str, key: str, runs: int = 7) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times, queries = [], 0
    client.get(url, HTTP_X_API_KEY=key)  # warm caches (frame index)
    for _ in range(runs):
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            response = client.get(url, HTTP_X_API_KEY=key)
            times.append(time.perf_counter() - start)
        assert response.status_code == 200, (url, response.content[:200])
        queries = len(ctx.captured_queries)
    return statistics.median(times), queries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--detections", type=int, default=1_000_000)
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from identities.models import Identity
    from media_api.services.files import register_file
    from momentry.services import create_api_key

    call_command("migrate", verbosity=0)
    media_file = register_file(ROOT / "demo/media/face_recognition_short_hamilton_clip.mp4").file
    Identity.objects.filter(name__startswith="Bench person").delete()
    identities = Identity.objects.bulk_create(
        [Identity(name=f"Bench person {i}", metadata={"aliases": [f"alias {i}"]}) for i in range(2000)])
    user, _ = get_user_model().objects.get_or_create(username="bench-rest")
    key = create_api_key(user, name="bench").key
    client = Client()
    u = media_file.file_uuid
    pages = {
        "files": "/api/v1/files",
        "traces, by trace_id": f"/api/v1/file/{u}/traces",
        "traces, -face_count, page 50": f"/api/v1/file/{u}/traces?sort=-face_count&page=50&page_size=100",
        "traces, unbound": f"/api/v1/file/{u}/traces?unbound=true&sort=start_frame",
        "trace faces, page 1": f"/api/v1/file/{u}/trace/0/faces?page_size=100",
        "trace faces, page 100": f"/api/v1/file/{u}/trace/0/faces?page_size=100&page=100",
        "identities (counts)": "/api/v1/identities?page_size=100",
        "identities, search alias": "/api/v1/identities?search=alias+17",
        "identity files": f"/api/v1/identity/{identities[1].identity_uuid}/files",
    }
    sizes = [(args.traces // 100, args.detections // 100), (args.traces, args.detections)]
    results = {}
    for traces, detections in sizes:
        started = time.perf_counter()
        _populate(media_file, traces, detections, identities)
        print(f"populated {traces} traces, {detections} detections in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
        for name, url in pages.items():
            results[(name, traces)] = _time(client, url, key)

    (t_small, d_small), (t_big, d_big) = sizes
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {django.db.connection.vendor}, "
          f"date {time.strftime('%Y-%m-%d')}")
    print(f"| route | {t_small:,} traces / {d_small:,} det. | {t_big:,} traces / {d_big:,} det. | ratio | queries |")
    print("|---|---|---|---|---|")
    for name in pages:
        small, q_small = results[(name, t_small)]
        big, q_big = results[(name, t_big)]
        print(f"| {name} | {small * 1000:.1f} ms | {big * 1000:.1f} ms | {big / small:.2f} | {q_small} → {q_big} |")
    _populate(media_file, 0, 0, identities)
    Identity.objects.filter(name__startswith="Bench person").delete()


if __name__ == "__main__":
    main()
