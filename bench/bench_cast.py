"""The cast page with 10 000 traces: every page and action under 300 ms of server time.

    MOMENTRY_DATA_DIR=/tmp/bench-cast .venv/bin/python bench/bench_cast.py [--traces 10000] [--runs 7]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/momentry_bench_cast .venv/bin/python bench/bench_cast.py

Data (deterministic, seed 7): ``--traces`` traces in five 30-minute files (25 fps), 300 people
whose traces carry a 128-d unit embedding drawn around the person's own direction (same-person
distances ~0.30, different people ~1.4: the demo's real embeddings are too few to make 10 000),
a trace never on screen twice at once for one person; 5 % of the traces without an embedding
(as profile-only faces have none); a fifth bound to 100 named people, the rest unbound; every
trace with its presence (one run, as the face pipeline makes them).

Measured in the same run, median of ``--runs`` (server time through Django's test client, a
staff session; an action is timed on fresh data each run and the state put back afterwards):

* the page across files and for one file: cold (no kept grouping: everything grouped), kept
  (nothing changed), and right after each kind of change (carried over: traces left, or entered);
* every action: name a group, accept a suggestion, hide, unhide, undo, autocomplete, the faces
  behind "+N more", the summary after "not this person", "not this person" itself (kept), naming faces
  selected in three groups;
* baselines: ``group_unbound_traces`` (the clustering ``cluster_traces`` does) on the same rows,
  against the cast page's identical, faster grouping; the old admin flow for naming one person
  (unbound trace list, the create-identity action's page, its confirmation, the list again);
* queries per page with 1 000 and with ``--traces`` traces (must not change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")

FILES = 5
FPS = 25
FRAMES = 30 * 60 * FPS
PEOPLE = 300
NAMED = 100
SEED = 7


def populate(traces: int) -> list:
    """Replace every bench file with ``traces`` synthetic traces (see the module docstring)."""
    import numpy as np

    from identities.models import CurationChange, Identity
    from media_api.faces.embeddings import MODEL_NAME, to_bytes
    from media_api.models import MediaFile, Trace
    from media_api.services.presence import encode_runs

    MediaFile.objects.filter(name__startswith="bench-cast-").delete()
    Identity.objects.filter(name__startswith="Bench cast ").delete()
    CurationChange.objects.all().delete()
    rng = np.random.default_rng(SEED)
    directions = rng.normal(size=(PEOPLE, 128))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    files = [MediaFile.objects.create(
        file_uuid=f"{0xBE4C0000 + n:08x}" + "0" * 24, path=f"/nonexistent/bench-cast-{n}.mp4",
        name=f"bench-cast-{n}.mp4", size=1, container="mp4", video_codec="h264", width=1920, height=1080,
        fps_num=FPS, fps_den=1, fps=FPS, total_frames=FRAMES, duration=FRAMES / FPS) for n in range(FILES)]
    people = Identity.objects.bulk_create([Identity(name=f"Bench cast person {n:03d}") for n in range(NAMED)])
    cursor = np.zeros((FILES, PEOPLE), dtype=np.int64)
    rows = []
    for number in range(traces):
        f = number % FILES
        person = int(rng.integers(0, PEOPLE))
        start = int(cursor[f, person] + rng.integers(0, 400))
        length = int(rng.integers(25, 300))
        if start + length >= FRAMES:
            start = int(rng.integers(0, FRAMES - length - 1))
        cursor[f, person] = start + length + 1
        vector = directions[person] + rng.normal(scale=0.022, size=128)
        embedding = to_bytes(vector / np.linalg.norm(vector)) if rng.random() >= 0.05 else None
        identity = people[person] if person < NAMED and rng.random() < 0.6 else None
        rows.append(Trace(file=files[f], trace_id=number // FILES + 1, identity=identity, face_count=length,
                          start_frame=start, end_frame=start + length - 1, avg_confidence=0.9, embedding=embedding,
                          embedding_model=MODEL_NAME if embedding is not None else "",
                          presence=encode_runs(np.array([start]), np.array([start + length]))))
    Trace.objects.bulk_create(rows, batch_size=2000)
    return files


def _timed(call, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm: kept grouping, frame clocks
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def _post(client, path: str, body: dict):
    response = client.post(f"/admin/cast/api/{path}", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, (path, response.status_code, response.content[:300])
    return response.json()


def _first_group(client, url: str = "/admin/cast/?fragment=body") -> tuple[list[int], str | None]:
    """The first group of the page (its pks) and its confident suggestion's uuid, if any."""
    import re

    html = client.get(url).content.decode()
    pks = [int(p) for p in re.search(r'class="cast-group[^"]*" data-key="[^"]*" data-pks="([0-9,]+)"', html)
           .group(1).split(",")]
    chip = re.search(r'class="cast-chip confident"\s+data-identity="([0-9a-f]+)"', html)
    return pks, chip.group(1) if chip else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--skip-baseline", action="store_true", help="skip the slow group_unbound_traces baseline")
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from identities.cast import grouping
    from identities.models import CurationChange, Identity
    from identities.suggestions import group_unbound_traces, unbound_traces
    from media_api.models import Trace

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench-cast", defaults={"is_staff": True,
                                                                                     "is_superuser": True})
    client = Client()
    client.force_login(user)
    runs = args.runs
    results: list[tuple[str, float, str]] = []

    def record(name: str, seconds: float, note: str = "") -> None:
        results.append((name, seconds, note))
        print(f"  {name}: {seconds * 1000:.1f} ms {note}", flush=True)

    # Queries per page at two scales.
    query_counts = {}
    for n in (1_000, args.traces):
        files = populate(n)
        grouping.regroup()
        query_counts[n] = (_queries(client, "/admin/cast/"), _queries(client, f"/admin/cast/{files[0].file_uuid}/"),
                           _queries(client, "/admin/cast/?fragment=body"))
    one_file = f"/admin/cast/{files[0].file_uuid}/"
    unbound = unbound_traces().count()
    print(f"{Trace.objects.count()} traces, {unbound} unbound, {Identity.objects.count()} identities", flush=True)

    # Grouping: the colleague's clustering against the page's, on the same rows.
    rows = list(unbound_traces().order_by("file_id", "start_frame", "trace_id")
                .values_list("pk", "embedding", "file_id", "start_frame", "end_frame"))
    fast, fast_groups = _timed(lambda: grouping.group_rows(rows), 3)
    record("grouping, the cast page's leader clustering", fast, f"({len(fast_groups)} groups)")
    if not args.skip_baseline:
        slow, slow_groups = _timed(lambda: group_unbound_traces(rows), 1)
        record("grouping, group_unbound_traces (baseline)", slow,
               f"(same groups: {slow_groups == fast_groups}; {slow / fast:.0f}x)")

    # Pages.
    def cold():
        grouping.regroup()
        return client.get("/admin/cast/")

    record("page, across files, cold (everything grouped)", _timed(cold, 3)[0])
    client.get("/admin/cast/")
    record("page, across files, kept", _timed(lambda: client.get("/admin/cast/"), runs)[0])
    record("page, one file, kept", _timed(lambda: client.get(one_file), runs)[0])
    record("fragment=body (the script's refresh), kept", _timed(lambda: client.get("/admin/cast/?fragment=body"),
                                                                 runs)[0])
    record("fragment=named", _timed(lambda: client.get("/admin/cast/?fragment=named"), runs)[0])
    record("page 10 of the groups", _timed(lambda: client.get("/admin/cast/?page=10"), runs)[0])
    record("page with the hidden section", _timed(lambda: client.get("/admin/cast/?hidden=1"), runs)[0])

    # Actions, each on fresh state, then the page right after (carried over). ``prepare`` reads
    # what the curator sees (not timed) and returns the action.
    def action_then_page(name: str, prepare, restore) -> None:
        action_times, page_times = [], []
        for _ in range(runs):
            client.get("/admin/cast/")  # the kept grouping, as the page the curator looks at
            act = prepare()
            started = time.perf_counter()
            act()
            action_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert client.get("/admin/cast/").status_code == 200
            page_times.append(time.perf_counter() - started)
            restore()
        record(f"action: {name}", statistics.median(action_times))
        record(f"page right after: {name}", statistics.median(page_times))

    def undo_mine():
        from identities import curation

        change = CurationChange.objects.filter(user=user, undone_at__isnull=True).order_by("-id").first()
        if change is not None:
            curation.undo(change, user)
        Identity.objects.filter(name__startswith="Bench cast new ", traces__isnull=True).delete()

    def new_name() -> str:
        return f"Bench cast new {time.perf_counter_ns()}"

    def name_group():
        pks, _ = _first_group(client)
        return lambda: _post(client, "name", {"trace_pks": pks, "name": new_name()})

    action_then_page("name a group (its traces leave)", name_group, undo_mine)

    def accept():
        for page in range(1, 30):
            pks, chip = _first_group(client, f"/admin/cast/?fragment=body&page={page}")
            if chip:
                break
        return lambda: _post(client, "bind", {"trace_pks": pks, "identity_uuid": chip})

    action_then_page("accept a suggestion", accept, undo_mine)

    def hide():
        pks, _ = _first_group(client)
        return lambda: _post(client, "hide", {"trace_pks": pks[:1]})

    action_then_page("hide a face", hide, undo_mine)

    hidden_pk = unbound_traces().order_by("pk").values_list("pk", flat=True).first()

    def unhide():
        return lambda: _post(client, "unhide", {"trace_pks": [hidden_pk]})

    def hide_again():
        Trace.objects.filter(pk=hidden_pk).update(ignored=True)
        client.get("/admin/cast/")

    hide_again()
    action_then_page("unhide a face (a trace enters)", unhide, hide_again)
    Trace.objects.filter(pk=hidden_pk).update(ignored=False)

    def name_then_undo():
        pks, _ = _first_group(client)
        _post(client, "name", {"trace_pks": pks, "name": new_name()})
        client.get("/admin/cast/")
        return lambda: _post(client, "undo", {})

    def drop_empty():
        Identity.objects.filter(name__startswith="Bench cast new ", traces__isnull=True).delete()

    action_then_page("undo a naming (its traces enter again)", name_then_undo, drop_empty)

    def separate():
        pks, _ = _first_group(client)
        return lambda: _post(client, "separate", {"trace_pk": pks[-1], "group_pks": pks})

    action_then_page("not this person (kept: a constraint per other member)", separate, undo_mine)

    def name_selected():
        body = client.get("/admin/cast/?fragment=body").content.decode()
        firsts = [int(found.split(",")[0]) for found in re.findall(r'data-pks="([0-9,]+)"', body)[:3]]
        return lambda: _post(client, "name", {"trace_pks": firsts, "name": new_name()})

    action_then_page("name faces selected in three groups", name_selected, undo_mine)

    record("action: autocomplete ?q=person 0", _timed(lambda: client.get("/admin/cast/api/people?q=person+0"),
                                                       runs)[0])
    pks, _ = _first_group(client)
    record("action: summary of two reshaped groups", _timed(
        lambda: _post(client, "summary", {"groups": [pks[:-1] or pks, pks[-1:]]}), runs)[0])
    record("action: the faces behind +N more", _timed(lambda: _post(client, "tiles", {"trace_pks": pks}), runs)[0])

    # The old admin flow for one person: list, action page, confirm, list again.
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

    def old_flow():
        pks, _ = _first_group(client)
        started = time.perf_counter()
        assert client.get("/admin/media_api/trace/?identity=unbound").status_code == 200
        response = client.post("/admin/media_api/trace/?identity=unbound",
                               {"action": "create_identity", ACTION_CHECKBOX_NAME: pks, "index": 0})
        assert response.status_code == 200
        response = client.post("/admin/media_api/trace/?identity=unbound",
                               {"action": "create_identity", ACTION_CHECKBOX_NAME: pks, "confirm": "1",
                                "name": new_name(), "_confirm": "1"})
        assert response.status_code == 302, response.status_code
        assert client.get("/admin/media_api/trace/?identity=unbound").status_code == 200
        total = time.perf_counter() - started
        undo_mine()
        return total

    def new_flow():
        started = time.perf_counter()
        assert client.get("/admin/cast/").status_code == 200
        page = time.perf_counter() - started
        pks, _ = _first_group(client)
        started = time.perf_counter()
        _post(client, "name", {"trace_pks": pks, "name": new_name()})
        total = page + time.perf_counter() - started
        undo_mine()
        return total

    old = statistics.median([old_flow() for _ in range(runs)])
    new = statistics.median([new_flow() for _ in range(runs)])
    record("old admin flow for one person: 4 page loads (baseline)", old)
    record("cast page flow for one person: the page + one naming", new, f"({old / new:.1f}x less server time)")

    load = os.getloadavg()
    print()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f}, "
          f"{connection.vendor} {connection.Database.sqlite_version if connection.vendor == 'sqlite' else ''}"
          f", date {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"| measure ({args.traces:,} traces, {unbound:,} waiting for a name) | median |")
    print("|---|---|")
    for name, seconds, note in results:
        print(f"| {name} | {seconds * 1000:.1f} ms {note} |")
    print()
    print(f"| queries | 1 000 traces | {args.traces:,} traces |")
    print("|---|---|---|")
    for label, index in (("page, across files", 0), ("page, one file", 1), ("fragment=body", 2)):
        print(f"| {label} | {query_counts[1_000][index]} | {query_counts[args.traces][index]} |")
    populate(0)
    Identity.objects.filter(name__startswith="Bench cast ").delete()


if __name__ == "__main__":
    main()
