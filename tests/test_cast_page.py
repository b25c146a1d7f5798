"""The cast page (issue 13): groups of unnamed faces, one-step naming, suggestions, hide, undo.

Real traces: the demo clips' detections with their real face embeddings (demo/detections, the face
pipeline's own output), plus traces imported on the Hamilton clip with deterministic embeddings
where a test needs people of a known shape (a group of four, a look-alike, a weak match).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client

from identities import curation
from identities.cast import grouping, service
from identities.models import CurationChange, Identity
from identities.suggestions import (
    CONFIDENT_DISTANCE,
    SUGGESTION_MAX_DISTANCE,
    group_unbound_traces,
    suggest_identities,
    unbound_traces,
)
from media_api.faces.embeddings import normalise
from media_api.models import Trace
from media_api.services.detections_import import import_detections, import_file
from media_api.services.faces import store_trace_embeddings
from tests.conftest import REPO

pytestmark = pytest.mark.django_db

API = "/admin/cast/api/"


# --------------------------------------------------------------------------- data


def _load_demo(media_file, stem: str) -> None:
    import_file(media_file, REPO / "demo" / "detections" / f"{stem}.json")  # boxes, means and exemplar sets


def direction(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return normalise(rng.normal(size=128))


def near(u: np.ndarray, distance: float, seed: int) -> np.ndarray:
    """A unit vector exactly ``distance`` (Euclidean) away from unit ``u``."""
    w = direction(seed)
    w = normalise(w - np.dot(w, u) * u)
    angle = 2 * np.arcsin(distance / 2)
    return normalise(np.cos(angle) * u + np.sin(angle) * w)


def add_traces(media_file, specs) -> dict[int, Trace]:
    """Import traces ``(trace_id, first frame, last frame, embedding or None)``, a box on every frame."""
    rows = []
    for trace_id, first, last, _ in specs:
        for frame in range(first, last + 1):
            rows.append({"trace_id": trace_id, "frame_number": frame, "x": 8 + (trace_id % 9) * 64, "y": 40,
                         "width": 56, "height": 64, "confidence": 0.9})
    import_detections(media_file, rows)
    store_trace_embeddings(media_file, {t: v.tolist() for t, _, _, v in specs if v is not None})
    ids = [spec[0] for spec in specs]
    return {t.trace_id: t for t in Trace.objects.filter(file=media_file, trace_id__in=ids)}


A, B = direction(1), direction(2)


@pytest.fixture
def people(hamilton):
    """Person A in four traces one after the other, person B in three, C once, and D without an embedding."""
    specs = [(101, 0, 30, near(A, 0.12, 11)), (102, 40, 70, near(A, 0.12, 12)), (103, 80, 110, near(A, 0.14, 13)),
             (104, 120, 150, near(A, 0.13, 14)),
             (201, 0, 40, near(B, 0.12, 21)), (202, 50, 90, near(B, 0.13, 22)), (203, 100, 140, near(B, 0.12, 23)),
             (301, 160, 200, direction(3)), (401, 200, 230, None)]
    traces = add_traces(hamilton, specs)
    grouping.regroup()
    return {key: [traces[t].pk for t in ids] for key, ids in
            {"A": [101, 102, 103, 104], "B": [201, 202, 203], "C": [301], "D": [401]}.items()}


@pytest.fixture
def staff(client, staff_user) -> Client:
    client.force_login(staff_user)
    return client


def post(client: Client, action: str, body) -> tuple[int, dict]:
    response = client.post(API + action, json.dumps(body), content_type="application/json")
    assert response["Content-Type"].startswith("application/json")
    assert "Server-Timing" in response
    return response.status_code, response.json()


def groups_on(html: str) -> list[set[int]]:
    """The groups of a cast page, as sets of trace pks."""
    return [{int(pk) for pk in found.split(",")}
            for found in re.findall(r'<section class="cast-group[^"]*" data-key="[^"]*" data-pks="([0-9,]+)"', html)]


def page(client: Client, url: str = "/admin/cast/") -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


# --------------------------------------------------------------------------- grouping


def test_groups_are_clusterings_groups(staff, people):
    html = page(staff)
    shown = groups_on(html)
    assert set(people["A"]) in shown and set(people["B"]) in shown
    assert {people["C"][0]} in shown and {people["D"][0]} in shown  # alone, and without an embedding
    assert shown[0] == set(people["A"])  # most traces first
    rows = list(unbound_traces().order_by("file_id", "start_frame", "trace_id")
                .values_list("pk", "embedding", "file_id", "start_frame", "end_frame"))
    assert sorted(map(sorted, shown)) == sorted(map(sorted, group_unbound_traces(rows)))
    assert 'class="cast-tile"' in html and "/trace/101/thumbnail" in html and "/trace/101/video" in html
    assert "4 traces" in html and "Named people (0)" in html


def test_the_fast_grouping_is_the_same_as_clustering(hamilton, facenet):
    """On the demo's real embeddings and on random people: the same groups as group_unbound_traces."""
    _load_demo(hamilton, "face_recognition_short_hamilton_clip")
    _load_demo(facenet, "facenet_pytorch_video")
    rows = list(Trace.objects.order_by("file_id", "start_frame", "trace_id")
                .values_list("pk", "embedding", "file_id", "start_frame", "end_frame"))
    assert any(len(g) > 1 for g in group_unbound_traces(rows))
    assert grouping.group_rows(rows) == group_unbound_traces(rows)
    rng = np.random.default_rng(5)
    centres = [direction(100 + n) for n in range(40)]
    for trial in range(3):
        synthetic = []
        for pk in range(1, 700):
            start = int(rng.integers(0, 2000))
            vector = normalise(centres[int(rng.integers(0, 40))] + rng.normal(scale=0.025 + 0.005 * trial, size=128))
            blob = None if rng.random() < 0.1 else vector.astype("<f4").tobytes()
            synthetic.append((pk, blob, pk % 3, start, start + int(rng.integers(5, 300))))
        synthetic.sort(key=lambda r: (r[2], r[3], r[0]))
        assert grouping.group_rows(synthetic) == group_unbound_traces(synthetic)


