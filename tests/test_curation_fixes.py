"""The curation bugs a curator found (issue 13), one test each, through the admin and the API.

1 merged people offered in the bind autocomplete · 2 binding to a merged person · 3 a stale undo on a
merged person's page · 5 alias edits in the metadata box dropped · 6 duplicate names, search in notes ·
7 a restored identity's new id and date · 9 wording, read-only history, the delete confirmation.
(4, the highlight clip: tests/test_trace_video.py; 8 and the rest of 9: tests/test_admin_pages.py.)
"""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from identities import curation
from identities.models import CurationChange, Identity
from media_api.models import Trace
from media_api.services.detections_import import import_detections
from tests.helpers_rest import key_client


def _rows(trace_id, frames):
    return [{"trace_id": trace_id, "frame_number": f, "x": 100, "y": 50, "width": 80, "height": 90,
             "confidence": 0.9} for f in frames]


@pytest.fixture
def traces(hamilton):
    import_detections(hamilton, _rows(1, [0, 10]) + _rows(2, [30, 40]) + _rows(3, [50]) + _rows(4, [90]))
    return {t.trace_id: t for t in Trace.objects.filter(file=hamilton)}


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def api_client_admin(plain_user):
    return key_client(plain_user, write=True)[0]


@pytest.fixture
def merged(traces, staff_user):
    """Eliza (trace 1, bound through a recorded bind) merged into Eliza Hamilton (trace 2)."""
    eliza = Identity.objects.create(name="Eliza")
    survivor = Identity.objects.create(name="Eliza Hamilton")
    curation.bind_traces(eliza, [traces[1].pk], staff_user)
    curation.bind_traces(survivor, [traces[2].pk], staff_user)
    curation.merge_identities(survivor, [eliza], staff_user)
    eliza.refresh_from_db()
    return eliza, survivor


def _autocomplete(client, term: str) -> list[str]:
    response = client.get(reverse("admin:autocomplete"), {
        "term": term, "app_label": "media_api", "model_name": "trace", "field_name": "identity"})
    assert response.status_code == 200
    return [row["text"] for row in response.json()["results"]]


def test_1_bind_autocomplete_offers_active_people_only(staff_client, merged):
    Identity.objects.create(name="Eliza (retired)", status=Identity.Status.INACTIVE)
    assert _autocomplete(staff_client, "eliza") == ["Eliza Hamilton"]


