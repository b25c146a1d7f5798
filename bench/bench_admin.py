"""Admin trace changelist with 100 000 traces (goal: < 1 s server time, constant queries).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/momentry_bench_admin \
        .venv/bin/python bench/bench_admin.py [--traces 100000]

Baseline in the same run: the same page with 1 000 traces. A ratio near 1 shows that the
page costs the same whatever the number of traces; the query count must not change.
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


def _populate(media_file, n: int, identities) -> None:
    from media_api.models import Trace

    Trace.objects.filter(file=media_file).delete()
    batch = [Trace(file=media_file, trace_id=i, face_count=i % 50 + 1, start_frame=i % 100, end_frame=i % 100 + 3,
                   avg_confidence=0.9, identity=identities[i % len(identities)] if i % 3 else None)
             for i in range(n)]
    Trace.objects.bulk_create(batch, batch_size=5000)


def _time_page(client, url: str, runs: int = 7) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    queries = 0
    for _ in range(runs):
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.status_code
        queries = len(ctx.captured_queries)
    return statistics.median(times), queries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=100_000)
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from identities.models import Identity
    from media_api.services.files import register_file

    call_command("migrate", verbosity=0)
    media_file = register_file(ROOT / "demo/media/face_recognition_short_hamilton_clip.mp4").file
    Identity.objects.filter(name__startswith="Bench person").delete()
    identities = Identity.objects.bulk_create([Identity(name=f"Bench person {i}") for i in range(500)])
    user, _ = get_user_model().objects.get_or_create(username="bench-staff", defaults={"is_staff": True,
                                                                                        "is_superuser": True})
    client = Client()
    client.force_login(user)

    pages = {
        "trace list": "/admin/media_api/trace/",
        "trace list, unbound": "/admin/media_api/trace/?identity=unbound",
        "trace list, search": "/admin/media_api/trace/?q=Bench+person+7",
        "identity list": "/admin/identities/identity/",
    }
    results = {}
    for n in (1_000, args.traces):
        _populate(media_file, n, identities)
        for name, url in pages.items():
            results[(name, n)] = _time_page(client, url)

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {django.db.connection.vendor}, "
          f"date {time.strftime('%Y-%m-%d')}")
    print(f"| page | 1 000 traces | {args.traces:,} traces | ratio | queries |")
    print("|---|---|---|---|---|")
    for name in pages:
        small, q_small = results[(name, 1_000)]
        big, q_big = results[(name, args.traces)]
        print(f"| {name} | {small * 1000:.0f} ms | {big * 1000:.0f} ms | {big / small:.2f} | {q_small} → {q_big} |")
    _populate(media_file, 0, identities)
    Identity.objects.filter(name__startswith="Bench person").delete()


if __name__ == "__main__":
    main()