def test_one_file_shows_only_its_traces(staff, people, facenet):
    _load_demo(facenet, "facenet_pytorch_video")
    everything = page(staff)
    facenet_pks = set(Trace.objects.filter(file=facenet).values_list("pk", flat=True))
    assert facenet_pks & set().union(*groups_on(everything))
    html = page(staff, f"/admin/cast/{facenet.file_uuid}/")
    assert set().union(*groups_on(html)) <= facenet_pks and "Cast of facenet_pytorch_video.mp4" in html
    assert staff.get(f"/admin/cast/{'0' * 32}/").status_code == 404


def test_screen_time_comes_from_the_frames(staff, hamilton, people):
    from identities.cooccurrence import FrameClock

    clock = FrameClock.for_file(hamilton)
    html = page(staff)
    # Group A: frames 0-30, 40-70, 80-110, 120-150 (31 frames each), timed by the clip's frame index.
    expected = sum(clock.seconds(np.array([s]), np.array([e + 1]))[0] for s, e in [(0, 30), (40, 70), (80, 110),
                                                                                    (120, 150)])
    section = re.search(r'data-pks="{}".*?cast-time[^>]*>([0-9.]+) s'.format(",".join(map(str, people["A"]))), html,
                        re.S)
    assert section and float(section.group(1)) == pytest.approx(expected, abs=0.05)


def test_pages_of_groups(staff, hamilton):
    specs = [(500 + n, (n % 25) * 10, (n % 25) * 10 + 5, direction(500 + n)) for n in range(45)]
    add_traces(hamilton, specs)
    first = page(staff)
    assert len(groups_on(first)) == service.GROUPS_PER_PAGE and "page 1 of 2" in first
    second = page(staff, "/admin/cast/?page=2")
    assert len(groups_on(second)) == 5 and not set().union(*groups_on(first)) & set().union(*groups_on(second))


