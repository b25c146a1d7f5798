"""Co-occurrence at any scale: every route against a brute force over the detections, through every edit.

Routes: ``GET /file/{uuid}/identities/{a}/co-occur-with/{b}`` (and :func:`first_cooccurrence`),
``GET /file/{uuid}/cooccurrence`` (the cast graph, with ``include_unbound`` and ``identity``) and
``GET /identity/{a}/co-occur-with/{b}`` (across files). They read only ``Trace.presence``;
:class:`tests.cooccurrence_oracle.Oracle` reads only the detection rows. Random casts on the two
demo clips are checked after an import, an appending import, ``import_detections --replace``,
a re-detection (``store_analysis(replace=True)``), binds, unbinds and merges.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command

from identities.cooccurrence import cast_graph, first_cooccurrence
from identities.models import Identity
from media_api.faces.pipeline import FaceAnalysis
from media_api.faces.tracker import Track
from media_api.models import MediaFile, Trace
from media_api.services.detections_import import import_detections
from media_api.services.faces import store_analysis
from tests.cooccurrence_oracle import Oracle
from tests.helpers_rest import key_client

pytestmark = pytest.mark.django_db

PEOPLE = ["Ada", "Bo", "Cy", "Di", "Ed"]


def random_rows(rng: random.Random, media_file: MediaFile, traces: int, first_trace_id: int = 1) -> list[dict]:
    """Traces of random people (a fifth unbound) with random spans, steps, gaps and duplicate boxes."""
    rows = []
    frames_in_file = media_file.total_frames
    for trace_id in range(first_trace_id, first_trace_id + traces):
        person = rng.choice(PEOPLE + [None])
        start = rng.randrange(0, frames_in_file - 2)
        length = rng.randrange(1, min(90, frames_in_file - start))
        step = rng.choice([1, 1, 1, 2, 3, 7])
        frames = [f for f in range(start, start + length, step) if rng.random() > 0.1] or [start]
        frames += rng.sample(frames, k=min(2, len(frames))) if rng.random() < 0.3 else []  # duplicates
        for frame in frames:
            row = {"trace_id": trace_id, "frame_number": frame, "x": 10, "y": 10, "width": 40, "height": 40,
                   "confidence": 0.8}
            if person is not None:
                row["identity"] = person
            rows.append(row)
    return rows


def people() -> dict[str, Identity]:
    return {i.name: i for i in Identity.objects.all()}


def pages(client, url: str, key: str) -> list[dict]:
    items, page = [], 1
    while True:
        response = client.get(f"{url}{'&' if '?' in url else '?'}page={page}&page_size=7")
        assert response.status_code == 200, response.content[:300]
        body = response.json()
        assert body["success"] is True and body["page_size"] == 7 and body["count"] == len(body[key])
        items += body[key]
        if page >= max(body["num_pages"], 1):
            assert len(items) == body["total"]
            return items
        page += 1


def _key(member: dict[str, Any]) -> Any:
    return member["identity_uuid"] or tuple(member["trace_ids"])


def expected_graph(oracle: Oracle, include_unbound: bool) -> dict[frozenset, tuple]:
    """{frozenset of two member keys: (first, frames, seconds)} from the detections."""
    members: dict[Any, set[int]] = {}
    uuids = dict(Identity.objects.values_list("pk", "identity_uuid"))
    for identity_pk in oracle.identities():
        members[uuids[identity_pk]] = oracle.frames_of_identity(identity_pk)
    if include_unbound:  # imported traces have no embedding: each unbound trace is a person of its own
        for trace_id in oracle.unbound_trace_ids():
            members[(trace_id,)] = oracle.frames_of_traces([trace_id])
    expected = {}
    for (a, frames_a), (b, frames_b) in itertools.combinations(members.items(), 2):
        shared = frames_a & frames_b
        if shared:
            expected[frozenset([a, b])] = (min(shared), len(shared), oracle.seconds(shared))
    return expected


def check_member(oracle: Oracle, member: dict[str, Any]) -> None:
    frames = oracle.frames_of_traces(member["trace_ids"])
    assert member["screen_frames"] == len(frames)
    assert member["screen_secs"] == pytest.approx(oracle.seconds(frames), abs=2e-6)
    if member["identity_uuid"] is not None:
        identity = Identity.objects.get(identity_uuid=member["identity_uuid"])
        assert member["name"] == identity.name
        assert member["trace_ids"] == sorted(trace_id for pk, (trace_id, who) in oracle.traces.items()
                                             if who == identity.pk and oracle.frames_of_trace[pk])


def check_graph(client, media_file: MediaFile, oracle: Oracle, include_unbound: bool) -> int:
    url = f"/api/v1/file/{media_file.file_uuid}/cooccurrence?include_unbound={str(include_unbound).lower()}"
    items = pages(client, url, "pairs")
    got = {frozenset([_key(p["a"]), _key(p["b"])]): p for p in items}
    expected = expected_graph(oracle, include_unbound)
    assert set(got) == set(expected) and len(items) == len(got)
    for key, (first, frames, seconds) in expected.items():
        pair = got[key]
        assert (pair["first_frame_number"], pair["shared_frames"]) == (first, frames)
        assert pair["shared_secs"] == pytest.approx(seconds, abs=2e-6)
        assert pair["first_timestamp_secs"] == round(oracle.start_of[first], 6)
        check_member(oracle, pair["a"])
        check_member(oracle, pair["b"])
    shared = [p["shared_secs"] for p in items]
    assert shared == sorted(shared, reverse=True)  # most shared time first
    if include_unbound:
        return len(items)
    for identity in Identity.objects.filter(pk__in=oracle.identities()):
        partners = pages(client, f"{url}&identity={identity.identity_uuid}", "pairs")
        assert all(p["a"]["identity_uuid"] == identity.identity_uuid for p in partners)
        assert {p["b"]["identity_uuid"] for p in partners} == {
            next(iter(k - {identity.identity_uuid})) for k in expected if identity.identity_uuid in k}
    return len(items)


def check_pairs(client, media_file: MediaFile, oracle: Oracle) -> None:
    """first_cooccurrence for every pair of people; the HTTP route for one of them."""
    cast = list(Identity.objects.filter(name__in=PEOPLE))
    checked_route = False
    for a, b in itertools.permutations(cast, 2):
        found = first_cooccurrence(media_file.pk, a.pk, b.pk)
        expected = oracle.pair(a.pk, b.pk)
        if expected is None:
            assert found is None
            continue
        figures, trace_a, trace_b = expected
        assert (found.frame_number, found.total_frames, found.trace_id_a, found.trace_id_b) == (
            figures.first, figures.frames, trace_a, trace_b)
        if not checked_route:
            body = client.get(f"/api/v1/file/{media_file.file_uuid}/identities/{a.identity_uuid}/co-occur-with/"
                              f"{b.identity_uuid}").json()
            assert body["identity_a"]["trace_id"] == trace_a and body["identity_b"]["trace_id"] == trace_b
            assert body["first_cooccurrence"]["frame_number"] == figures.first
            assert body["first_cooccurrence"]["total_cooccurrence_frames"] == figures.frames
            checked_route = True


def check_across_files(client, files: list[MediaFile]) -> int:
    oracles = {f.file_uuid: Oracle(f) for f in files}
    cast = list(Identity.objects.filter(name__in=PEOPLE).exclude(status=Identity.Status.INACTIVE))
    listed = 0
    for a, b in itertools.combinations(cast, 2):
        items = pages(client, f"/api/v1/identity/{a.identity_uuid}/co-occur-with/{b.identity_uuid}", "files")
        expected = {uuid: o.pair(a.pk, b.pk) for uuid, o in oracles.items()}
        assert {i["file_uuid"] for i in items} == {uuid for uuid, e in expected.items() if e is not None}
        for item in items:
            oracle = oracles[item["file_uuid"]]
            figures, trace_a, trace_b = expected[item["file_uuid"]]
            assert (item["first_frame_number"], item["shared_frames"]) == (figures.first, figures.frames)
            assert item["shared_secs"] == pytest.approx(figures.seconds, abs=2e-6)
            assert (item["a"]["trace_id"], item["b"]["trace_id"]) == (trace_a, trace_b)
            for side, identity in (("a", a), ("b", b)):
                frames = oracle.frames_of_identity(identity.pk)
                assert item[side]["screen_frames"] == len(frames)
                assert item[side]["screen_secs"] == pytest.approx(oracle.seconds(frames), abs=2e-6)
        assert [i["shared_secs"] for i in items] == sorted((i["shared_secs"] for i in items), reverse=True)
        listed += len(items)
    return listed


def check_all(client, files: list[MediaFile]) -> None:
    named = unbound = 0
    for media_file in files:
        oracle = Oracle(media_file)
        check_pairs(client, media_file, oracle)
        named += check_graph(client, media_file, oracle, include_unbound=False)
        unbound += check_graph(client, media_file, oracle, include_unbound=True)
    across = check_across_files(client, files)
    assert 0 < named < unbound and across > 0  # the checks compared something


def synthetic_analysis(rng: random.Random, media_file: MediaFile, tracks: int) -> FaceAnalysis:
    """What a re-detection stores: dense tracks (a box on every frame), as the face pipeline makes them."""
    made = []
    for key in range(tracks):
        start = rng.randrange(0, media_file.total_frames - 2)
        end = min(media_file.total_frames - 1, start + rng.randrange(1, 80))
        track = Track(key=key, shot=0)
        for frame in range(start, end + 1):
            track.add(frame, (10 + 30 * (key % 5), 10, 40, 40), frame == start, 0.9)
        made.append(track)
    made.sort(key=lambda t: t.start)
    return FaceAnalysis(tracks=made, start=0, end=media_file.total_frames - 1,
                        frames_decoded=media_file.total_frames, frames_sampled=0, cuts=[], seconds=0.0, stride=1)


@pytest.mark.parametrize("seed", [11, 12])
def test_every_route_matches_the_detections_through_every_edit(admin_client_api, hamilton, facenet, tmp_path, seed):
    rng = random.Random(seed)
    client, files = admin_client_api, [hamilton, facenet]
    import_detections(hamilton, random_rows(rng, hamilton, 40))
    import_detections(facenet, random_rows(rng, facenet, 25))
    check_all(client, files)

    # Appending: rows added to existing traces (and new ones).
    import_detections(hamilton, random_rows(rng, hamilton, 30, first_trace_id=20))
    check_all(client, files)

    # import_detections --replace: traces not named again disappear, the others get new frames.
    path = tmp_path / "replace.json"
    path.write_text(json.dumps({"detections": random_rows(rng, hamilton, 35, first_trace_id=10)}))
    call_command("import_detections", hamilton.file_uuid, str(path), "--replace", verbosity=0)
    check_all(client, files)

    # Binds, unbinds and merges (through the API) change who the traces belong to, not presence.
    cast = people()
    unbound = list(Trace.objects.filter(file=hamilton, identity__isnull=True).values_list("trace_id", flat=True))
    bound_to_ada = list(Trace.objects.filter(file=hamilton, identity=cast["Ada"]).values_list("trace_id", flat=True))
    if unbound:
        assert client.post(f"/api/v1/identity/{cast['Bo'].identity_uuid}/bind/trace",
                           {"file_uuid": hamilton.file_uuid, "trace_ids": unbound[: len(unbound) // 2 + 1]},
                           format="json").status_code == 200
    if bound_to_ada:
        assert client.post(f"/api/v1/identity/{cast['Ada'].identity_uuid}/unbind/trace",
                           {"file_uuid": hamilton.file_uuid, "trace_ids": bound_to_ada[:2]},
                           format="json").status_code == 200
    check_all(client, files)
    merged = client.post(f"/api/v1/identity/{cast['Cy'].identity_uuid}/merge",
                         {"from": [cast["Di"].identity_uuid]}, format="json")
    assert merged.status_code == 200, merged.content[:300]
    check_all(client, files)

    # Re-detection replaces the file's traces (people carried over where boxes coincide).
    store_analysis(facenet, synthetic_analysis(rng, facenet, 12), replace=True)
    Trace.objects.filter(file=facenet, trace_id__in=[1, 2, 3]).update(identity=cast["Ada"])
    Trace.objects.filter(file=facenet, trace_id__in=[4, 5, 6]).update(identity=cast["Ed"])
    Trace.objects.filter(file=facenet, trace_id__in=[7, 8]).update(identity=cast["Cy"])
    check_all(client, files)


def test_unbound_traces_are_grouped_as_clustering_groups_them(admin_client_api, hamilton):
    """With real face embeddings: the cast graph's groups of unbound traces are the clusters clustering makes."""
    from identities.suggestions import cluster_unbound_traces
    from tests.test_suggestions import _load

    _load(hamilton, "face_recognition_short_hamilton_clip")
    graph = cast_graph(hamilton, include_unbound=True)
    embedded = set(Trace.objects.filter(file=hamilton, embedding__isnull=False).values_list("trace_id", flat=True))
    groups = sorted(sorted(m.trace_ids) for m in graph.members if m.identity_pk is None)
    assert all(len(g) == 1 for g in groups if not set(g) & embedded)  # no embedding: a person of its own
    groups = [g for g in groups if set(g) & embedded]
    assert any(len(g) > 1 for g in groups)  # some traces of the same person were grouped
    cluster_unbound_traces(min_size=1)
    clusters = sorted(sorted(Trace.objects.filter(identity=i).values_list("trace_id", flat=True))
                      for i in Identity.objects.filter(source=Identity.Source.AUTO))
    assert groups == clusters
    # Named now (pending identities), the same groups are the people of the default graph.
    named = sorted(sorted(m.trace_ids) for m in cast_graph(hamilton).members)
    assert named == clusters
    body = admin_client_api.get(f"/api/v1/file/{hamilton.file_uuid}/cooccurrence?include_unbound=true").json()
    unbound = [m for p in body["pairs"] for m in (p["a"], p["b"]) if m["identity_uuid"] is None]
    assert all(len(m["trace_ids"]) == 1 and m["trace_ids"][0] not in embedded for m in unbound)


