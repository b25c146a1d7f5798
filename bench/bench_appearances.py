"""Appearances of a lead in a two-hour film, and a film's shots, on PostgreSQL.

    .venv/bin/python bench/bench_appearances.py [--minutes 120] [--faces-per-frame 10] [--runs 30] \\
        [--database postgresql://postgres@127.0.0.1:5432/momentry_bench_appearances]

Data: a two-hour film at 29.97 fps (215 784 frames). Its frame index is written directly (the
timestamps of a constant-rate stream, a keyframe every 60 frames): appearances read only the
index's timestamps, and registering a real 2-hour file would only add minutes of packet scanning.
About ``--faces-per-frame`` faces per frame in traces of 2–17 s with a box on every frame (dense,
as the face pipeline makes them), 100 identities, the lead bound to a tenth of the traces; its
detections are real rows (COPY), and presence is built from them by ``refresh_presence``, as
every import does. ``VACUUM ANALYZE`` afterwards, as autovacuum would.

Measured in the same run, p50 of ``--runs`` runs each:

* :func:`identities.appearances.appearances` for the lead in the film (goal ≤ 20 ms), and the
  whole route ``GET /identity/{uuid}/appearances?file_uuid=…`` over Django's test client with an
  API key, default ``min_gap_seconds`` and ``0``;
* baseline: the same intervals computed from the lead's detection rows (their runs by the
  gaps-and-islands query presence is built with, then the same merge) — what the route would cost
  without stored presence; the answers are checked equal;
* ``GET /file/{uuid}/shots`` of the film with 2 000 stored shots (one page);
* the floor: ``GET /identity/{uuid}`` with the same key (what any authenticated request costs now).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")


def ensure_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def make_film(minutes: float):
    """A MediaFile and its frame index for a 29.97 fps film (no video bytes: nothing decodes it)."""
    import numpy as np

    from media_api.ffmpeg.index import FrameIndexData
    from media_api.models import FrameIndex, MediaFile

    frames = int(minutes * 60 * 2997 / 100)
    MediaFile.objects.all().delete()
    film = MediaFile.objects.create(file_uuid="a" * 32, path="/nonexistent/film.mp4", name="film.mp4", size=0,
                                    container="mp4", video_codec="h264", width=1920, height=1080, fps_num=2997,
                                    fps_den=100, fps=29.97, total_frames=frames, duration=frames * 100 / 2997)
    index = FrameIndexData(pts=np.arange(frames, dtype=np.int64) * 400, keyframes=np.arange(0, frames, 60,
                           dtype=np.int32), time_base=Fraction(1, 11988))
    FrameIndex.objects.create(file=film, time_base_num=1, time_base_den=11988, pts=index.pts_blob(),
                              keyframes=index.keyframes_blob())
    return film


def populate(film, identities, faces_per_frame: int, rng) -> dict[str, int]:
    """Traces (dense) of 100 identities, the lead on a tenth of them; detections with COPY."""
    from django.db import connection

    from media_api.models import Detection, Trace

    Detection.objects.all().delete()
    Trace.objects.all().delete()
    frames = film.total_frames
    weights = [0.1] + [0.9 / (len(identities) - 1)] * (len(identities) - 1)
    count = frames * faces_per_frame // 275
    traces = []
    for trace_id in range(1, count + 1):
        length = int(rng.integers(60, 500))
        start = int(rng.integers(0, frames - length))
        identity = identities[int(rng.choice(len(identities), p=weights))]
        traces.append(Trace(file=film, trace_id=trace_id, identity=identity, face_count=length,
                            start_frame=start, end_frame=start + length - 1, avg_confidence=0.8))
    Trace.objects.bulk_create(traces, batch_size=5000)
    pk_of = dict(Trace.objects.filter(file=film).values_list("trace_id", "pk"))
    written = 0
    with connection.cursor() as cursor:
        with cursor.copy("COPY media_api_detection (file_id, trace_id, frame_number, x, y, width, height, "
                         "confidence, label, origin) FROM STDIN") as copy:
            for trace in traces:
                buffer = io.StringIO()
                pk = pk_of[trace.trace_id]
                for frame in range(trace.start_frame, trace.end_frame + 1):
                    buffer.write(f"{film.pk}\t{pk}\t{frame}\t100\t80\t90\t110\t0.8\tface\t0\n")
                copy.write(buffer.getvalue())
                written += trace.face_count
        connection.connection.autocommit = True
        cursor.execute("VACUUM ANALYZE media_api_detection")
        cursor.execute("VACUUM ANALYZE media_api_trace")
    return {"traces": len(traces), "detections": written}


#: CPU seconds (this process) of the last :func:`p50`: what the load of a shared machine inflates least.
LAST_CPU = [0.0]


def p50(fn, runs: int) -> float:
    """Median wall time of ``runs`` calls (after one warm-up); the median CPU time goes to LAST_CPU."""
    fn()
    times, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    LAST_CPU[0] = statistics.median(cpu)
    return statistics.median(times)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/momentry_bench_appearances")
    parser.add_argument("--minutes", type=float, default=120)
    parser.add_argument("--faces-per-frame", type=int, default=10)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--reuse", action="store_true",
                        help="measure the data of the previous run again (same arguments) instead of writing it anew")
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

    from identities.appearances import appearances, file_intervals
    from identities.cooccurrence import FrameClock
    from identities.models import Identity
    from media_api.models import Shot, Trace
    from media_api.services.presence import compute_presence, refresh_presence
    from media_api.services.shots import replace_shots
    from momentry.services import create_api_key

    call_command("migrate", verbosity=0)
    from media_api.models import MediaFile

    film = MediaFile.objects.filter(file_uuid="a" * 32).first() if args.reuse else None
    if film is not None and Trace.objects.filter(file=film, presence__isnull=False).exists():
        lead = Identity.objects.get(name="Person 0")
        counts = {"traces": Trace.objects.filter(file=film).count(),
                  "detections": sum(Trace.objects.filter(file=film).values_list("face_count", flat=True))}
    else:
        film = make_film(args.minutes)
        Identity.objects.all().delete()
        identities = Identity.objects.bulk_create([Identity(name=f"Person {i}") for i in range(100)])
        lead = identities[0]
        started = time.perf_counter()
        counts = populate(film, identities, args.faces_per_frame, np.random.default_rng(7))
        print(f"populated {counts} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        started = time.perf_counter()
        refresh_presence(list(Trace.objects.values_list("pk", flat=True)))
        print(f"presence built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE media_api_trace")

    lead_traces = list(Trace.objects.filter(file=film, identity=lead).order_by("pk").values_list("pk", "trace_id"))
    lead_detections = sum(Trace.objects.filter(file=film, identity=lead).values_list("face_count", flat=True))

    def ours(gap: float):
        return appearances(lead.pk, [film], gap)[0]

    def baseline(gap: float):
        """The same answer without stored presence: the lead's runs from its detection rows."""
        blobs = compute_presence([pk for pk, _ in lead_traces])
        clock = FrameClock.for_file(film)
        return file_intervals(np.asarray([t for _, t in lead_traces], dtype=np.int64),
                              [blobs[pk] for pk, _ in lead_traces], clock, gap)

    found = ours(1.0)
    assert (found.intervals, found.screen_frames, found.screen_seconds) == baseline(1.0)
    selector_p50, selector_cpu = {}, {}
    for gap in (1.0, 0.0):
        selector_p50[gap] = p50(lambda g=gap: ours(g), args.runs)
        selector_cpu[gap] = LAST_CPU[0]
    baseline_p50 = p50(lambda: baseline(1.0), max(5, args.runs // 3))
    baseline_cpu = LAST_CPU[0]
    intervals = {gap: len(ours(gap).intervals) for gap in (1.0, 0.0)}

    user, _ = get_user_model().objects.get_or_create(username="bench-appearances")
    key = create_api_key(user, name="bench").key
    client = Client()

    def route(url: str) -> tuple[str, int]:
        """``"wall (CPU)"`` p50 of the route, and its answer's size."""
        response = client.get(url, HTTP_X_API_KEY=key)
        assert response.status_code == 200, response.content[:300]
        wall = p50(lambda: client.get(url, HTTP_X_API_KEY=key), args.runs)
        return f"{ms(wall)} | {ms(LAST_CPU[0])}", len(response.content)

    base = f"/api/v1/identity/{lead.identity_uuid}/appearances?file_uuid={film.file_uuid}"
    route_default, size_default = route(base)
    route_zero, size_zero = route(base + "&min_gap_seconds=0")
    # The floor on this machine now: an authenticated request that reads one identity (the load of the
    # other jobs on a shared machine shows up here first).
    floor, _ = route(f"/api/v1/identity/{lead.identity_uuid}")

    rng = np.random.default_rng(11)
    cuts = np.sort(rng.choice(np.arange(1, film.total_frames), 1999, replace=False))
    replace_shots(film, cuts.tolist())
    assert Shot.objects.filter(file=film).count() == 2000
    shots_route, shots_size = route(f"/api/v1/file/{film.file_uuid}/shots")

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}, PostgreSQL {connection.pg_version // 10000}, "
          f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, p50 of {args.runs} runs")
    print(f"data: the film {film.total_frames:,} frames, {counts['traces']:,} traces, {counts['detections']:,} "
          f"detections; the lead: {len(lead_traces):,} traces, {lead_detections:,} detections, on screen "
          f"{found.screen_frames:,} frames ({found.screen_seconds / 60:.1f} min)")
    print()
    print("| measure | p50 wall | p50 CPU (this process) |")
    print("|---|---|---|")
    for gap in (1.0, 0.0):
        print(f"| `appearances()`, min_gap_seconds={gap:g} ({intervals[gap]:,} intervals) | {ms(selector_p50[gap])} "
              f"| {ms(selector_cpu[gap])} |")
    print(f"| `GET /identity/{{uuid}}/appearances?file_uuid=…` (test client, API key; {size_default:,} bytes) "
          f"| {route_default} |")
    print(f"| the same, `min_gap_seconds=0` ({size_zero:,} bytes) | {route_zero} |")
    print(f"| floor: `GET /identity/{{uuid}}` (one identity, the same key) | {floor} |")
    print(f"| baseline: the same intervals from the lead's detection rows | {ms(baseline_p50)} "
          f"({baseline_p50 / selector_p50[1.0]:.0f}× `appearances()`) | {ms(baseline_cpu)} |")
    print(f"| `GET /file/{{uuid}}/shots`, 2 000 shots, one page ({shots_size:,} bytes) | {shots_route} |")


if __name__ == "__main__":
    main()