def test_a_big_group_shows_its_best_faces_and_names_all(staff, hamilton):
    person = direction(9)
    specs = [(600 + n, n * 13, n * 13 + 10, near(person, 0.1, 600 + n))
             for n in range(service.FACES_PER_GROUP + 3)]
    traces = add_traces(hamilton, specs)
    html = page(staff)
    assert "+3 more" in html
    group = groups_on(html)[0]
    assert group == {t.pk for t in traces.values()}
    hidden = re.search(r'class="cast-more" data-pks="([0-9,]+)"', html).group(1).split(",")
    status, body = post(staff, "tiles", {"trace_pks": [int(pk) for pk in hidden]})
    assert status == 200 and body["html"].count('class="cast-tile"') == 3
    status, body = post(staff, "name", {"trace_pks": sorted(group), "name": "Everyone"})
    assert status == 200 and Trace.objects.filter(identity__name="Everyone").count() == len(specs)


# --------------------------------------------------------------------------- naming


def test_naming_binds_every_trace_of_the_group(staff, staff_user, people):
    status, body = post(staff, "name", {"trace_pks": people["A"], "name": "  Ada Person "})
    assert status == 200 and body["success"] is True
    ada = Identity.objects.get(identity_uuid=body["identity"]["identity_uuid"])
    assert ada.name == "Ada Person" and ada.source == Identity.Source.USER_DEFINED
    assert sorted(ada.traces.values_list("pk", flat=True)) == sorted(people["A"]) == body["traces"]
    change = CurationChange.objects.get(pk=body["change"]["id"])
    assert change.kind == "bind" and change.user == staff_user
    html = page(staff)
    assert set(people["A"]) not in groups_on(html)
    assert re.search(r"Ada Person</span>\s*<span class=\"cast-person-stats\">4 traces · [0-9.]+ s", html)


def test_a_taken_name_is_a_409_with_the_person_then_merge_or_a_different_person(staff, people):
    ada = Identity.objects.create(name="Ada Person")
    Trace.objects.filter(pk=people["C"][0]).update(identity=ada)
    status, body = post(staff, "name", {"trace_pks": people["A"], "name": "ada person"})
    assert status == 409 and body["success"] is False and body["error"]["code"] == "CONFLICT"
    existing = body["error"]["details"]["existing"]
    assert existing["identity_uuid"] == ada.identity_uuid and existing["name"] == "Ada Person"
    assert existing["trace_count"] == 1 and existing["url"].endswith(f"/identity/{ada.pk}/change/")
    assert not Trace.objects.filter(pk__in=people["A"], identity__isnull=False).exists()
    # "Merge into existing": the group goes to that person.
    status, body = post(staff, "bind", {"trace_pks": people["A"], "identity_uuid": ada.identity_uuid})
    assert status == 200 and ada.traces.count() == 5
    # "A different person": a second person of the same name, on purpose.
    status, body = post(staff, "name", {"trace_pks": people["B"], "name": "Ada Person", "allow_duplicate": True})
    assert status == 200 and Identity.objects.filter(name="Ada Person").count() == 2
    assert body["identity"]["identity_uuid"] != ada.identity_uuid


def test_traces_named_meanwhile_are_left_alone(staff, people):
    other = Identity.objects.create(name="Someone else")
    Trace.objects.filter(pk=people["A"][0]).update(identity=other)
    status, body = post(staff, "name", {"trace_pks": people["A"], "name": "Ada"})
    assert status == 200 and body["skipped"] == [people["A"][0]] and "left alone" in body["message"]
    assert Trace.objects.get(pk=people["A"][0]).identity == other
    Trace.objects.filter(pk__in=people["B"]).update(identity=other)
    status, body = post(staff, "name", {"trace_pks": people["B"], "name": "Bob"})
    assert status == 409 and sorted(body["error"]["details"]["skipped"]) == sorted(people["B"])
    assert not Identity.objects.filter(name="Bob").exists()


def test_accept_a_confident_suggestion_in_one_step(staff, hamilton, people):
    ada = Identity.objects.create(name="Ada Lovelace")
    add_traces(hamilton, [(150, 160, 190, near(A, 0.2, 15))])  # A, named, later in the clip
    Trace.objects.filter(file=hamilton, trace_id=150).update(identity=ada)
    html = page(staff)
    chip = re.search(r'class="cast-chip confident"\s+data-identity="([0-9a-f]+)" data-name="Ada Lovelace"', html)
    assert chip and chip.group(1) == ada.identity_uuid and "Accept: Ada Lovelace" in html
    status, body = post(staff, "bind", {"trace_pks": people["A"], "identity_uuid": ada.identity_uuid})
    assert status == 200 and ada.traces.count() == 5 and body["message"] == "Bound 4 traces to Ada Lovelace"