def test_parameters_and_errors(api_client, hamilton):
    import_detections(hamilton, random_rows(random.Random(3), hamilton, 20))
    base = f"/api/v1/file/{hamilton.file_uuid}/cooccurrence"
    body = api_client.get(base).json()
    assert body["success"] and body["file_uuid"] == hamilton.file_uuid and body["include_unbound"] is False
    assert body["identity_uuid"] is None and body["page"] == 1 and body["page_size"] == 20
    for query, parameter in (("include_unbound=", "include_unbound"), ("include_unbound=yes", "include_unbound"),
                             ("identity=nope", "identity"), ("page=0", "page"), ("page_size=101", "page_size")):
        refused = api_client.get(f"{base}?{query}")
        assert refused.status_code == 400 and refused.json()["error"]["details"]["parameter"] == parameter, query
    unknown = api_client.get(f"{base}?identity={'f' * 32}")
    assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "Identity not found."
    nobody = Identity.objects.create(name="Nobody here")
    empty = api_client.get(f"{base}?identity={nobody.identity_uuid}").json()
    assert empty["total"] == 0 and empty["pairs"] == [] and empty["identity_uuid"] == nobody.identity_uuid
    past_the_end = api_client.get(f"{base}?page=99").json()
    assert past_the_end["count"] == 0 and past_the_end["total"] == body["total"]
    assert api_client.get(f"/api/v1/file/{'0' * 32}/cooccurrence").status_code == 404

    ada, bo = people()["Ada"], people()["Bo"]
    across = f"/api/v1/identity/{ada.identity_uuid}/co-occur-with/"
    same = api_client.get(across + ada.identity_uuid)
    assert same.status_code == 400 and same.json()["error"]["details"]["parameter"] == "identity_uuid_b"
    assert api_client.get(across + "f" * 32).status_code == 404
    assert api_client.get(across + "xyz").status_code == 404  # a path value that is no uuid: unknown
    dashed = bo.identity_uuid[:8] + "-" + bo.identity_uuid[8:12] + "-" + bo.identity_uuid[12:16] + "-" + \
        bo.identity_uuid[16:20] + "-" + bo.identity_uuid[20:]
    answer = api_client.get(across + dashed).json()
    assert answer["identity_a"] == {"identity_uuid": ada.identity_uuid, "name": "Ada", "source": ada.source,
                                    "status": ada.status}
    assert answer["identity_b"] == {"identity_uuid": bo.identity_uuid, "name": "Bo", "source": bo.source,
                                    "status": bo.status}
    assert api_client.get(across + nobody.identity_uuid).json()["total"] == 0