def test_2_api_refuses_to_bind_to_a_merged_person(api_client_admin, merged, hamilton, traces):
    eliza, survivor = merged
    response = api_client_admin.post(f"/api/v1/identity/{eliza.identity_uuid}/bind/trace",
                                     {"file_uuid": hamilton.file_uuid, "trace_id": 3}, format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "CONFLICT" and "Eliza Hamilton" in error["message"]
    assert error["details"]["merged_into"]["identity_uuid"] == survivor.identity_uuid
    assert Trace.objects.get(pk=traces[3].pk).identity_id is None


def test_2_trace_page_refuses_a_merged_person(staff_client, merged, traces):
    eliza, _ = merged
    url = reverse("admin:media_api_trace_change", args=[traces[3].pk])
    response = staff_client.post(url, {"identity": eliza.pk, "_save": "Save"})
    assert response.status_code == 200  # the form again, with the error
    assert Trace.objects.get(pk=traces[3].pk).identity_id is None


def test_3_merged_person_page_offers_no_stale_undo(staff_client, merged, traces):
    eliza, survivor = merged
    page = staff_client.get(reverse("admin:identities_identity_change", args=[eliza.pk])).content.decode()
    assert "Undo:" not in page
    assert 'id="merged-note"' in page and "Eliza Hamilton" in page
    bind = CurationChange.objects.get(kind="bind", identity_uuid=eliza.identity_uuid)
    with pytest.raises(curation.UndoError):
        curation.undo(bind)
    bind.refresh_from_db()
    assert bind.undone_at is None  # the history entry is not used up
    assert Trace.objects.get(pk=traces[1].pk).identity_id == survivor.pk
    survivor_page = staff_client.get(reverse("admin:identities_identity_change", args=[survivor.pk]))
    assert "Undo: Merged Eliza into Eliza Hamilton (1 trace moved)" in survivor_page.content.decode()


def _identity_form(identity: Identity, **fields) -> dict:
    data = {"name": identity.name, "status": identity.status, "identity_type": "people",
            "aliases": ", ".join(identity.aliases), "metadata": "{}",
            "traces-TOTAL_FORMS": "0", "traces-INITIAL_FORMS": "0", "traces-MIN_NUM_FORMS": "0",
            "traces-MAX_NUM_FORMS": "1000"}
    data.update(fields)
    return data


def test_5_metadata_box_shows_no_aliases_and_refuses_them(staff_client, traces):
    person = Identity.objects.create(name="Peggy", metadata={"aliases": ["Margarita"], "note": "sister"})
    url = reverse("admin:identities_identity_change", args=[person.pk])
    form = staff_client.get(url).context["adminform"].form
    assert form.initial["metadata"] == {"note": "sister"} and form["aliases"].value() == "Margarita"
    response = staff_client.post(url, _identity_form(person, metadata=json.dumps({"aliases": ["Peg"]})))
    assert response.status_code == 200 and "Put aliases in the Aliases field" in response.content.decode()
    staff_client.post(url, _identity_form(person, aliases="Margarita, Peg", metadata='{"note": "youngest"}'))
    person.refresh_from_db()
    assert person.metadata == {"note": "youngest", "aliases": ["Margarita", "Peg"]}


def test_6_admin_warns_about_a_duplicate_name(staff_client, traces):
    Identity.objects.create(name="John Laurens")
    add = reverse("admin:identities_identity_add")
    response = staff_client.post(add, _identity_form(Identity(name="john laurens ")))
    assert response.status_code == 200 and "already has this name" in response.content.decode()
    assert Identity.objects.count() == 1
    staff_client.post(add, _identity_form(Identity(name="John Laurens"), allow_duplicate="on"))
    assert Identity.objects.filter(name="John Laurens").count() == 2


def test_6_api_answers_409_for_a_duplicate_unless_allowed(api_client_admin, traces):
    existing = Identity.objects.create(name="John Laurens")
    response = api_client_admin.post("/api/v1/identities", {"name": "JOHN LAURENS"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["details"]["existing"]["identity_uuid"] == existing.identity_uuid
    again = api_client_admin.post("/api/v1/identities", {"name": "John Laurens", "allow_duplicate": True},
                                  format="json")
    assert again.status_code == 201
    other = Identity.objects.create(name="Hercules Mulligan")
    rename = api_client_admin.patch(f"/api/v1/identity/{other.identity_uuid}", {"name": "John Laurens"},
                                    format="json")
    assert rename.status_code == 409


def test_6_search_matches_names_and_aliases_not_notes(staff_client, traces):
    Identity.objects.create(name="Aaron Burr", metadata={"note": "shot Hamilton"})
    Identity.objects.create(name="Alexander", metadata={"aliases": ["Hamilton"]})
    found = staff_client.get(reverse("admin:identities_identity_changelist"), {"q": "hamilton"})
    assert [i.name for i in found.context["cl"].result_list] == ["Alexander"]


def test_7_restored_identity_keeps_its_id_and_dates(staff_client, traces):
    person = Identity.objects.create(name="Theodosia")
    Identity.objects.filter(pk=person.pk).update(created_at="2025-01-02T03:04:05Z")
    person.refresh_from_db()
    old = Identity.objects.create(name="Theo", status=Identity.Status.INACTIVE, merged_into=person)
    Trace.objects.filter(pk=traces[4].pk).update(identity=person)
    staff_client.post(reverse("admin:identities_identity_delete", args=[person.pk]), {"post": "yes"})
    change = CurationChange.objects.get(kind="delete")
    staff_client.post(reverse("admin:identities_curationchange_changelist"),
                      {"action": "undo_selected", ACTION_CHECKBOX_NAME: [change.pk]})
    restored = Identity.objects.get(identity_uuid=person.identity_uuid)
    assert (restored.pk, restored.created_at) == (person.pk, person.created_at)
    assert restored.traces.get().pk == traces[4].pk
    old.refresh_from_db()
    assert old.merged_into_id == person.pk
    assert staff_client.get(reverse("admin:identities_identity_change", args=[person.pk])).status_code == 200


def test_9_wording_history_read_only_and_delete_confirmation(staff_client, traces, staff_user):
    person = Identity.objects.create(name="Maria")
    change = curation.bind_traces(person, [traces[1].pk], staff_user)
    assert change.summary == "Bound 1 trace to Maria"
    assert curation.bind_traces(person, [traces[2].pk, traces[3].pk]).summary == "Bound 2 traces to Maria"
    history = reverse("admin:identities_curationchange_change", args=[change.pk])
    page = staff_client.get(history).content.decode()
    assert 'name="_save"' not in page and "Delete" not in page
    assert staff_client.post(reverse("admin:identities_curationchange_delete", args=[change.pk]),
                             {"post": "yes"}).status_code == 403
    assert CurationChange.objects.filter(pk=change.pk).exists()
    confirm = staff_client.get(reverse("admin:identities_identity_delete", args=[person.pk])).content.decode()
    assert "3 traces will become unbound" in confirm and "Undo selected changes" in confirm