def test_a_weak_match_is_shown_as_weak(staff, hamilton, people):
    bob = Identity.objects.create(name="Bob")
    # B's traces lie about 0.12 from B: a named trace in the middle of the calibrated weak band from B's
    # face is a weak match for the group.
    add_traces(hamilton, [(250, 160, 200, near(B, (CONFIDENT_DISTANCE + SUGGESTION_MAX_DISTANCE) / 2, 25))])
    Trace.objects.filter(file=hamilton, trace_id=250).update(identity=bob)
    html = page(staff)
    group = re.search(r'data-pks="{}".*?</section>'.format(",".join(map(str, people["B"]))), html, re.S).group(0)
    assert 'class="cast-chip weak"' in group and "maybe Bob?" in group and "Accept: Bob" not in group
    summary = service.summaries(service.Scope(), [people["B"]])[0]
    assert summary["suggestions"][0]["name"] == "Bob" and summary["suggestions"][0]["confident"] is False
    assert CONFIDENT_DISTANCE < summary["suggestions"][0]["distance"] <= SUGGESTION_MAX_DISTANCE


def test_summary_after_taking_a_face_out(staff, hamilton, people):
    ada = Identity.objects.create(name="Ada")
    add_traces(hamilton, [(150, 160, 190, near(A, 0.2, 15))])
    Trace.objects.filter(file=hamilton, trace_id=150).update(identity=ada)
    status, body = post(staff, "summary", {"groups": [people["A"][:-1], people["A"][-1:]]})
    assert status == 200
    kept, alone = body["groups"]
    assert kept["trace_count"] == 3 and alone["trace_count"] == 1
    assert alone["suggestions"][0]["identity_uuid"] == ada.identity_uuid
    single = Trace.objects.get(pk=people["A"][-1])
    assert alone["suggestions"][0]["distance"] == pytest.approx(suggest_identities(single)[0].distance, abs=1e-3)
    assert alone["screen_seconds"] > 0


# --------------------------------------------------------------------------- hide


def test_hide_keeps_the_trace_out_of_groups_clustering_and_evidence(staff, people, hamilton):
    hidden = people["B"][0]
    status, body = post(staff, "hide", {"trace_pks": [hidden]})
    assert status == 200 and body["traces"] == [hidden] and body["change"]["kind"] == "hide"
    assert Trace.objects.get(pk=hidden).ignored is True
    html = page(staff)
    assert hidden not in set().union(*groups_on(html)) and "Hidden (1)" in html
    assert set(people["B"][1:]) in groups_on(html)
    shown = page(staff, "/admin/cast/?hidden=1")
    assert f'data-pk="{hidden}"' in shown and "cast-unhide" in shown
    call_command("cluster_traces", "--min-size", "1")
    assert Trace.objects.get(pk=hidden).identity is None  # clustering leaves it alone
    assert Trace.objects.filter(pk=people["B"][1]).exclude(identity=None).exists()
    # Hidden traces are no evidence for suggestions either.
    bob = Identity.objects.create(name="Bob")
    Trace.objects.filter(pk=hidden).update(identity=bob)
    Trace.objects.filter(pk__in=people["B"][1:]).update(identity=None)
    assert all(s.name != "Bob" for s in suggest_identities(Trace.objects.get(pk=people["B"][1])))


def test_unhide_puts_the_trace_back_into_its_group(staff, people):
    post(staff, "hide", {"trace_pks": [people["A"][1]]})
    assert set(people["A"]) - {people["A"][1]} in groups_on(page(staff))
    status, body = post(staff, "unhide", {"trace_pks": [people["A"][1]]})
    assert status == 200 and body["change"]["kind"] == "unhide"
    assert set(people["A"]) in groups_on(page(staff))  # it joins the group again, as clustering adds a trace
    status, body = post(staff, "unhide", {"trace_pks": [people["A"][1]]})
    assert status == 200 and body["traces"] == [] and "change" not in body  # nothing to record


# --------------------------------------------------------------------------- undo


