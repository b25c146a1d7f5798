"""Search by photo at scale: the search part with 100 000 trace vectors, against a naive baseline.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/momentry_bench_search .venv/bin/python bench/bench_face_search.py
    [--traces 100000] [--runs 50]

Data (deterministic, seed 11): ``--traces`` traces in 40 two-hour files (25 fps), 4 000 people whose
traces carry 1-4 exemplar vectors (mean 2.45: the pipeline keeps up to 3 faces a track, re-embedding up
to 4) and their mean, 128-d SFace-like unit vectors drawn around the person's own direction (same-person
distances ~0.5, different people ~1.4, as the demo's real SFace vectors are), 5 % of traces with no
vector (profiles) and 2 % with a vector of the old dlib model (never compared); a quarter of the
traces bound to 1 000 named people, the rest unbound; 1 % hidden.

Measured in the same run (median and 95th percentile of ``--runs`` searches, each for a new face
near a random person):

* **cold load**: this process's first search reads every vector into the in-process matrix;
* **search part** (:func:`media_api.services.face_search.match`: the stamp query that checks the copy is
  current, the matrix product, the candidates read back from the database with identity and scope),
  for a whole-archive caller, a caller scoped to 5 of the 40 files, and three faces at once;
* **stamp query** alone (what every search pays to know its copy is current);
* **baseline**: the naive search the suggestions route does (read every comparable vector from the
  database on each search, then numpy distances), on the same rows and queries — ratio reported;
* recall check: the search's identities are exactly those of a brute-force search in fp64.
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

FILES = 40
FPS = 25
FRAMES = 2 * 3600 * FPS
PEOPLE = 4000
NAMED = 1000
SEED = 11
PREFIX = "bench-search-"
SAME_PERSON_SPREAD = 0.045  # per-dimension noise: a trace ~0.45 from its person's direction
LOOK_SPREAD = 0.03  # an exemplar ~0.33 from its trace's centre


def _vectors(rng, directions, people, spread=SAME_PERSON_SPREAD):
    import numpy as np

    vectors = directions[people] + rng.normal(scale=spread, size=(len(people), 128))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype("<f4")


def populate(traces: int):
    """Replace the bench files with ``traces`` synthetic traces (see the module docstring)."""
    import numpy as np
    from django.db import connection, transaction

    from identities.models import Identity
    from media_api.faces import exemplars
    from media_api.faces.embeddings import DLIB_MODEL_NAME, MODEL_NAME, normalise
    from media_api.models import MediaFile, Trace

    rng = np.random.default_rng(SEED)
    directions = rng.normal(size=(PEOPLE, 128))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    with transaction.atomic():
        MediaFile.objects.filter(name__startswith=PREFIX).delete()
        Identity.objects.filter(name__startswith="Bench search ").delete()
        files = [MediaFile.objects.create(
            file_uuid=f"{0x5EA40000 + n:08x}" + "0" * 24, path=f"/nonexistent/{PREFIX}{n}.mp4",
            name=f"{PREFIX}{n}.mp4", size=1, container="mp4", video_codec="h264", width=1920, height=1080,
            fps_num=FPS, fps_den=1, fps=FPS, total_frames=FRAMES, duration=FRAMES / FPS) for n in range(FILES)]
        named = Identity.objects.bulk_create([Identity(name=f"Bench search person {n:04d}") for n in range(NAMED)])
        people = rng.integers(0, PEOPLE, size=traces)
        # Each trace keeps 1-4 exemplar vectors (the pipeline embeds up to 3 faces a track, re-embedding up to
        # 4): a trace's looks lie closer together than the person's across traces. Its embedding is their mean.
        counts = rng.choice([1, 2, 3, 4], p=[0.2, 0.3, 0.35, 0.15], size=traces)
        centres = _vectors(rng, directions, people).astype(np.float64)
        owner = np.repeat(np.arange(traces), counts)
        every_look = _vectors(rng, centres, owner, LOOK_SPREAD)
        looks = np.split(every_look, np.cumsum(counts)[:-1])
        vectors = np.vstack([normalise(look.mean(axis=0)) for look in looks]).astype("<f4")
        kind = rng.random(size=traces)  # < 0.05: no vector; < 0.07: dlib's
        rows = []
        for number in range(traces):
            person = int(people[number])
            start = int(rng.integers(0, FRAMES - 400))
            has = kind[number] >= 0.05
            rows.append(Trace(
                file=files[number % FILES], trace_id=number // FILES + 1, face_count=50, start_frame=start,
                end_frame=start + 300, avg_confidence=0.9,
                identity=named[person] if person < NAMED and rng.random() < 0.8 else None,
                embedding=vectors[number].tobytes() if has else None,
                exemplars=exemplars.pack(looks[number]) if has else None,
                embedding_model=(DLIB_MODEL_NAME if kind[number] < 0.07 else MODEL_NAME) if has else "",
                ignored=bool(rng.random() < 0.01)))
        Trace.objects.bulk_create(rows, batch_size=5000)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE media_api_trace")
    return files, directions


CPU: dict[int, list[float]] = {}


def _timed(function, runs: int) -> tuple[list[float], object]:
    """Wall-clock seconds of each run (and this process's CPU seconds in CPU[id(times)])."""
    times, cpu, result = [], [], None
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = function()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    CPU[id(times)] = cpu
    return times, result


def _p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def naive(query, files=None):
    """The baseline: every comparable trace's exemplars from the database on each search, then numpy (what the
    suggestions route does for one trace): identities by their closest exemplar."""
    import numpy as np

    from identities.suggestions import comparable
    from media_api.faces import exemplars
    from media_api.models import Trace

    rows = Trace.objects.filter(comparable(), ignored=False)
    if files is not None:
        rows = rows.filter(file_id__in=[int(f) for f in files])
    sets, owners, identity_of = [], [], []
    for identity_id, packed, blob in rows.order_by().values_list("identity_id", "exemplars", "embedding"):
        matrix = exemplars.of_trace(packed, blob)
        owners.append(np.full(len(matrix), len(identity_of)))
        identity_of.append(identity_id)
        sets.append(matrix)
    query = np.asarray(query, dtype=np.float64)[None, :]
    distances = exemplars.set_distances(query, np.vstack(sets).astype(np.float64), np.concatenate(owners),
                                        len(identity_of))
    best: dict[int, float] = {}
    for identity_id, distance in zip(identity_of, distances.tolist(), strict=True):
        if identity_id is not None and distance < best.get(identity_id, 9.0):
            best[identity_id] = distance
    return sorted(best.items(), key=lambda item: item[1])[:10]


def http_request(results: dict, runs: int) -> None:
    """The whole route for context: a face cut from a demo frame, through Django's test client (staff session),
    with the Server-Timing parts (decode, detect, search) of each answer."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from media_api.ffmpeg.images import Box
    from media_api.services.files import register_file
    from media_api.services.thumbnails import frame_thumbnail

    hamilton = register_file(ROOT / "demo" / "media" / "face_recognition_short_hamilton_clip.mp4").file
    photo = frame_thumbnail(hamilton, 177, Box(130, 0, 230, 300))  # the performer, medium shot
    user, _ = get_user_model().objects.get_or_create(username="bench-search", defaults={"is_staff": True})
    client = Client()
    client.force_login(user)
    parts: dict[str, list[float]] = {"decode": [], "detect": [], "search": [], "whole request": []}
    for _ in range(runs):
        import io

        handle = io.BytesIO(photo)
        handle.name = "photo.jpg"
        started = time.perf_counter()
        response = client.post("/api/v1/faces/search", {"image": handle})
        parts["whole request"].append(time.perf_counter() - started)
        assert response.status_code == 200, response.content
        for item in response["Server-Timing"].split(", "):
            name, duration = item.split(";dur=")
            parts[name].append(float(duration) / 1000)
    faces = len(response.json()["faces"])
    for name, times in parts.items():
        results[f"HTTP: {name}"] = times
        print(f"  HTTP ({faces} face(s) in a {len(photo) // 1024} KB JPEG), {name}: p50 "
              f"{statistics.median(times) * 1000:.1f} ms, p95 {_p(times, 0.95) * 1000:.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="reuse the bench rows of an earlier run")
    args = parser.parse_args()

    import django

    django.setup()
    import numpy as np
    from django.core.management import call_command
    from django.db import connection

    from media_api.models import Trace
    from media_api.selectors import scope_filter
    from media_api.services import face_search

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    started = time.perf_counter()
    if args.keep:
        from media_api.models import MediaFile

        files = list(MediaFile.objects.filter(name__startswith=PREFIX).order_by("pk"))
        rng = np.random.default_rng(SEED)
        directions = rng.normal(size=(PEOPLE, 128))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    else:
        files, directions = populate(args.traces)
    print(f"populated {Trace.objects.count()} traces in {time.perf_counter() - started:.1f} s "
          f"({connection.vendor})", flush=True)
    rng = np.random.default_rng(SEED + 1)

    def new_face():
        return _vectors(rng, directions, rng.integers(0, NAMED, size=1))[0].astype(np.float32)

    face_search.forget_index()
    cold, index = _timed(face_search.current_index, 1)
    rows = len(index)
    traces_in = len(np.unique(index.trace_pks))
    print(f"cold load: {cold[0] * 1000:.0f} ms for {rows} vectors of {traces_in} traces "
          f"({index.matrix.nbytes / 1e6:.1f} MB)", flush=True)

    results = {}

    def measure(name, function, runs=args.runs):
        times, _ = _timed(function, runs)
        results[name] = times
        print(f"  {name}: p50 {statistics.median(times) * 1000:.1f} ms, p95 {_p(times, 0.95) * 1000:.1f} ms "
              f"(CPU p50 {statistics.median(CPU[id(times)]) * 1000:.1f} ms)", flush=True)

    scoped_files = np.asarray([f.pk for f in files[:5]], dtype=np.int64)
    scope_q = scope_filter(None, None, file_field="file_id")  # whole archive: no condition
    measure("stamp query", face_search.vectors_stamp)
    measure("search part, whole archive, 1 face", lambda: face_search.match([new_face()], trace_scope=scope_q))
    measure("search part, 5 of 40 files, 1 face",
            lambda: face_search.match([new_face()], files=scoped_files,
                                      trace_scope=__import__("django.db.models", fromlist=["Q"]).Q(
                                          file_id__in=scoped_files.tolist())))
    measure("search part, whole archive, 3 faces",
            lambda: face_search.match([new_face(), new_face(), new_face()]))
    measure("baseline: naive, whole archive, 1 face", lambda: naive(new_face()), max(3, args.runs // 10))
    measure("baseline: naive, 5 of 40 files, 1 face", lambda: naive(new_face(), scoped_files), max(3, args.runs // 5))

    # Recall: the identities found are those of a brute-force fp64 search over the same rows.
    exact_ok = 0
    for _ in range(20):
        query = new_face()
        found = face_search.match([query], limit=5)[0]
        truth = naive(query.astype(np.float64))
        truth = [i for i, d in truth if d <= face_search.OFFERED_DISTANCE][:5]
        from identities.models import Identity

        uuids = dict(Identity.objects.filter(pk__in=truth).values_list("pk", "identity_uuid"))
        exact_ok += [m.identity_uuid for m in found.identities] == [uuids[i] for i in truth]
    print(f"recall check: {exact_ok}/20 searches gave exactly the brute-force identities", flush=True)

    http_request(results, max(5, args.runs // 5))
    ratio = statistics.median(results["baseline: naive, whole archive, 1 face"]) / statistics.median(
        results["search part, whole archive, 1 face"])
    load = os.getloadavg()
    print(f"\nsearch part vs naive baseline (whole archive, p50): {ratio:.0f}x faster")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f}, "
          f"Python {platform.python_version()}, numpy {np.__version__}, {connection.vendor} "
          f"{connection.pg_version if connection.vendor == 'postgresql' else ''}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
