"""Co-occurrence and the cast graph on PostgreSQL with 5 million detections.

    .venv/bin/python bench/bench_cooccurrence.py [--detections 5000000] [--runs 30] [--naive] \\
        [--database postgresql://postgres@127.0.0.1:5432/momentry_bench_cooc]

Data: a 20-minute film (the looped Hamilton clip, registered for real, 36 000 frames) with
~15 faces per frame on average — 100 identities in traces of 2–20 s with a box on every frame
(dense traces, as the face pipeline makes them), the two leads bound to a tenth of the traces
each — plus other files filling the detection table up to ``--detections``. Presence is built
for every trace the way ``manage.py rebuild_presence`` does (timed). ``VACUUM ANALYZE``
afterwards, as autovacuum would.

Measured in the same run, p50 of ``--runs`` runs each (goals from the issue):

* one pair in one file: :func:`identities.cooccurrence.first_cooccurrence` (from presence)
  against the baseline, the previous query over detection rows (:data:`DETECTIONS_SQL`), for
  the two leads (goal p50 ≤ 5 ms, not growing with detections) and minor pairs; the whole
  route over Django's test client with an API key, faces stored;
* the cast graph of the film (100 identities, ~2 000 traces): the computation and the route
  (goal ≤ 200 ms), against the baseline of asking the old query for each of the 4 950 pairs;
  then again with a fifth of the traces unbound and ``include_unbound=true``;
* the cost presence adds to ``refresh_trace_summaries`` (every import pays it), for the film's
  traces; ``--naive`` also times the first version of the query (about 15 s per call).
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

#: The query the route used before presence (one statement over the detections inside overlapping
#: trace spans): the baseline. Parameters: file, identity a, identity b.
DETECTIONS_SQL = (
    "WITH pairs AS ("
    "  SELECT ta.id AS a_pk, ta.trace_id AS a_id, tb.id AS b_pk, tb.trace_id AS b_id,"
    "    CASE WHEN ta.start_frame > tb.start_frame THEN ta.start_frame ELSE tb.start_frame END AS lo,"
    "    CASE WHEN ta.end_frame < tb.end_frame THEN ta.end_frame ELSE tb.end_frame END AS hi"
    "  FROM media_api_trace ta JOIN media_api_trace tb ON tb.file_id = ta.file_id"
    "  WHERE ta.file_id = %s AND ta.identity_id = %s AND tb.identity_id = %s"
    "    AND tb.start_frame <= ta.end_frame AND ta.start_frame <= tb.end_frame"
    "), window_a AS (SELECT a_pk AS pk, a_id AS trace_id, MIN(lo) AS lo, MAX(hi) AS hi FROM pairs"
    "  GROUP BY a_pk, a_id"
    "), window_b AS (SELECT b_pk AS pk, b_id AS trace_id, MIN(lo) AS lo, MAX(hi) AS hi FROM pairs"
    "  GROUP BY b_pk, b_id"
    "), marks AS ("
    "  SELECT d.frame_number AS frame, w.trace_id AS a_id, NULL AS b_id FROM window_a w"
    "  JOIN media_api_detection d ON d.trace_id = w.pk AND d.frame_number BETWEEN w.lo AND w.hi"
    "  UNION ALL"
    "  SELECT d.frame_number, NULL, w.trace_id FROM window_b w"
    "  JOIN media_api_detection d ON d.trace_id = w.pk AND d.frame_number BETWEEN w.lo AND w.hi"
    ") "
    "SELECT frame, MIN(a_id), MIN(b_id), COUNT(*) OVER () FROM marks GROUP BY frame "
    "HAVING MIN(a_id) IS NOT NULL AND MIN(b_id) IS NOT NULL ORDER BY frame LIMIT 1"
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
                         "confidence, label, origin) FROM STDIN") as copy:
            for trace in traces:
                pk = pk_of[(trace.file_id, trace.trace_id)]
                buffer = io.StringIO()
                for frame in range(trace.start_frame, trace.end_frame + 1):
                    buffer.write(f"{trace.file_id}\t{pk}\t{frame}\t100\t80\t90\t110\t0.8\tface\t0\n")
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


def sql(query: str, params: list):
    from django.db import connection

    def run():
        with connection.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchone()
    return run


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--detections", type=int, default=5_000_000)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/momentry_bench_cooc")
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--naive", action="store_true", help="also time the first version (~15 s a call)")
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
    from identities.cooccurrence import cast_graph, first_cooccurrence
    from identities.models import Identity
    from media_api.models import MediaFile, Trace
    from media_api.services.files import register_file
    from media_api.services.presence import refresh_presence
    from media_api.services.traces import refresh_trace_summaries
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
    all_pks = list(Trace.objects.order_by("pk").values_list("pk", flat=True))
    started = time.perf_counter()
    refresh_presence(all_pks)  # what manage.py rebuild_presence does
    rebuild = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE media_api_trace")
    film_traces = list(Trace.objects.filter(file=media_file).values_list("pk", flat=True))
    print(f"presence of {len(all_pks):,} traces built in {rebuild:.1f} s", file=sys.stderr)

    # --- one pair ----------------------------------------------------------------------------
    lead_a, lead_b = identities[0], identities[1]
    minor = [(identities[i], identities[i + 1]) for i in range(10, 16, 2)]

    def ours(a, b):
        return lambda: first_cooccurrence(media_file.pk, a.pk, b.pk)

    def baseline(a, b):
        return sql(DETECTIONS_SQL, [media_file.pk, a.pk, b.pk])

    rows = []
    for label, a, b in [("the two leads", lead_a, lead_b)] + [(f"{a.name} / {b.name}", a, b) for a, b in minor]:
        found, old = first_cooccurrence(media_file.pk, a.pk, b.pk), baseline(a, b)()
        assert (found is None and old is None) or (found.frame_number, found.trace_id_a, found.trace_id_b,
                                                   found.total_frames) == tuple(old), (found, old)
        detections = sum(Trace.objects.filter(file=media_file, identity__in=[a, b]).values_list("face_count",
                                                                                             flat=True))
        traces = Trace.objects.filter(file=media_file, identity__in=[a, b]).count()
        rows.append((label, traces, detections, found.total_frames if found else 0, p50(ours(a, b), args.runs),
                     p50(baseline(a, b), args.runs)))
    naive = p50(sql(NAIVE_SQL, [lead_a.pk, media_file.pk, lead_b.pk, media_file.pk]), 3) if args.naive else None

    user, _ = get_user_model().objects.get_or_create(username="bench-cooc")
    key = create_api_key(user, name="bench").key
    client = Client()

    def route(url: str) -> float:
        response = client.get(url, HTTP_X_API_KEY=key)
        assert response.status_code == 200, response.content[:300]
        return p50(lambda: client.get(url, HTTP_X_API_KEY=key), args.runs)

    pair_url = (f"/api/v1/file/{media_file.file_uuid}/identities/{lead_a.identity_uuid}/co-occur-with/"
                f"{lead_b.identity_uuid}")
    pair_route = route(pair_url)

    # --- the cast graph ------------------------------------------------------------------------
    graph = cast_graph(media_file)
    members, pairs = len(graph.members), len(graph)
    graph_p50 = p50(lambda: cast_graph(media_file), args.runs)
    graph_route = route(f"/api/v1/file/{media_file.file_uuid}/cooccurrence")
    partners_route = route(f"/api/v1/file/{media_file.file_uuid}/cooccurrence?identity={lead_a.identity_uuid}")
    started = time.perf_counter()
    pks = [i.pk for i in identities]
    for position, a in enumerate(pks):  # today: one request per pair
        for b in pks[position + 1:]:
            sql(DETECTIONS_SQL, [media_file.pk, a, b])()
    per_pair_baseline = time.perf_counter() - started

    # Presence's share of refresh_trace_summaries (what every import and edit pays), the film's traces.
    started = time.perf_counter()
    refresh_trace_summaries(film_traces)
    with_presence = time.perf_counter() - started
    started = time.perf_counter()
    refresh_presence(film_traces)
    presence_only = time.perf_counter() - started

    # A fifth of the film's traces unbound (no embeddings: each is a person of its own), include_unbound.
    Trace.objects.filter(pk__in=film_traces[::5]).update(identity=None)
    unbound_graph = cast_graph(media_file, include_unbound=True)
    unbound_p50 = p50(lambda: cast_graph(media_file, include_unbound=True), args.runs)
    unbound_route = route(f"/api/v1/file/{media_file.file_uuid}/cooccurrence?include_unbound=true")

    film = Trace.objects.filter(file=media_file).count()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}, PostgreSQL {connection.pg_version // 10000}, "
          f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, p50 of {args.runs} runs")
    print(f"data: {counts['detections']:,} detections in {counts['traces']:,} traces; the film: "
          f"{media_file.total_frames:,} frames, {film:,} traces; presence of all traces built in {rebuild:.1f} s")
    print()
    print("| pair | traces | detections | shared frames | presence p50 | baseline p50 (detections) "
          "| baseline / presence |")
    print("|---|---|---|---|---|---|---|")
    for label, traces, detections, shared, mine, base in rows:
        print(f"| {label} | {traces:,} | {detections:,} | {shared:,} | {ms(mine)} | {ms(base)} | {base / mine:.0f}× |")
    if naive is not None:
        print(f"first version (all detections of both, joined), the leads: p50 of 3 {ms(naive)}")
    print(f"whole pair route, the leads (test client, API key, faces stored): p50 {ms(pair_route)}")
    print()
    print(f"cast graph: {members} people, {pairs:,} pairs sharing frames")
    print(f"| measure | p50 |\n|---|---|\n| cast_graph() | {ms(graph_p50)} |\n"
          f"| GET …/cooccurrence (page 1) | {ms(graph_route)} |\n"
          f"| GET …/cooccurrence?identity=<lead> | {ms(partners_route)} |\n"
          f"| baseline: the previous query for each of the {len(pks) * (len(pks) - 1) // 2:,} pairs (once) "
          f"| {ms(per_pair_baseline)} ({per_pair_baseline / graph_route:.0f}× the route) |\n"
          f"| include_unbound, {len(unbound_graph.members)} people ({len(film_traces[::5])} traces unbound): "
          f"cast_graph() | {ms(unbound_p50)} |\n"
          f"| include_unbound: GET …/cooccurrence?include_unbound=true | {ms(unbound_route)} |")
    print()
    film_detections = sum(Trace.objects.filter(file=media_file).values_list("face_count", flat=True))
    print(f"refresh_trace_summaries of the film's {len(film_traces):,} traces ({film_detections:,} "
          f"detections): {ms(with_presence)}, of which presence {ms(presence_only)} "
          f"({presence_only / with_presence:.0%})")


if __name__ == "__main__":
    main()