def test_undo_each_action(staff, staff_user, people):
    post(staff, "name", {"trace_pks": people["A"], "name": "Ada"})
    status, body = post(staff, "undo", {})
    assert status == 200 and body["message"].startswith("Undid naming") and body["change"]["kind"] == "bind"
    assert not Trace.objects.filter(pk__in=people["A"], identity__isnull=False).exists()
    assert set(people["A"]) in groups_on(page(staff))  # the group forms again
    # Undo removes what the action made: no empty "Ada" left behind, nor offered by the autocomplete.
    assert not Identity.objects.filter(name="Ada").exists()
    assert staff.get(API + "people?q=Ada").json()["results"] == []

    bob = Identity.objects.create(name="Bob")
    post(staff, "bind", {"trace_pks": people["B"], "identity_uuid": bob.identity_uuid})
    assert post(staff, "undo", {})[0] == 200 and bob.traces.count() == 0

    post(staff, "hide", {"trace_pks": people["C"]})
    status, body = post(staff, "undo", {})
    assert status == 200 and "shown again" in body["message"] and not Trace.objects.get(pk=people["C"][0]).ignored

    Trace.objects.filter(pk__in=people["C"]).update(ignored=True)
    post(staff, "unhide", {"trace_pks": people["C"]})
    status, body = post(staff, "undo", {})
    assert status == 200 and "hidden again" in body["message"] and Trace.objects.get(pk=people["C"][0]).ignored

    # Everything is undone now (older changes were undone already): nothing left.
    status, body = post(staff, "undo", {})
    assert status == 409 and body["error"]["message"].startswith("Nothing to undo")


def test_undo_never_clobbers_a_newer_edit(staff, people, django_user_model):
    post(staff, "name", {"trace_pks": people["A"], "name": "Ada"})
    someone = Identity.objects.create(name="Someone")
    other_user = django_user_model.objects.create_user("other", is_staff=True)
    curation.bind_traces(someone, people["A"], other_user)  # a colleague moved them since
    status, body = post(staff, "undo", {})
    assert status == 409
    assert set(someone.traces.values_list("pk", flat=True)) == set(people["A"])


def test_undo_of_a_merge_is_left_to_the_persons_page(staff, staff_user, people):
    a, b = Identity.objects.create(name="A1"), Identity.objects.create(name="A2")
    Trace.objects.filter(pk=people["A"][0]).update(identity=b)
    curation.merge_identities(a, [b], staff_user)
    status, body = post(staff, "undo", {})
    assert status == 409 and "merge" in body["error"]["message"]
    assert body["error"]["details"]["url"] == f"/admin/identities/identity/{a.pk}/change/"


def test_hide_and_unhide_are_curation_changes(people, staff_user):
    change = curation.hide_traces(people["A"], staff_user)
    assert change.kind == CurationChange.Kind.HIDE and change.payload == {"traces": sorted(people["A"])}
    assert curation.hide_traces(people["A"], staff_user) is None  # already hidden
    assert curation.can_undo(change)
    Trace.objects.filter(pk__in=people["A"]).update(ignored=False)  # shown again by hand since
    assert not curation.can_undo(change)
    with pytest.raises(curation.UndoError):
        curation.undo(change, staff_user)
    change.refresh_from_db()
    assert change.undone_at is None  # refused, the entry is kept


# --------------------------------------------------------------------------- autocomplete


def test_autocomplete_offers_active_people_only(staff, people):
    active = Identity.objects.create(name="Ada Lovelace", metadata={"aliases": ["Countess"]})
    survivor = Identity.objects.create(name="Ada King")
    merged = Identity.objects.create(name="Ada Byron", status=Identity.Status.INACTIVE, merged_into=survivor)
    Identity.objects.create(name="Ada Gone", status=Identity.Status.INACTIVE)
    Identity.objects.create(name="Ada cluster", source=Identity.Source.AUTO, status=Identity.Status.PENDING)
    Trace.objects.filter(pk__in=people["A"][:2]).update(identity=active)
    response = staff.get(API + "people?q=ada")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["name"] for r in results] == ["Ada King", "Ada Lovelace"]
    assert results[1]["trace_count"] == 2 and results[1]["face_url"].endswith("/thumbnail")
    assert merged.identity_uuid not in {r["identity_uuid"] for r in results}
    assert [r["name"] for r in staff.get(API + "people?q=count").json()["results"]] == ["Ada Lovelace"]
    bound = post(staff, "bind", {"trace_pks": people["B"], "identity_uuid": merged.identity_uuid})
    assert bound[0] == 409 and "merged into Ada King" in bound[1]["error"]["message"]