def test_scope_two_keys(plain_user, hamilton, facenet, client):
    """A key for one file sees that file's graph and pairs only; the other file is the 404 of an unknown one."""
    rng = random.Random(5)
    import_detections(hamilton, random_rows(rng, hamilton, 30))
    import_detections(facenet, random_rows(rng, facenet, 20))
    only_in_facenet = Identity.objects.create(name="Only in facenet")
    Trace.objects.filter(file=facenet, trace_id=1).update(identity=only_in_facenet)
    key_h, _ = key_client(plain_user, file_uuids=[hamilton.file_uuid])
    key_f, _ = key_client(plain_user, file_uuids=[facenet.file_uuid])
    everything, _ = key_client(plain_user)

    hidden = key_h.get(f"/api/v1/file/{facenet.file_uuid}/cooccurrence")
    unknown = key_h.get(f"/api/v1/file/{'0' * 32}/cooccurrence")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"]["message"] == unknown.json()["error"]["message"] == "File not found."
    assert key_f.get(f"/api/v1/file/{facenet.file_uuid}/cooccurrence").status_code == 200

    # A person of the other file is unknown to the key, in the filter and across files alike.
    for response in (key_h.get(f"/api/v1/file/{hamilton.file_uuid}/cooccurrence?identity="
                               f"{only_in_facenet.identity_uuid}"),
                     key_h.get(f"/api/v1/identity/{only_in_facenet.identity_uuid}/co-occur-with/"
                               f"{people()['Ada'].identity_uuid}")):
        assert response.status_code == 404 and "Only in facenet" not in response.content.decode()
        assert response.json()["error"]["message"] == "Identity not found."

    # Across files: each key lists only the files of its scope.
    cast = [i for i in Identity.objects.filter(name__in=PEOPLE)]
    seen_both = False
    for a, b in itertools.combinations(cast, 2):
        url = f"/api/v1/identity/{a.identity_uuid}/co-occur-with/{b.identity_uuid}?page_size=100"
        all_files = {f["file_uuid"] for f in everything.get(url).json()["files"]}
        for key, uuid in ((key_h, hamilton.file_uuid), (key_f, facenet.file_uuid)):
            response = key.get(url)
            if response.status_code == 404:  # one of the two is not in this key's file
                continue
            assert {f["file_uuid"] for f in response.json()["files"]} == all_files & {uuid}
        seen_both |= all_files == {hamilton.file_uuid, facenet.file_uuid}
    assert seen_both
    assert client.get(f"/api/v1/file/{hamilton.file_uuid}/cooccurrence").status_code == 401


