"""GET …/identities/{a}/co-occur-with/{b} on crafted detections, against a Python set intersection."""

from __future__ import annotations

import pytest

from identities.cooccurrence import first_cooccurrence
from identities.models import Identity
from media_api.models import Trace
from media_api.services.detections_import import import_detections
from momentry.models import UserScope

A_TRACES = {1: range(10, 51, 2), 4: range(120, 140, 1)}
B_TRACES = {2: range(30, 81, 5), 3: range(40, 46, 1), 5: range(130, 200, 3)}
C_TRACES = {6: range(200, 260, 4)}


def rows(traces: dict[int, range], name: str, x: int) -> list[dict]:
    return [{"trace_id": t, "frame_number": f, "x": x, "y": 40 + (f % 7), "width": 60 + (f % 11), "height": 70,
             "confidence": 0.6 + (f % 4) / 10, "identity": name} for t, frames in traces.items() for f in frames]


@pytest.fixture
def cast(hamilton):
    import_detections(hamilton, rows(A_TRACES, "Alice", 50) + rows(B_TRACES, "Bob", 300) + rows(C_TRACES, "Carol", 500)
                      + [{"trace_id": 9, "frame_number": 30, "x": 1, "y": 1, "width": 20, "height": 20,
                          "confidence": 0.9}])  # an unbound trace on a shared frame changes nothing
    return {i.name: i for i in Identity.objects.all()}


def url(media_file, a: str, b: str) -> str:
    return f"/api/v1/file/{media_file.file_uuid}/identities/{a}/co-occur-with/{b}"


def expected() -> tuple[int, int]:
    frames_a = {f for frames in A_TRACES.values() for f in frames}
    frames_b = {f for frames in B_TRACES.values() for f in frames}
    shared = frames_a & frames_b
    return min(shared), len(shared)


def test_first_cooccurrence_and_total(api_client, hamilton, cast):
    first, total = expected()
    alice, bob = cast["Alice"], cast["Bob"]
    response = api_client.get(url(hamilton, alice.identity_uuid, bob.identity_uuid))
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert body["success"] is True and body["file_uuid"] == hamilton.file_uuid
    assert body["identity_a"] == {"identity_uuid": alice.identity_uuid, "name": "Alice", "source": alice.source,
                                  "status": alice.status, "trace_id": 1}
    assert body["identity_b"] == {"identity_uuid": bob.identity_uuid, "name": "Bob", "source": bob.source,
                                  "status": bob.status, "trace_id": 2}
    co = body["first_cooccurrence"]
    assert co["frame_number"] == first == 30
    assert co["total_cooccurrence_frames"] == total
    assert co["timestamp_secs"] == pytest.approx(30 / hamilton.fps, abs=1e-3)
    for side, trace_id in (("representative_face_a", 1), ("representative_face_b", 2)):
        face = co[side]
        trace = Trace.objects.get(file=hamilton, trace_id=trace_id)
        assert face["frame_number"] == trace.rep_frame_number  # the trace's stored representative face
        assert face["thumbnail_url"] == f"/api/v1/file/{hamilton.file_uuid}/trace/{trace_id}/thumbnail"
        assert set(face) == {"frame_number", "bbox", "confidence", "thumbnail_url"}
        thumbnail = api_client.get(face["thumbnail_url"])
        assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/jpeg"

    # Symmetric, and dashed uuids are accepted.
    dashed = f"{bob.identity_uuid[:8]}-{bob.identity_uuid[8:12]}-{bob.identity_uuid[12:16]}-" \
             f"{bob.identity_uuid[16:20]}-{bob.identity_uuid[20:]}"
    swapped = api_client.get(url(hamilton, dashed, alice.identity_uuid)).json()
    assert swapped["first_cooccurrence"]["frame_number"] == first
    assert swapped["identity_a"]["name"] == "Bob" and swapped["identity_a"]["trace_id"] == 2


def test_one_sql_query(hamilton, cast, django_assert_num_queries):
    first, total = expected()
    with django_assert_num_queries(1):
        found = first_cooccurrence(hamilton.pk, cast["Alice"].pk, cast["Bob"].pk)
    assert (found.frame_number, found.total_frames, found.trace_id_a, found.trace_id_b) == (first, total, 1, 2)


def test_never_together_unknown_and_same(api_client, hamilton, cast):
    alice, carol = cast["Alice"], cast["Carol"]
    never = api_client.get(url(hamilton, alice.identity_uuid, carol.identity_uuid))
    assert never.status_code == 404 and never.json()["error"]["code"] == "NOT_FOUND"
    assert "never appear together" in never.json()["error"]["message"]

    unknown = api_client.get(url(hamilton, alice.identity_uuid, "f" * 32))
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] != never.json()["error"]["message"]

    same = api_client.get(url(hamilton, alice.identity_uuid, alice.identity_uuid))
    assert same.status_code == 400 and same.json()["error"]["code"] == "BAD_REQUEST"
    bad = api_client.get(url(hamilton, alice.identity_uuid, "not-a-uuid"))
    assert bad.status_code == 404 and bad.json()["error"]["details"] == {"identity_uuid": "not-a-uuid"}


def test_other_file_scope_and_credentials(api_client, client, hamilton, facenet, cast, plain_user):
    alice, bob = cast["Alice"], cast["Bob"]
    # The same two people in another file where they never meet.
    response = api_client.get(url(facenet, alice.identity_uuid, bob.identity_uuid))
    assert response.status_code == 404 and "never appear together" in response.json()["error"]["message"]

    assert client.get(url(hamilton, alice.identity_uuid, bob.identity_uuid)).status_code == 401

    scope = UserScope.objects.create(user=plain_user)
    scope.files.set([facenet])
    route = url(hamilton, alice.identity_uuid, bob.identity_uuid)
    hidden = api_client.get(route)
    unknown = api_client.get(route.replace(hamilton.file_uuid, "0" * 32))
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json() == {**unknown.json(), "error": {**unknown.json()["error"],
                                                        "details": hidden.json()["error"]["details"]}}
    assert hidden.json()["error"]["message"] == unknown.json()["error"]["message"] == "File not found."


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_casts_match_a_set_intersection(hamilton, seed):
    """Many overlapping traces per person, gaps, several people per frame: SQL = Python sets."""
    import random

    rng = random.Random(seed)
    people = ["P", "Q", "R"]
    frames_of: dict[str, dict[int, set[int]]] = {p: {} for p in people}
    rows = []
    for trace_id in range(1, 46):
        person = people[trace_id % 3]
        first = rng.randrange(0, 250)
        frames = set(range(first, min(275, first + rng.randrange(3, 40)), rng.choice([1, 2, 3, 7])))
        frames_of[person][trace_id] = frames
        rows += [{"trace_id": trace_id, "frame_number": f, "x": 5, "y": 5, "width": 30, "height": 30,
                  "confidence": 0.7, "identity": person} for f in sorted(frames)]
    import_detections(hamilton, rows)
    ids = {i.name: i.pk for i in Identity.objects.all()}
    for a, b in (("P", "Q"), ("Q", "R"), ("R", "P")):
        all_a = set().union(*frames_of[a].values())
        all_b = set().union(*frames_of[b].values())
        shared = all_a & all_b
        found = first_cooccurrence(hamilton.pk, ids[a], ids[b])
        if not shared:
            assert found is None
            continue
        first = min(shared)
        assert found.frame_number == first and found.total_frames == len(shared)
        assert found.trace_id_a == min(t for t, f in frames_of[a].items() if first in f)
        assert found.trace_id_b == min(t for t, f in frames_of[b].items() if first in f)