# --------------------------------------------------------------------------- permissions and errors


def test_who_may_see_and_act(client, people, django_user_model):
    url = "/admin/cast/"
    assert client.get(url).status_code == 302  # anonymous: the admin's login
    status, body = post(client, "name", {"trace_pks": people["A"], "name": "X"})
    assert status == 401 and body["success"] is False
    client.force_login(django_user_model.objects.create_user("plain", password="x"))
    assert client.get(url)["Location"].startswith("/admin/login/")
    assert post(client, "hide", {"trace_pks": people["A"]})[0] == 403
    # Staff without permissions: no page; with view only: the page without any action.
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer2", password="x", is_staff=True)
    client.force_login(viewer)
    assert client.get(url).status_code == 403
    viewer.user_permissions.add(Permission.objects.get(codename="view_trace"))
    client.force_login(django_user_model.objects.get(pk=viewer.pk))
    html = page(client)
    assert groups_on(html) and 'class="cast-name"' not in html and "cast-remove" not in html
    for action in ("name", "bind", "hide", "unhide", "undo"):
        status, body = post(client, action, {"trace_pks": people["A"], "name": "X", "identity_uuid": "0" * 32})
        assert status == 403 and body["error"]["code"] == "FORBIDDEN", action
    assert client.get(API + "people?q=a").status_code == 200  # looking is allowed
    assert not Trace.objects.filter(identity__isnull=False).exists() and not Trace.objects.filter(ignored=True).exists()