def test_variable_frame_rate_seconds(api_client, hamilton, monkeypatch):
    """Seconds follow the frame index: a frame lasts until the next one starts (not 1/fps)."""
    from identities import cooccurrence
    from media_api.services import files

    index = files.frame_index_for(hamilton)
    pts = index.pts.copy()
    pts[100:] += 3000  # a pause after frame 99: frame 99 lasts much longer
    vfr = type(index)(pts=pts, keyframes=index.keyframes, time_base=index.time_base)
    monkeypatch.setattr(cooccurrence, "frame_index_for", lambda media_file: vfr)
    cooccurrence._clock.cache_clear()
    try:
        rows = [{"trace_id": t, "frame_number": f, "x": 1, "y": 1, "width": 20, "height": 20, "confidence": 0.9,
                 "identity": name} for t, name in ((1, "Ada"), (2, "Bo")) for f in range(98, 102)]
        import_detections(hamilton, rows)
        pair = api_client.get(f"/api/v1/file/{hamilton.file_uuid}/cooccurrence").json()["pairs"][0]
        starts = [vfr.seconds_of(f) for f in range(98, 103)]
        assert pair["shared_frames"] == 4
        assert pair["shared_secs"] == pytest.approx(starts[-1] - starts[0], abs=1e-6)
        assert pair["shared_secs"] == pytest.approx(4 / hamilton.fps + float(3000 * index.time_base), abs=1e-3)
        assert pair["first_timestamp_secs"] == round(vfr.seconds_of(98), 6)
    finally:
        cooccurrence._clock.cache_clear()


