"""Cast page v2 (issue 20), server side: "not this person" kept, undo removes what it made, one
name normalisation at every entry point, regroup needs the change permission, Momentry's header.

Real traces (the Hamilton clip with deterministic embeddings, as tests/test_cast_page.py), real
HTTP through Django's test client, the admin's own forms.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command

from identities import constraints, names
from identities.cast import grouping
from identities.models import CurationChange, Identity, NotSamePerson
from identities.suggestions import suggest_identities
from media_api.models import Trace
from tests.helpers_rest import key_client
from tests.test_cast_page import API, A, add_traces, groups_on, near, page, post

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(hamilton):
    """A in four traces one after the other, a look-alike grouped with them, and B in three."""
    specs = [(101, 0, 30, near(A, 0.12, 11)), (102, 40, 70, near(A, 0.12, 12)), (103, 80, 110, near(A, 0.14, 13)),
             (104, 120, 150, near(A, 0.13, 14)), (105, 160, 190, near(A, 0.2, 15))]
    traces = add_traces(hamilton, specs)
    grouping.regroup()
    return {"A": [traces[t].pk for t in (101, 102, 103, 104)], "lookalike": traces[105].pk}


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


# --------------------------------------------------------------------------- 1. "not this person" is kept


def test_not_this_person_is_kept_and_undoable(staff, staff_user, people):
    everyone = {*people["A"], people["lookalike"]}
    assert everyone in groups_on(page(staff))
    status, body = post(staff, "separate", {"trace_pk": people["lookalike"], "group_pks": sorted(everyone)})
    assert status == 200 and body["change"]["kind"] == "separate"
    assert NotSamePerson.objects.filter(trace_id=people["lookalike"]).count() == 4
    # A reload (and a regroup from scratch) keeps the face apart.
    shown = groups_on(page(staff))
    assert set(people["A"]) in shown and {people["lookalike"]} in shown
    grouping.regroup()
    shown = groups_on(page(staff))
    assert set(people["A"]) in shown and {people["lookalike"]} in shown
    assert "1 unnamed" not in page(staff)
    # Shown in the curation history...
    change = CurationChange.objects.get(kind="separate")
    assert change.user == staff_user and "Not this person" in change.summary
    history = staff.get("/admin/identities/curationchange/").content.decode()
    assert "Not this person: trace 105" in history
    # ... and undone by u: the face is grouped with them again.
    status, body = post(staff, "undo", {})
    assert status == 200 and body["change"]["kind"] == "separate"
    assert not NotSamePerson.objects.exists()
    assert everyone in groups_on(page(staff))


def test_suggestions_and_clustering_respect_it(staff, people):
    everyone = sorted({*people["A"], people["lookalike"]})
    post(staff, "separate", {"trace_pk": people["lookalike"], "group_pks": everyone})
    # Clustering: the look-alike is never bound with them.
    call_command("cluster_traces", "--min-size", "1")
    cluster = Trace.objects.get(pk=people["A"][0]).identity
    assert set(cluster.traces.values_list("pk", flat=True)) == set(people["A"])
    assert Trace.objects.get(pk=people["lookalike"]).identity_id != cluster.pk
    # Suggestions: once they are named, they are not offered for the look-alike.
    Trace.objects.filter(pk=people["lookalike"]).update(identity=None)
    Identity.objects.filter(pk=cluster.pk).update(status="confirmed", source="user_defined", name="Ada")
    lookalike = Trace.objects.get(pk=people["lookalike"])
    assert all(s.name != "Ada" for s in suggest_identities(lookalike))
    NotSamePerson.objects.all().delete()
    assert suggest_identities(lookalike)[0].name == "Ada"  # without the constraint they would be


def test_the_page_does_not_suggest_a_person_the_face_is_not(staff, hamilton, people):
    ada = Identity.objects.create(name="Ada")
    Trace.objects.filter(pk__in=people["A"]).update(identity=ada)
    html = page(staff)
    assert "Accept: Ada" in html  # the look-alike alone, a confident match
    NotSamePerson.objects.create(trace_id=people["lookalike"], other_id=people["A"][0])
    assert "Accept: Ada" not in page(staff) and "maybe Ada" not in page(staff)
    assert constraints.excluded_identities([people["lookalike"]]) == {people["lookalike"]: {ada.pk}}


def test_not_this_person_in_a_pending_cluster_leaves_it(staff, people):
    call_command("cluster_traces", "--min-size", "1")
    cluster = Trace.objects.get(pk=people["lookalike"]).identity
    assert cluster is not None and cluster.status == "pending"
    members = sorted(cluster.traces.values_list("pk", flat=True))
    status, body = post(staff, "separate", {"trace_pk": people["lookalike"], "group_pks": members})
    assert status == 200 and Trace.objects.get(pk=people["lookalike"]).identity is None
    assert NotSamePerson.objects.filter(trace_id=people["lookalike"], identity=cluster).exists()
    call_command("cluster_traces", "--min-size", "1")  # it does not join that cluster again
    assert Trace.objects.get(pk=people["lookalike"]).identity_id != cluster.pk
    Trace.objects.filter(pk=people["lookalike"]).update(identity=None)
    assert post(staff, "undo", {})[0] == 200
    assert Trace.objects.get(pk=people["lookalike"]).identity_id == cluster.pk


def test_separate_bad_requests(staff, people):
    assert post(staff, "separate", {"trace_pk": "x", "group_pks": people["A"]})[0] == 400
    assert post(staff, "separate", {"trace_pk": people["A"][0], "group_pks": []})[0] == 400
    Trace.objects.filter(pk=people["A"][0]).update(ignored=True)
    assert post(staff, "separate", {"trace_pk": people["A"][0], "group_pks": people["A"]})[0] == 409


# --------------------------------------------------------------------------- 2. undo removes what it made


def test_undoing_a_name_removes_the_new_person_only(staff, people):
    post(staff, "name", {"trace_pks": people["A"], "name": "Orphan test"})
    assert post(staff, "undo", {})[0] == 200
    assert not Identity.objects.filter(name="Orphan test").exists()
    assert staff.get(API + "people?q=Orphan").json()["results"] == []
    # A person who was used meanwhile (another trace bound to them) stays.
    status, body = post(staff, "name", {"trace_pks": people["A"][:2], "name": "Kept"})
    kept = Identity.objects.get(name="Kept")
    post(staff, "bind", {"trace_pks": [people["lookalike"]], "identity_uuid": kept.identity_uuid})
    post(staff, "undo", {})  # the bind of the look-alike
    post(staff, "undo", {})  # the naming
    assert not Identity.objects.filter(name="Kept").exists()  # both undone: nothing used them any more
    post(staff, "name", {"trace_pks": people["A"][:2], "name": "Bound elsewhere"})
    other = Identity.objects.get(name="Bound elsewhere")
    Trace.objects.filter(pk=people["A"][3]).update(identity=other)  # bound by someone else since
    post(staff, "undo", {})
    assert Identity.objects.filter(pk=other.pk).exists()


# --------------------------------------------------------------------------- 4. one name normalisation


@pytest.mark.parametrize("raw, stored", [
    ("  Barack \t Obama\n", "Barack Obama"),
    ("Barack  Obama", "Barack Obama"),
    ("Barack\u200b Obama\ufeff", "Barack Obama"),
    ("Cafe\u0301 Noir", "Café Noir"),  # NFC
    ("\u0645\u06cc\u200c\u0631\u0648\u0632", "\u0645\u06cc\u200c\u0631\u0648\u0632"),  # a ZWNJ inside a word stays
    ("Ann\u200d", "Ann"),
])
def test_normalise(raw, stored):
    assert names.clean(raw) == stored


@pytest.mark.parametrize("raw", ["Bidi\u202eman", "Nul\x00l", "Esc\x1bape", "\u200b", "  ", "x" * 201, 5])
def test_refused(raw):
    with pytest.raises(names.InvalidName):
        names.clean(raw)


def test_keys_fold_case_and_spacing():
    assert names.key("Barack Obama\u200b") == names.key("barack  OBAMA") == names.key("Barack Obama")
    assert names.key("STRASSE") == names.key("straße")


def rest(client, method: str, url: str, body: dict):
    return getattr(client, method)(url, json.dumps(body), content_type="application/json")


@pytest.fixture
def admin_api(plain_user):
    return key_client(plain_user, write=True)[0]


def test_rest_post_and_patch_normalise_and_judge_duplicates(admin_api):
    url = "/api/v1/identities"
    response = rest(admin_api, "post", url, {"name": "Barack Obama"})
    assert response.status_code == 201, response.content
    obama = response.json()["identity_uuid"]
    for twin in ("Barack Obama\u200b", "Barack  Obama", "barack obama", "Barack\nObama", " BARACK OBAMA "):
        response = rest(admin_api, "post", url, {"name": twin})
        assert response.status_code == 409, (twin, response.content)
        assert response.json()["error"]["details"]["existing"]["identity_uuid"] == obama
    response = rest(admin_api, "post", url, {"name": "Barack Obama\u200b", "allow_duplicate": True})
    assert response.status_code == 201 and response.json()["name"] == "Barack Obama"
    for bad in ("Evil\u202eman", "Nul\u0000", "\u200b\u200b"):
        response = rest(admin_api, "post", url, {"name": bad})
        assert response.status_code == 400, (bad, response.content)
        assert response.json()["error"]["code"] == "BAD_REQUEST"
    michelle = rest(admin_api, "post", url, {"name": "Michelle\n  Obama"}).json()
    assert michelle["name"] == "Michelle Obama"
    patch = f"/api/v1/identity/{michelle['identity_uuid']}"
    assert rest(admin_api, "patch", patch, {"name": "barack\u200b obama"}).status_code == 409
    assert rest(admin_api, "patch", patch, {"name": "Evil\u202eman"}).status_code == 400
    response = rest(admin_api, "patch", patch, {"name": "  Michelle   LaVaughn\tObama "})
    assert response.status_code == 200 and response.json()["name"] == "Michelle LaVaughn Obama"
    assert set(Identity.objects.values_list("name", flat=True)) == {"Barack Obama", "Michelle LaVaughn Obama"}


def test_admin_form_normalises_and_judges_duplicates(staff, hamilton):
    Identity.objects.create(name="Barack Obama")
    add = "/admin/identities/identity/add/"
    form = {"name": "Barack\u200b  Obama", "status": "confirmed", "identity_type": "people", "metadata": "{}",
            "traces-TOTAL_FORMS": "0", "traces-INITIAL_FORMS": "0", "traces-MIN_NUM_FORMS": "0",
            "traces-MAX_NUM_FORMS": "1000"}
    response = staff.post(add, form)
    assert response.status_code == 200 and "already has this name" in response.content.decode()
    response = staff.post(add, {**form, "name": "Evil\u202eman"})
    assert response.status_code == 200 and "direction-changing" in response.content.decode()
    response = staff.post(add, {**form, "name": "Michelle\u200b \r\n Obama"})
    assert response.status_code == 302
    assert Identity.objects.filter(name="Michelle Obama").count() == 1


def test_cast_box_normalises_and_judges_duplicates(staff, people):
    Identity.objects.create(name="Barack Obama")
    status, body = post(staff, "name", {"trace_pks": people["A"], "name": "barack\u200b  obama"})
    assert status == 409 and body["error"]["details"]["existing"]["name"] == "Barack Obama"
    status, body = post(staff, "name", {"trace_pks": people["A"], "name": " Michelle\n Obama\u200b"})
    assert status == 200 and body["identity"]["name"] == "Michelle Obama"


# --------------------------------------------------------------------------- 8. permissions, 9. header


def test_regroup_needs_the_change_permission(client, people, django_user_model):
    viewer = django_user_model.objects.create_user("viewer3", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_trace"))
    client.force_login(viewer)
    status, body = post(client, "regroup", {})
    assert status == 403 and body["error"]["code"] == "FORBIDDEN"
    assert "cast-regroup" not in page(client)
    for action in ("separate", "name", "bind", "hide", "unhide", "undo"):
        assert post(client, action, {})[0] == 403, action
    for action in ("tiles", "summary"):  # reads stay open to viewers
        assert post(client, action, {"trace_pks": people["A"], "groups": [people["A"]]})[0] == 200, action
    viewer.user_permissions.add(Permission.objects.get(codename="change_trace"))
    client.force_login(django_user_model.objects.get(pk=viewer.pk))
    assert post(client, "regroup", {})[0] == 200


def test_the_admin_says_momentry(staff):
    html = staff.get("/admin/").content.decode()
    assert "Django administration" not in html and "Django site admin" not in html
    assert ">Momentry<" in html and "<title>" in html and "Momentry" in html.split("<title>")[1].split("</title>")[0]
    assert "Momentry" in page(staff).split("<title>")[1].split("</title>")[0]


# --------------------------------------------------------------------------- the face of a person


@pytest.fixture
def ada(hamilton, people):
    ada = Identity.objects.create(name="Ada")
    Trace.objects.filter(pk__in=people["A"]).update(identity=ada)
    Trace.objects.filter(pk=people["A"][0]).update(face_count=99)  # the biggest: the face by default
    return ada


def test_choose_the_face_of_a_person_over_rest(admin_api, hamilton, ada, people):
    url = f"/api/v1/identity/{ada.identity_uuid}/thumbnail"
    first = admin_api.get(url)
    assert first.status_code == 200 and first["Content-Type"] == "image/jpeg"
    biggest = Trace.objects.get(pk=people["A"][0])
    same = admin_api.get(f"/api/v1/file/{hamilton.file_uuid}/trace/{biggest.trace_id}/thumbnail")
    assert first.content == same.content and first["ETag"] == same["ETag"]
    assert admin_api.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(first.content)).size == (320, 320)
    # Choose another of her traces: the picture and its ETag change.
    other = Trace.objects.get(pk=people["A"][2])
    response = rest(admin_api, "put", f"/api/v1/identity/{ada.identity_uuid}/face",
                    {"file_uuid": hamilton.file_uuid, "trace_id": other.trace_id})
    assert response.status_code == 200, response.content
    chosen = admin_api.get(url)
    assert chosen.status_code == 200 and chosen["ETag"] != first["ETag"]
    expected = admin_api.get(f"/api/v1/file/{hamilton.file_uuid}/trace/{other.trace_id}/thumbnail")
    assert chosen.content == expected.content
    # Not her trace: 409; nobody's face: 404; unknown: 404.
    stranger = Trace.objects.get(pk=people["lookalike"])
    response = rest(admin_api, "put", f"/api/v1/identity/{ada.identity_uuid}/face",
                    {"file_uuid": hamilton.file_uuid, "trace_id": stranger.trace_id})
    assert response.status_code == 409 and response.json()["error"]["code"] == "CONFLICT"
    nobody = Identity.objects.create(name="Nobody yet")
    assert admin_api.get(f"/api/v1/identity/{nobody.identity_uuid}/thumbnail").status_code == 404
    assert admin_api.get(f"/api/v1/identity/{'f' * 32}/thumbnail").status_code == 404
    change = CurationChange.objects.get(kind="face")
    assert "Face of Ada" in change.summary


def test_choose_the_face_on_the_persons_page_and_undo(staff, ada, people):
    page_url = f"/admin/identities/identity/{ada.pk}/change/"
    html = staff.get(page_url).content.decode()
    assert html.count("Use as face") == 4
    response = staff.post(f"/admin/identities/identity/{ada.pk}/face/", {"face_trace": people["A"][3]})
    assert response.status_code == 302
    ada.refresh_from_db()
    assert ada.feature_trace_id == people["A"][3]
    html = staff.get(page_url).content.decode()
    assert "✓ their face" in html and html.count("Use as face") == 3
    # The cast page's card and the autocomplete show it.
    cast = page(staff)
    trace = Trace.objects.get(pk=people["A"][3])
    named = cast.split('id="cast-named"')[1]
    assert f"/trace/{trace.trace_id}/thumbnail" in named
    found = staff.get(API + "people?q=Ada").json()["results"][0]
    assert found["face_url"] == f"/api/v1/identity/{ada.identity_uuid}/thumbnail"
    # Undone on the person's page.
    staff.post(f"/admin/identities/identity/{ada.pk}/undo/")
    ada.refresh_from_db()
    assert ada.feature_trace_id is None
    assert staff.post(f"/admin/identities/identity/{ada.pk}/face/", {"face_trace": people["lookalike"]}).status_code \
        == 302
    ada.refresh_from_db()
    assert ada.feature_trace_id is None  # not her trace


# --------------------------------------------------------------------------- purity risk


def test_a_group_shows_its_purity_risk(staff, hamilton, people):
    from django.template.loader import render_to_string

    from identities.cast import service
    from identities.suggestions import SUGGESTION_MAX_DISTANCE

    everyone = [*people["A"], people["lookalike"]]
    [built] = service.build_groups([("g", everyone, None)])
    assert built.spread is not None and 0.2 < built.spread < SUGGESTION_MAX_DISTANCE and not built.doubtful
    assert f"±{built.spread_text}" in page(staff)
    # Two faces each at the offered distance from A, in other directions: farther apart than that.
    far = add_traces(hamilton, [(310, 0, 20, near(A, SUGGESTION_MAX_DISTANCE, 31)),
                                (311, 30, 50, near(A, SUGGESTION_MAX_DISTANCE, 32))])
    [wide] = service.build_groups([("g", [far[310].pk, far[311].pk], None)])
    assert wide.spread > SUGGESTION_MAX_DISTANCE and wide.doubtful
    thresholds = {"offered": SUGGESTION_MAX_DISTANCE}
    assert "cast-doubtful" in render_to_string("admin/identities/cast/_group.html",
                                               {"group": wide, "thresholds": thresholds})
    assert "cast-doubtful" not in render_to_string("admin/identities/cast/_group.html",
                                                   {"group": built, "thresholds": thresholds})