def test_csrf_and_method_errors_are_json(staff_user, people):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    response = client.post(API + "hide", json.dumps({"trace_pks": people["A"]}), content_type="application/json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "CSRF_FAILED"
    client.get("/admin/cast/")  # sets the CSRF cookie, as the page does
    token = client.cookies["csrftoken"].value
    response = client.post(API + "hide", json.dumps({"trace_pks": people["A"][:1]}), content_type="application/json",
                           headers={"X-CSRFToken": token})
    assert response.status_code == 200
    response = client.get(API + "hide")
    assert response.status_code == 405 and response["Allow"] == "POST" and response.json()["success"] is False


@pytest.mark.parametrize("body, status, parameter", [
    ("not json", 400, None),
    ([1, 2], 400, None),
    ({"name": "X"}, 400, "trace_pks"),
    ({"trace_pks": "1,2", "name": "X"}, 400, "trace_pks"),
    ({"trace_pks": [True], "name": "X"}, 400, "trace_pks"),
    ({"trace_pks": [1.5], "name": "X"}, 400, "trace_pks"),
    ({"trace_pks": [-3], "name": "X"}, 400, "trace_pks"),
    ({"trace_pks": [2**70], "name": "X"}, 400, "trace_pks"),
    ({"trace_pks": list(range(1, 10_002)), "name": "X"}, 400, "trace_pks"),
    ({"trace_pks": [1], "name": "   "}, 400, "name"),
    ({"trace_pks": [1], "name": 5}, 400, "name"),
    ({"trace_pks": [1], "name": "x" * 201}, 400, "name"),
    ({"trace_pks": [1], "name": "Bad\x00name"}, 400, "name"),
    ({"trace_pks": [1], "name": "Bidi\u202ename"}, 400, "name"),
    ({"trace_pks": [1], "name": "X", "allow_duplicate": "yes"}, 400, "allow_duplicate"),
])
def test_bad_requests_are_json_400s(staff, people, body, status, parameter):
    raw = body if isinstance(body, str) else json.dumps(body)
    response = staff.post(API + "name", raw, content_type="application/json")
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == "BAD_REQUEST"
    if parameter:
        assert error["details"]["parameter"] == parameter
    assert not Identity.objects.exists()


def test_unknown_person_and_unknown_traces(staff, people):
    status, body = post(staff, "bind", {"trace_pks": people["A"], "identity_uuid": "f" * 32})
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    status, body = post(staff, "name", {"trace_pks": [999_999], "name": "Nobody"})
    assert status == 409 and body["error"]["details"]["skipped"] == [999_999]
    assert post(staff, "summary", {"groups": "x"})[0] == 400
    assert post(staff, "summary", {"groups": []})[0] == 400
    assert post(staff, "tiles", {"trace_pks": []})[0] == 400


def test_names_are_escaped_in_html_and_exact_in_json(staff, people):
    evil = "<script>alert('x')</script> & \"Bob\""
    status, body = post(staff, "name", {"trace_pks": people["A"], "name": evil})
    assert status == 200 and body["identity"]["name"] == evil
    html = page(staff)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;Bob&quot;" in html
    results = staff.get(API + "people?q=script").json()["results"]
    assert results[0]["name"] == evil
    status, body = post(staff, "name", {"trace_pks": people["B"], "name": evil.upper()})
    assert status == 409 and body["error"]["details"]["existing"]["name"] == evil


def test_pending_clusters_are_groups_to_name(staff, people):
    call_command("cluster_traces")
    cluster = Identity.objects.get(source=Identity.Source.AUTO, traces__pk=people["A"][0])
    html = page(staff)
    assert set(people["A"]) in groups_on(html) and cluster.name in html
    assert f"{cluster.name}</span>" not in html.split('id="cast-named"')[1]  # not a named person
    status, body = post(staff, "name", {"trace_pks": people["A"], "name": "Ada"})
    assert status == 200 and Identity.objects.get(name="Ada").traces.count() == 4


# --------------------------------------------------------------------------- queries and the kept grouping


def test_queries_do_not_grow_with_the_page(staff, hamilton, people, django_assert_max_num_queries):
    page(staff)  # the kept grouping and the frame clock exist
    for url in ("/admin/cast/", "/admin/cast/?fragment=body", f"/admin/cast/{hamilton.file_uuid}/"):
        staff.get(url)
        with django_assert_max_num_queries(16):
            page(staff, url)
    named = Identity.objects.create(name="Ada")
    Trace.objects.filter(pk=people["C"][0]).update(identity=named)
    add_traces(hamilton, [(700 + n, (n % 27) * 10, (n % 27) * 10 + 6, near(direction(700 + n // 2), 0.1, n))
                          for n in range(80)])
    page(staff)
    with django_assert_max_num_queries(16):
        html = page(staff)
    assert len(groups_on(html)) == service.GROUPS_PER_PAGE


def test_the_grouping_is_kept_and_carried_over(staff, people):
    page(staff)
    assert grouping.current_grouping().how == "kept"
    post(staff, "name", {"trace_pks": people["B"], "name": "Bob"})
    current = grouping.current_grouping()
    assert current.how == "carried" and people["B"][0] not in current.unnamed.pks.tolist()
    assert grouping.current_grouping().how == "kept"
    post(staff, "undo", {})
    assert set(people["B"]) in groups_on(page(staff))
    _assert_sums_match_members()
    post(staff, "hide", {"trace_pks": [people["A"][0]]})
    page(staff)
    _assert_sums_match_members()
    post(staff, "regroup", {})
    assert grouping.current_grouping().how == "grouped"


def _assert_sums_match_members():
    """The kept per-group sums, carried over by additions and subtractions, equal a fresh sum of the members."""
    from django.core.cache import cache

    kept = cache.get(grouping.CACHE_KEY)
    current = grouping.current_grouping()
    blobs = dict(Trace.objects.filter(pk__in=current.unnamed.pks.tolist()).values_list("pk", "embedding"))
    with_vector = current.unnamed.has_embedding
    vectors, _ = grouping.vectors_of([blobs[pk] for pk in current.unnamed.pks[with_vector].tolist()])
    fresh = grouping.Sums.of(current.labels[with_vector], vectors)
    sums = kept["sums"]
    assert sums.labels.tolist() == fresh.labels.tolist() and sums.counts.tolist() == fresh.counts.tolist()
    assert np.allclose(sums.totals, fresh.totals, atol=1e-5)