def test_admin_file_page_shows_the_cast_graph(admin_client_api, hamilton):
    rows = [{"trace_id": t, "frame_number": f, "x": 1, "y": 1, "width": 20, "height": 20, "confidence": 0.9,
             "identity": name} for t, name, span in ((1, "<script>alert(1)</script>", range(0, 120)),
                                                   (2, 'Bo "the" & co', range(60, 200)), (3, "Cy", range(250, 270)))
            for f in span]
    import_detections(hamilton, rows)
    page = admin_client_api.get(f"/admin/media_api/mediafile/{hamilton.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("<svg") >= 2 and "momentry-cast-graph" in html and "momentry-timeline" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Bo &quot;the&quot; &amp; co" in html
    assert "<line" in html  # the one edge: the first two share frames 60..119
    assert "cdn" not in html.lower().split("momentry-cast")[1]


def test_svg_functions_escape_and_bound_their_output():
    from identities.cast.graph import Edge, Node, Strip, graph_svg, timeline_svg

    svg = graph_svg([Node("<b>A</b>", 10.0), Node("B & C", 2.5)], [Edge(0, 1, 1.0, 25)])
    assert "<b>" not in svg and "&lt;b&gt;A&lt;/b&gt;" in svg and "B &amp; C" in svg and svg.count("<circle") == 2
    assert "nobody on screen" in graph_svg([], [])
    many_runs = np.arange(0, 100_000, 2)
    strip = timeline_svg([Strip("x", many_runs, many_runs + 1)], total_frames=100_000, duration_seconds=4000.0)
    assert strip.count("<rect") <= 1 + 640  # merged to pixels: not 50 000 rectangles
